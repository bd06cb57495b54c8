"""
`faceforget align`: a dataset's raw images -> a folder per identity of aligned crops (JPEG quality 95).

Landmarks come from a table (a CSV, CelebA's or VGGFace2's own, `data/landmarks.py`); with `detect` (the
dlib extra) images without one are detected: dlib's 68-point model for ArcFace-112, dlib's own chip recipe
for dlib-150. The output can be resumed: crops already written are kept.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceforget.data.align import ARCFACE_112, DLIB_150, dlib_chip, five_point_landmarks, template_crop
from faceforget.data.errors import BadImageError, DataError, first_few
from faceforget.data.images import load_image
from faceforget.data.landmarks import dataset_landmarks
from faceforget.data.sources import read_records
from faceforget.fileio import atomic_open, write_json_atomic
from faceforget.progress import progress_bar

TEMPLATES = {"arcface112": (ARCFACE_112, 112), "dlib150": (DLIB_150, 150)}
JPEG_QUALITY = 95


@dataclass
class AlignReport:
    """What `align_dataset` did: crops written, kept from a previous run, detected, bad files skipped."""

    written: int = 0
    kept: int = 0
    detected: int = 0
    bad_files: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain data for align.json."""
        return {"written": self.written, "kept": self.kept, "detected": self.detected,
                "bad_files": [list(b) for b in self.bad_files]}


def align_image(image: np.ndarray, template: str, landmarks5: np.ndarray | None) -> np.ndarray:
    """The `template` crop of uint8 RGB `image` from five landmarks (None: detect them with dlib)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    points, size = TEMPLATES[template]
    if landmarks5 is None:
        if template == "dlib150":
            return dlib_chip(image)
        landmarks5 = five_point_landmarks(image)
    return template_crop(image, landmarks5, points, size)


def encode_jpeg(image: np.ndarray) -> bytes:
    """RGB JPEG bytes at quality 95."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def align_dataset(data: str | Path, out: str | Path, template: str = "arcface112", *,
                  landmarks: str | Path | None = None, detect: bool = False, skip_bad: bool = False,
                  progress: bool = True) -> AlignReport:
    """
    Write `out/<identity>/<image stem>.jpg` for every image of `data`; returns the report (also out/align.json).

    Images without landmarks are an error listing them unless `detect`; unreadable images stop the run
    unless `skip_bad`, which skips and lists them.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    root, records = read_records(data)
    marks = dataset_landmarks(root, None if landmarks is None else Path(landmarks))
    if marks is None and not detect:
        raise DataError(f"no landmarks for {data}: give --landmarks FILE (CSV) or --detect (needs the dlib extra)")
    absent = [r.path for r in records if marks is not None and r.path not in marks]
    if absent and not detect:
        raise DataError(f"{len(absent)} of {len(records)} images have no landmarks: {first_few(absent)}; "
                        "fix the table or add --detect")
    targets = [Path(out) / r.identity / f"{Path(r.path).stem}.jpg" for r in records]
    clashes = len(targets) - len(set(targets))
    if clashes:
        raise DataError(f"{clashes} images of {data} would share an output name (same identity and file stem)")
    report = AlignReport()
    with progress_bar(f"aligning {len(records)} images ({template})", len(records), progress) as bar:
        for record, target in zip(records, targets, strict=True):
            bar.advance()
            if target.is_file():
                report.kept += 1
                continue
            try:
                image = load_image(root / record.path, None)
            except BadImageError as exc:
                if not skip_bad:
                    raise
                report.bad_files.append((record.path, exc.reason))
                continue
            points = None if marks is None else marks.get(record.path)
            report.detected += points is None
            with atomic_open(target, "wb") as f:
                f.write(encode_jpeg(align_image(image, template, points)))
            report.written += 1
    write_json_atomic(Path(out) / "align.json", {"source": str(data), "template": template, **report.to_dict()})
    return report
