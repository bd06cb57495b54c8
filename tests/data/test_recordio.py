"""insightface RecordIO without mxnet: generated .rec/.idx (with a split record), truncated and corrupt files."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforget.api import make_split
from faceforget.data.errors import DataError
from faceforget.data.recordio import MAGIC, iter_images, read_record, unpack_recordio
from faceforget.data.sources import read_records


def frame(payload: bytes) -> bytes:
    """dmlc RecordIO framing written independently: split at 4-aligned magic numbers, flags 1/2/3, padding."""
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == magic]
    parts, start = [], 0
    for i in cuts:
        parts.append(payload[start:i])
        start = i + 4
    parts.append(payload[start:])
    out = b""
    for k, part in enumerate(parts):
        flag = 0 if len(parts) == 1 else 1 if k == 0 else 3 if k == len(parts) - 1 else 2
        out += magic + struct.pack("<I", (flag << 29) | len(part)) + part + b"\0" * (-len(part) % 4)
    return out


def ir_payload(label: float | list[float], body: bytes, key: int) -> bytes:
    if isinstance(label, list):
        return struct.pack("<IfQQ", len(label), 0.0, key, 0) + struct.pack(f"<{len(label)}f", *label) + body
    return struct.pack("<IfQQ", 0, label, key, 0) + body


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_rec(folder: Path, labels: list[int], header: bool = True, magic_in: int | None = None) -> dict[int, bytes]:
    """train.rec/.idx in insightface's layout: record 0 = header (images 1..n), then images, then identity ranges."""
    images = {k: jpeg(k) for k in range(1, len(labels) + 1)}
    if magic_in is not None:  # a JPEG with the magic number inside (4-aligned once the 24-byte header is added)
        images[magic_in] = images[magic_in][:40] + struct.pack("<I", MAGIC) + images[magic_in][40:]
    records = []
    if header:
        records.append((0, ir_payload([len(labels) + 1.0, len(labels) + 3.0], b"", 0)))
    records += [(k, ir_payload(float(labels[k - 1]), images[k], k)) for k in images]
    if header:
        n = len(labels)
        records += [(n + 1, ir_payload([1.0, 3.0], b"", 0)), (n + 2, ir_payload([3.0, 5.0], b"", 0))]
    data, idx = b"", []
    for key, payload in records:
        idx.append(f"{key}\t{len(data)}")
        data += frame(payload)
    (folder / "train.rec").write_bytes(data)
    (folder / "train.idx").write_text("\n".join(idx) + "\n")
    return images


def test_images_labels_and_a_record_split_at_the_magic_number(tmp_path: Path) -> None:
    images = write_rec(tmp_path, [7, 7, 7, 9, 9, 9], magic_in=2)
    got = list(iter_images(tmp_path / "train.rec"))
    assert [(r.key, r.label) for r in got] == [(1, 7), (2, 7), (3, 7), (4, 9), (5, 9), (6, 9)]
    assert all(r.image == images[r.key] for r in got)  # includes the re-joined record 2
    with open(tmp_path / "train.rec", "rb") as f:
        raw = f.read()
    assert raw.count(struct.pack("<I", MAGIC)) > len(images) + 3  # record 2 was stored in parts


def test_without_an_index_or_header_every_record_is_scanned(tmp_path: Path) -> None:
    write_rec(tmp_path, [1, 2, 2], header=False)
    (tmp_path / "train.idx").unlink()
    assert [(r.key, r.label) for r in iter_images(tmp_path / "train.rec")] == [(0, 1), (1, 2), (2, 2)]


def test_unpack_and_protocol_on_a_rec(tmp_path: Path) -> None:
    labels = [0] * 10 + [1] * 10 + [2] * 6
    images = write_rec(tmp_path, labels)
    root, records = read_records(tmp_path / "train.rec")
    assert root == (tmp_path / "train_images").absolute() and len(records) == len(labels)
    assert (root / "1" / "11.jpg").read_bytes() == images[11]
    assert unpack_recordio(tmp_path / "train.rec", root) == len(labels)  # second call: the marker says done
    manifest = make_split(tmp_path, forget=1, seed=0, progress=False)  # a folder holding train.rec
    assert len(manifest.records) == len(labels) and len(manifest.forget_identities) == 1


def test_truncated_file_names_the_offset(tmp_path: Path) -> None:
    write_rec(tmp_path, [1, 1, 2])
    rec = tmp_path / "train.rec"
    offsets = [int(line.split()[1]) for line in (tmp_path / "train.idx").read_text().split("\n") if line]
    rec.write_bytes(rec.read_bytes()[:offsets[2] + 30])
    with pytest.raises(DataError, match=rf"key 3 points at byte offset {offsets[3]}, beyond the end .* truncated"):
        list(iter_images(rec))
    (tmp_path / "train.idx").write_text("".join(f"{k}\t{offsets[k]}\n" for k in range(3)))
    with pytest.raises(DataError, match=rf"truncated record at byte offset {offsets[2]}: needs \d+ bytes"):
        list(iter_images(rec))


def test_corrupt_magic_index_and_header_are_named(tmp_path: Path) -> None:
    write_rec(tmp_path, [1, 1, 2])
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    offsets = [int(line.split()[1]) for line in idx.read_text().split("\n") if line]
    data = bytearray(rec.read_bytes())
    data[offsets[1]:offsets[1] + 4] = b"JUNK"
    rec.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"no record at byte offset {offsets[1]} \(magic 0x4b4e554a"):
        list(iter_images(rec))
    idx.write_text("0\t0\n1\tnot-a-number\n")
    with pytest.raises(DataError, match=r"train.idx: line 2 is '1\\tnot-a-number'"):
        list(iter_images(rec))
    idx.write_text(f"0\t0\n1\t{len(data) + 8}\n")
    with pytest.raises(DataError, match=rf"key 1 points at byte offset {len(data) + 8}, beyond the end"):
        list(iter_images(rec))
    short = tmp_path / "short.rec"
    short.write_bytes(frame(b"\1\2\3"))
    with open(short, "rb") as f, pytest.raises(DataError, match="at byte offset 0 is 3 bytes, shorter than its header"):
        from faceforget.data.recordio import unpack_header

        unpack_header(read_record(f, short, 0)[0], short, 0)
