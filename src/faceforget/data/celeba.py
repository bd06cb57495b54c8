"""
CelebA reader: `identity_CelebA.txt` (`<image> <identity>` per line) over `img_align_celeba/`, and its landmarks.

`list_landmarks_align_celeba.txt`: a count line, a header line, then `<image> lefteye_x lefteye_y righteye_x
righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y` (left = image left), the order of
`align.LANDMARKS`. Errors name the file and line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforget.data.errors import DataError, first_few
from faceforget.data.records import FaceRecord

IDENTITY_FILE = "identity_CelebA.txt"
IMAGE_DIR = "img_align_celeba"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"


def is_celeba(root: Path) -> bool:
    """True for a folder holding CelebA's identity file."""
    return (root / IDENTITY_FILE).is_file()


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise DataError(f"CelebA file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc})") from None
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_celeba(root: str | Path) -> list[FaceRecord]:
    """One record per line of identity_CelebA.txt, path `img_align_celeba/<image>`; every image must exist."""
    root = Path(root)
    path = root / IDENTITY_FILE
    records, seen = [], set()
    for line_no, fields in _lines(path):
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{path}: line {line_no} is {' '.join(fields)!r}, expected '<image> <identity number>'")
        if fields[0] in seen:
            raise DataError(f"{path}: line {line_no} lists {fields[0]} a second time")
        seen.add(fields[0])
        records.append(FaceRecord(path=f"{IMAGE_DIR}/{fields[0]}", identity=str(int(fields[1]))))
    if not records:
        raise DataError(f"{path} lists no images")
    absent = [r.path for r in records if not (root / r.path).is_file()]
    if absent:
        raise DataError(f"{path}: {len(absent)} of {len(records)} listed images not found under {root}: "
                        f"{first_few(absent)}")
    return records


def read_celeba_landmarks(root: str | Path) -> dict[str, np.ndarray]:
    """Record path -> (5, 2) landmarks from list_landmarks_align_celeba.txt (its declared count is checked)."""
    path = Path(root) / LANDMARK_FILE
    lines = _lines(path)
    if len(lines) < 2 or len(lines[0][1]) != 1 or not lines[0][1][0].isdigit():
        raise DataError(f"{path}: expected a count line and a header line first")
    declared, marks = int(lines[0][1][0]), {}
    for line_no, fields in lines[2:]:
        try:
            values = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError:
            values = np.zeros(0)
        if len(fields) != 11 or values.size != 10:
            raise DataError(f"{path}: line {line_no} is {' '.join(fields)!r}, expected an image name and 10 numbers")
        marks[f"{IMAGE_DIR}/{fields[0]}"] = values.reshape(5, 2)
    if len(marks) != declared:
        raise DataError(f"{path}: declares {declared} rows but has {len(marks)} (truncated or edited file)")
    return marks
