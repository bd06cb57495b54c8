"""The protocol's file pass: sha256 (optionally plus a full decode) of many files, threaded, with progress."""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from faceforget.data.errors import BadImageError
from faceforget.data.images import check_image_bytes
from faceforget.fileio import sha256_bytes, sha256_file
from faceforget.progress import progress_bar


@dataclass(frozen=True)
class FileCheck:
    """Outcome for one file: its sha256, or the error that made it unusable."""

    sha256: str | None
    error: BadImageError | None = None


def check_files(paths: Sequence[Path], *, decode: bool, progress: bool = True,
                description: str = "hashing") -> list[FileCheck]:
    """sha256 of every file, in `paths` order; with `decode`, a file that does not decode gets an error."""
    work = _hash_and_decode if decode else _hash_only
    workers = min(8, (os.cpu_count() or 1) + 2)
    checks = []
    with ThreadPoolExecutor(workers) as pool, progress_bar(description, len(paths), progress) as bar:
        for check in pool.map(work, paths):
            checks.append(check)
            bar.advance()
    return checks


def _hash_only(path: Path) -> FileCheck:
    try:
        return FileCheck(sha256_file(path))
    except OSError as exc:
        return FileCheck(None, BadImageError(path, _read_reason(exc)))


def _hash_and_decode(path: Path) -> FileCheck:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileCheck(None, BadImageError(path, _read_reason(exc)))
    try:
        check_image_bytes(data, path)
    except BadImageError as exc:
        return FileCheck(None, exc)
    return FileCheck(sha256_bytes(data))


def _read_reason(exc: OSError) -> str:
    return "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror or exc}"
