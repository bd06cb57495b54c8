"""
Five-point landmark tables for `faceforget align`: a CSV (LFW's layout or path-based), CelebA's, VGGFace2's.

A CSV names each image by a `path` column (relative to the data root) or by `identity` + `file` (LFW:
`<identity>/<file>`), with columns leye_x, leye_y, reye_x, reye_y, nose_x, nose_y, mouthl_x, mouthl_y,
mouthr_x, mouthr_y (image left first). In LFW's file (it has a `detector` column) the eye centres are means
of six integer dlib points printed to one decimal; they are restored to the exact sixths, round(6 x) / 6.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from faceforget.data.align import LANDMARKS
from faceforget.data.celeba import is_celeba, read_celeba_landmarks
from faceforget.data.errors import DataError
from faceforget.data.vggface2 import is_vggface2, read_vggface2_landmarks

COORDINATE_COLUMNS = [f"{k}_{c}" for k in LANDMARKS for c in "xy"]


def read_landmarks_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Relative image path -> (5, 2) landmarks; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"landmark file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        keyed_by_path = "path" in columns
        missing = [c for c in COORDINATE_COLUMNS + (["path"] if keyed_by_path else ["identity", "file"])
                   if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; need `path` (or `identity`, `file`) and "
                            f"{COORDINATE_COLUMNS}")
        lfw = "detector" in columns
        marks = {}
        for row in reader:
            try:
                points = np.array([float(row[c]) for c in COORDINATE_COLUMNS], np.float64).reshape(5, 2)
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {reader.line_num} has a missing or non-numeric coordinate") from None
            if lfw:
                points[:2] = np.round(6 * points[:2]) / 6
            key = row["path"] if keyed_by_path else f"{row['identity']}/{row['file']}"
            marks[Path(key).as_posix()] = points
    return marks


def dataset_landmarks(root: Path, landmarks: Path | None = None) -> dict[str, np.ndarray] | None:
    """The landmarks for images under `root`: the given CSV, else CelebA's or VGGFace2's own; None if none."""
    if landmarks is not None:
        return read_landmarks_csv(landmarks)
    if is_celeba(root):
        return read_celeba_landmarks(root)
    if is_vggface2(root):
        return read_vggface2_landmarks(root)
    return None
