"""
VGGFace2 reader: `train/` and `test/` (a folder per identity) and `bb_landmark/loose_landmark_<split>.csv`.

The landmark CSVs have columns NAME_ID (`n000002/0001_01`, no extension), P1X, P1Y, ..., P5X, P5Y: eye
centres, nose tip, mouth corners (image left first), the order of `align.LANDMARKS`. Errors name file and line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.records import FaceRecord

SPLITS = ("train", "test")
LANDMARK_DIR = "bb_landmark"
LANDMARK_COLUMNS = ["NAME_ID"] + [f"P{i}{c}" for i in range(1, 6) for c in "XY"]


def is_vggface2(root: Path) -> bool:
    """True for a folder with `bb_landmark/` beside `train/` or `test/`."""
    return (root / LANDMARK_DIR).is_dir() and any((root / s).is_dir() for s in SPLITS)


def read_vggface2(root: str | Path) -> list[FaceRecord]:
    """Records of every image under train/ and test/ (paths `train/<identity>/<image>`)."""
    root = Path(root)
    return [FaceRecord(path=f"{split}/{r.path}", identity=r.identity)
            for split in SPLITS if (root / split).is_dir() for r in scan_folder(root / split)]


def read_vggface2_landmarks(root: str | Path) -> dict[str, np.ndarray]:
    """Record path (`train/n000002/0001_01.jpg`) -> (5, 2) landmarks, from the splits' loose_landmark CSVs."""
    root, marks = Path(root), {}
    for split in SPLITS:
        path = root / LANDMARK_DIR / f"loose_landmark_{split}.csv"
        if not (root / split).is_dir():
            continue
        if not path.is_file():
            raise DataError(f"VGGFace2 landmarks not found: {path}")
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            if header != LANDMARK_COLUMNS:
                raise DataError(f"{path}: columns {header}, expected {LANDMARK_COLUMNS}")
            for row in reader:
                if not row:
                    continue
                try:
                    values = np.array([float(v) for v in row[1:]], np.float64)
                except ValueError:
                    values = np.zeros(0)
                if len(row) != 11 or values.size != 10:
                    raise DataError(f"{path}: line {reader.line_num} is {','.join(row)!r}, "
                                    "expected NAME_ID and 10 numbers")
                marks[f"{split}/{row[0].strip()}.jpg"] = values.reshape(5, 2)
    return marks
