"""
Crash-safe, owner-only file output, checksums, strict JSON and safe weight loading.

Every file faceforget writes may hold face data or templates, so files are created 0600 and the folders
it creates 0700, whatever the umask (docs/safety.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700
TEMP_SUFFIX = ".tmp"


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


def json_ready(obj: Any) -> Any:
    """Plain JSON data: numpy and 0-d torch values to Python, NaN and inf to null, tuples and arrays to lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.ndim):
        return [json_ready(v) for v in obj]
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):  # numpy scalars, 0-d arrays and tensors
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and fixed separators: equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def make_private_dirs(path: str | os.PathLike) -> None:
    """Create folder `path` and any missing parents owner-only (0700); existing folders are left as they are."""
    missing, path = [], Path(path)
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            folder.mkdir(mode=PRIVATE_DIR)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """
    Open an owner-only temp file beside `path`; on clean exit fsync and `os.replace` it into place.

    A crash or exception leaves any previous file at `path` untouched and removes the temp file; a
    SIGKILL can leave `.<name>.*.tmp`, which `remove_stale_temps` deletes on the next start.
    """
    path = Path(path)
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)  # mode 0600
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


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files interrupted `atomic_open` writes left in `folder`; only call it holding its lock."""
    stale = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (temp file + rename)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write strict JSON atomically (`json_ready`: NaN and inf become null); keys sorted for identical files."""
    write_text_atomic(path, json.dumps(json_ready(obj), indent=indent, sort_keys=True, allow_nan=False) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` atomically and owner-only (no pickled objects)."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_state_atomic(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """`torch.save` a dict of tensors/plain data atomically."""
    import torch  # here, so that gallery-only commands do not pay for importing torch

    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_state(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a torch checkpoint without unpickling code (`weights_only=True`), optionally checksum-verified."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ValueError(f"checksum mismatch for {path}: expected {expected_sha256}, got {actual}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's own text advises unsafe loading; never pass it on
        if not zipfile.is_zipfile(path):
            why = "it is not a file torch.save writes"
        elif "weights_only" in str(exc):
            why = "it holds objects other than tensors and plain data, and faceforget never unpickles code"
        else:
            why = f"torch cannot read it ({type(exc).__name__})"
        raise ValueError(f"{path} is not a faceforget/torch weights file: {why}") from None
