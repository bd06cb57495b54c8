"""Crash-safe file output, checksums and safe weight loading."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import torch


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and fixed separators: equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """
    Open a temp file beside `path`; on clean exit fsync and `os.replace` it into place.

    A crash or exception leaves any previous file at `path` untouched and removes the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (temp file + rename)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically; keys sorted so equal objects give identical files."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def save_state_atomic(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """`torch.save` a dict of tensors/plain data atomically."""
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_state(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a torch checkpoint without unpickling code (`weights_only=True`), optionally checksum-verified."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ValueError(f"checksum mismatch for {path}: expected {expected_sha256}, got {actual}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path} is not a readable faceforget/torch checkpoint: {exc}") from exc
