"""Checksum-verified downloads and tar extraction that refuses members escaping the target folder."""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from faceforget.data.errors import DataError
from faceforget.fileio import make_private_dirs
from faceforget.progress import progress_bar

CHUNK = 1 << 20
TIMEOUT_S = 60
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)


class DownloadError(DataError):
    """A file that could not be fetched (network, HTTP status, truncated transfer)."""


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file with a hashlib algorithm name (`sha256`, `md5`)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch_verified(url: str, dest: str | Path, algorithm: str, digest: str, progress: bool = True,
                   description: str | None = None) -> Path:
    """
    Download `url` to `dest` unless a copy with the expected digest is already there.

    The bytes go to a temp file beside `dest`, renamed into place only after the digest matches; a
    mismatch or a failed transfer leaves nothing behind.
    """
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm) == digest:
        return dest
    make_private_dirs(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, algorithm, progress, description or f"downloading {dest.name}")
        if actual != digest:
            raise DataError(f"checksum mismatch for {url}: expected {algorithm} {digest}, got {actual}; "
                            "the download is corrupt or was altered, so it was deleted")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return dest


def _stream(url: str, out: BinaryIO, algorithm: str, progress: bool, description: str) -> str:
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)  # 0: size unknown
            with progress_bar(description, total, progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    h.update(block)
                    out.write(block)
                    bar.advance(len(block))
    except NETWORK_ERRORS as exc:
        raise DownloadError(f"could not download {url}: {getattr(exc, 'reason', None) or exc}") from exc
    return h.hexdigest()


def extract_tar_safely(archive: str | Path, dest: str | Path) -> Path:
    """
    Extract a (compressed) tar into `dest` after checking every member; nothing is written if one is unsafe.

    Only regular files and folders with relative paths that stay inside `dest` are accepted.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: a second, stdlib check
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive} is not a readable tar archive: {exc}") from exc
    return dest


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name or ":" in member.name:
        raise DataError(f"unsafe path {member.name!r} in {archive}: members must stay inside the target folder")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"unsafe member {member.name!r} in {archive}: only regular files and folders are allowed")
