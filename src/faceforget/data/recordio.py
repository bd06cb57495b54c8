"""
insightface RecordIO (`train.rec` + `train.idx`, MXNet's format) read without mxnet, unpacked to a folder tree.

Layout (docs/models_and_data.md, "RecordIO"): each record is `magic 0xced7230a` (uint32 LE), `lrecord`
(uint32: upper 3 bits a continuation flag, lower 29 the length), the payload, zero padding to 4 bytes.
A payload that contained the magic number was split at it into parts flagged 1 (first), 2 (middle),
3 (last), re-joined with the magic number. The payload starts with MXNet's IRHeader, `<IfQQ` (flag,
label, id, id2; 24 bytes); flag > 0 means `flag` float32 labels follow. insightface's record 0 has
flag > 0 and label[0] = the first key after the images (images are keys 1 .. label[0] - 1); each image's
identity is its (first) label. `train.idx` lines are `key<TAB>byte offset`.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.records import FaceRecord
from faceforget.fileio import atomic_open, write_json_atomic

MAGIC = 0xCED7230A
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)
_IMAGE_SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"BM": ".bmp"}
DONE_MARKER = ".faceforget-unpacked.json"


@dataclass(frozen=True)
class RecordImage:
    """One image record: its key, byte offset in the .rec, identity label and encoded image bytes."""

    key: int
    offset: int
    label: int
    image: bytes


def read_record(f: BinaryIO, path: Path, offset: int) -> tuple[bytes, int]:
    """The payload of the record at `offset` (parts re-joined) and the offset after it; errors name the offset."""
    f.seek(offset)
    payload, pos = bytearray(), offset
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise DataError(f"{path}: truncated record at byte offset {pos}: {len(head)} of 8 header bytes")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise DataError(f"{path}: no record at byte offset {pos} (magic {magic:#010x}, expected {MAGIC:#010x})")
        flag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        padded = (length + 3) & ~3
        body = f.read(padded)
        if len(body) < padded:
            raise DataError(f"{path}: truncated record at byte offset {pos}: needs {padded} bytes after its header, "
                            f"the file has {len(body)}")
        payload += body[:length]
        pos += 8 + padded
        if flag in (0, 3):
            return bytes(payload), pos
        if flag not in (1, 2):
            raise DataError(f"{path}: bad continuation flag {flag} at byte offset {pos - 8 - padded}")
        payload += struct.pack("<I", MAGIC)


def unpack_header(payload: bytes, path: Path, offset: int) -> tuple[list[float], bytes]:
    """(labels, rest) of an IRHeader payload."""
    if len(payload) < IR_SIZE:
        raise DataError(f"{path}: record at byte offset {offset} is {len(payload)} bytes, shorter than its header")
    flag, label, _, _ = struct.unpack(IR_FORMAT, payload[:IR_SIZE])
    if flag == 0:
        return [label], payload[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(payload) < end:
        raise DataError(f"{path}: record at byte offset {offset} declares {flag} labels but ends first")
    return list(struct.unpack(f"<{flag}f", payload[IR_SIZE:end])), payload[end:]


def read_index(path: Path) -> list[tuple[int, int]]:
    """(key, offset) pairs of a `.idx` file, in file order."""
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            key, offset = (int(v) for v in fields)
        except ValueError:
            raise DataError(f"{path}: line {line_no} is {line!r}, expected '<key>\\t<byte offset>'") from None
        pairs.append((key, offset))
    return pairs


def iter_images(rec: str | Path, idx: str | Path | None = None) -> Iterator[RecordImage]:
    """
    The image records of an insightface `.rec` (record 0's header range when it has one, else every record).

    With an index file (default: the `.idx` beside it, if present) records are read at its offsets;
    without one the file is scanned from the start.
    """
    rec = Path(rec)
    idx = Path(idx) if idx is not None else rec.with_suffix(".idx")
    if not rec.is_file():
        raise DataError(f"RecordIO file not found: {rec}")
    size = rec.stat().st_size
    with open(rec, "rb") as f:
        entries = read_index(idx) if idx.is_file() else _scan(f, rec, size)
        for key, offset in entries:
            if not 0 <= offset < size:
                raise DataError(f"{idx}: key {key} points at byte offset {offset}, beyond the end of {rec} "
                                f"({size} bytes): the .rec is truncated or does not belong to this index")
        first = _image_keys(f, rec, entries)
        for key, offset in entries:
            if first is not None and not first[0] <= key < first[1]:
                continue
            labels, image = unpack_header(read_record(f, rec, offset)[0], rec, offset)
            yield RecordImage(key, offset, int(labels[0]), image)


def _scan(f: BinaryIO, rec: Path, size: int) -> list[tuple[int, int]]:
    entries, offset = [], 0
    while offset < size:
        entries.append((len(entries), offset))
        offset = read_record(f, rec, offset)[1]
    return entries


def _image_keys(f: BinaryIO, rec: Path, entries: list[tuple[int, int]]) -> tuple[int, int] | None:
    """[1, label[0]) when record 0 is insightface's header record (flag > 0), else None (all are images)."""
    zero = dict(entries).get(0)
    if zero is None:
        return None
    payload = read_record(f, rec, zero)[0]
    if len(payload) >= IR_SIZE and struct.unpack(IR_FORMAT, payload[:IR_SIZE])[0] > 0:
        labels, _ = unpack_header(payload, rec, zero)
        return 1, int(labels[0])
    return None


def unpack_recordio(rec: str | Path, out: str | Path) -> int:
    """
    Write every image of `rec` to `out/<label>/<key>.<ext>` (atomic per file); returns the image count.

    A marker file records a finished unpack of this exact .rec (size and mtime), so a second call is free.
    """
    rec, out = Path(rec), Path(out)
    stat = rec.stat() if rec.is_file() else None
    marker = out / DONE_MARKER
    stamp = {"rec": str(rec.absolute()), "size": stat.st_size if stat else None,
             "mtime_ns": stat.st_mtime_ns if stat else None}
    done = _read_marker(marker)
    if all(done.get(k) == v for k, v in stamp.items()) and "images" in done:
        return int(done["images"])
    count = 0
    for item in iter_images(rec):
        ext = next((e for sig, e in _IMAGE_SIGNATURES.items() if item.image.startswith(sig)), None)
        if ext is None:
            raise DataError(f"{rec}: record key {item.key} at byte offset {item.offset} holds no JPEG/PNG/BMP image")
        target = out / str(item.label) / f"{item.key}{ext}"
        with atomic_open(target, "wb") as f:
            f.write(item.image)
        count += 1
    if not count:
        raise DataError(f"{rec} holds no image records")
    write_json_atomic(marker, {**stamp, "images": count})
    return count


def _read_marker(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text()) if marker.is_file() else {}
    except ValueError:
        return {}


def recordio_file(data: Path) -> Path | None:
    """The `.rec` a `--data` argument names: the file itself, or `train.rec` inside a folder; None otherwise."""
    if data.is_file() and data.suffix == ".rec":
        return data
    if data.is_dir() and (data / "train.rec").is_file():
        return data / "train.rec"
    return None


def read_recordio_records(rec: Path) -> tuple[Path, list[FaceRecord]]:
    """Unpack `rec` beside itself (`<stem>_images/`) once, then read that folder per identity."""
    out = rec.parent / f"{rec.stem}_images"
    try:
        unpack_recordio(rec, out)
    except PermissionError as exc:
        raise DataError(f"cannot unpack {rec} into {out} ({exc}); copy the .rec/.idx to a writable folder") from exc
    return out.absolute(), scan_folder(out)
