"""
Inter-process exclusive locks on output folders (galleries, run folders): `<folder>/.lock` via `filelock`.

The operating system releases the lock when its holder dies (even by SIGKILL), so a crash never leaves
a folder locked. Within one process the lock is re-entrant: code holding it may call code that takes it.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from faceforget.fileio import PRIVATE_FILE, make_private_dirs

LOCK_FILE = ".lock"


class FolderBusyError(TimeoutError):
    """Another process holds the folder's lock (and did not release it in time)."""


_guard = threading.Lock()
_held: dict[tuple[int, str], tuple[threading.RLock, FileLock]] = {}


def _entry(path: Path) -> tuple[threading.RLock, FileLock]:
    key = (os.getpid(), str(path))  # a forked child must not inherit its parent's hold
    with _guard:
        if key not in _held:
            _held[key] = (threading.RLock(), FileLock(str(path), mode=PRIVATE_FILE, thread_local=False))
        return _held[key]


@contextmanager
def exclusive(folder: str | os.PathLike, what: str, timeout: float = 0) -> Iterator[None]:
    """
    Hold `folder`'s lock (creating the folder 0700 if needed); wait up to `timeout` s (< 0: forever).

    Raises FolderBusyError naming the folder when another process keeps it longer.
    """
    folder = Path(folder).absolute()
    make_private_dirs(folder)
    within, between = _entry(folder / LOCK_FILE)
    busy = FolderBusyError(f"{what} {folder} is in use by another faceforget process (lock {folder / LOCK_FILE}); "
                           "wait for it to finish, or use another folder")
    if not within.acquire(timeout=-1 if timeout < 0 else timeout):
        raise busy
    try:
        try:
            between.acquire(timeout=timeout)
        except Timeout:
            raise busy from None
        try:
            yield
        finally:
            between.release()
    finally:
        within.release()
