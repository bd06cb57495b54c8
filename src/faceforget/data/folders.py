"""Folder-per-identity reader (LFW, VGGFace2, CASIA-WebFace layout: `<root>/<identity>/<images>`)."""
from __future__ import annotations

import os
from pathlib import Path

from faceforget.data.errors import DataError, first_few
from faceforget.data.images import is_image_name
from faceforget.data.records import FaceRecord


def scan_folder(root: str | Path, *, allow_empty: bool = False) -> list[FaceRecord]:
    """
    Records for every image under `root/<identity>/`, sorted by identity then path.

    Hidden entries and non-image files are ignored; sub-folders of an identity are searched too;
    symlinks are followed (cycles are cut). Identity folders without images are an error unless
    `allow_empty`, in which case they are skipped.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}")
    identities = sorted(e.name for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir())
    if not identities:
        raise DataError(f"{root} has no identity folders; expected <root>/<identity>/<image files>")
    records: list[FaceRecord] = []
    empty: list[str] = []
    for identity in identities:
        paths = sorted(_image_paths(root / identity, identity, frozenset()))
        if not paths:
            empty.append(identity)
        records.extend(FaceRecord(path=p, identity=identity) for p in paths)
    if empty and not allow_empty:
        raise DataError(
            f"{len(empty)} identity folder(s) in {root} contain no images: {first_few(empty)}; "
            "remove them or allow empty folders to skip them"
        )
    if not records:
        raise DataError(f"no images found under {root}")
    return records


def _image_paths(folder: Path, rel: str, ancestors: frozenset[str]) -> list[str]:
    """Relative posix paths of the images under `folder`; `ancestors` holds real paths being walked."""
    real = os.path.realpath(folder)
    if real in ancestors:
        return []
    ancestors = ancestors | {real}
    found: list[str] = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend(_image_paths(Path(entry.path), f"{rel}/{entry.name}", ancestors))
        elif is_image_name(entry.name) and (entry.is_file() or entry.is_symlink()):
            found.append(f"{rel}/{entry.name}")  # a broken link is kept: the split reports it as a bad file
    return found
