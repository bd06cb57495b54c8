"""
Versioned gallery folder: each save fills a fresh `vNNNNNN/` subfolder, then atomically switches `CURRENT`.

Layout: `<dir>/CURRENT` (one line naming the live version) and `<dir>/v000001/`, `<dir>/v000002/`, ...
A version folder is invisible to readers until `CURRENT` names it, and `CURRENT` is replaced with
temp file + `os.replace`, so a crash at any point leaves either the old or the new version live, never a
mix. Versions other than the live one are removed after the switch (and by the next commit if a crash
interrupted that). Assumes a single writer per folder.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from faceforget.fileio import write_text_atomic

POINTER = "CURRENT"
_VERSION = re.compile(r"^v(\d{6,})$")


def current_version(directory: str | os.PathLike) -> Path:
    """The live version folder of a gallery, with clear errors when the folder is not a gallery."""
    directory = Path(directory)
    pointer = directory / POINTER
    if not directory.is_dir():
        raise FileNotFoundError(f"no gallery at {directory} (folder does not exist)")
    if not pointer.is_file():
        raise FileNotFoundError(f"{directory} is not a faceforget gallery (no {POINTER} file)")
    name = pointer.read_text().strip()
    if not _VERSION.match(name):
        raise ValueError(f"{pointer} is corrupt: {name!r} is not a version folder name")
    version = directory / name
    if not version.is_dir():
        raise FileNotFoundError(f"{pointer} names {name!r} but {version} does not exist")
    return version


def commit(directory: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(version_dir)` on a fresh version folder, make it live, then drop the other versions."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    version = _new_version(directory)
    write(version)
    _fsync_dir(version)
    write_text_atomic(directory / POINTER, version.name + "\n")
    _fsync_dir(directory)
    for path in directory.iterdir():
        if _VERSION.match(path.name) and path.name != version.name:
            shutil.rmtree(path, ignore_errors=True)
    return version


def _new_version(directory: Path) -> Path:
    """Create the folder numbered one above every existing version (live, stale or half-written)."""
    numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _VERSION.match(p.name))]
    version = directory / f"v{max(numbers, default=0) + 1:06d}"
    version.mkdir()
    return version


def _fsync_dir(directory: Path) -> None:
    """Persist a folder's entries so a rename that follows cannot reach disk before them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
