"""
Versioned gallery folder: each save fills a fresh `vNNNNNN/` subfolder, then atomically switches `CURRENT`.

Layout: `<dir>/CURRENT` (one line naming the live version), `<dir>/v000001/`, `<dir>/v000002/`, ... and
`<dir>/.lock`. A version folder is invisible to readers until `CURRENT` names it, and `CURRENT` is replaced
with temp file + `os.replace`, so a crash at any point leaves either the old or the new version live,
never a mix.

Writers are serialised by the folder's lock (`locks.py`): `commit` takes it, and `writing` lets a caller
hold it across read-modify-write (a delete, the commit step of a rebuild), so every change is made to
the latest version. Readers take no lock: a reader that finds its version gone retries with the new
`CURRENT` (`Gallery.load`), so old versions, which may still hold a deleted person's vectors, are removed
right after the switch; versions and temp files left by a killed writer go at the next commit.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from faceforget.fileio import PRIVATE_DIR, remove_stale_temps, write_text_atomic
from faceforget.locks import exclusive

POINTER = "CURRENT"
LOCK_TIMEOUT_S = 600.0
_VERSION = re.compile(r"^v(\d{6,})$")


@contextmanager
def writing(directory: str | os.PathLike, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the gallery's writer lock (waiting up to `timeout` s for another writer to finish)."""
    with exclusive(directory, "gallery", timeout=timeout):
        yield


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
    """Under the writer lock: `write(version_dir)` on a fresh version, make it live, drop the other versions."""
    directory = Path(directory)
    with writing(directory):
        remove_stale_temps(directory)
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
    version.mkdir(mode=PRIVATE_DIR)
    return version


def _fsync_dir(directory: Path) -> None:
    """Persist a folder's entries so a rename that follows cannot reach disk before them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
