"""5-point alignment: exact recovery of known similarities, the PIL warp convention, fidelity to LFW's crops."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforget.data.align import (
    ARCFACE_112,
    LANDMARKS,
    arcface_crop,
    dlib_chip,
    dlib_landmarks,
    lmeds_similarity_fit,
    require_dlib,
    similarity_fit,
    warp_affine,
)
from faceforget.data.errors import DataError


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize("seed", range(5))
def test_similarity_fit_recovers_a_known_transform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _similarity(rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 5), tuple(rng.uniform(-100, 100, 2)))
    src = rng.uniform(0, 250, (5, 2))
    np.testing.assert_allclose(similarity_fit(src, _apply(truth, src)), truth, atol=1e-9)
    np.testing.assert_allclose(lmeds_similarity_fit(src, _apply(truth, src)), truth, atol=1e-9)


def test_similarity_fit_is_the_least_squares_solution() -> None:
    """Reference: the linear least-squares problem in (a, b, tx, ty) with x' = a x - b y + tx, y' = b x + a y + ty."""
    rng = np.random.default_rng(7)
    src, dst = rng.uniform(0, 100, (6, 2)), rng.uniform(0, 100, (6, 2))
    rows = [[x, -y, 1, 0] for x, y in src] + [[y, x, 0, 1] for x, y in src]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    np.testing.assert_allclose(similarity_fit(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_similarity_fit_never_reflects() -> None:
    src = np.array([[0.0, 0], [1, 0], [0, 2], [3, 1]])
    matrix = similarity_fit(src, src * [-1, 1])
    assert np.linalg.det(matrix[:, :2]) > 0


def test_lmeds_ignores_one_misplaced_landmark() -> None:
    truth = _similarity(0.1, 1.3, (5.0, -7.0))
    src = ARCFACE_112 * 2 + 20
    dst = _apply(truth, src)
    dst[2] += [12.0, -9.0]  # the nose of a turned head
    np.testing.assert_allclose(lmeds_similarity_fit(src, dst), truth, atol=1e-9)
    assert np.abs(similarity_fit(src, dst) - truth).max() > 0.01


@pytest.mark.parametrize("src, dst", [(np.zeros((5, 3)), np.zeros((5, 3))), (np.zeros((5, 2)), np.zeros((4, 2))),
                                      (np.ones((5, 2)), np.zeros((5, 2)))])
def test_similarity_fit_rejects_bad_input(src: np.ndarray, dst: np.ndarray) -> None:
    with pytest.raises(ValueError):
        similarity_fit(src, dst)


def test_warp_affine_uses_integer_pixel_centres() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_affine(image, _similarity(0, 1, (0, 0)), (30, 40)), image)
    shifted = warp_affine(image, _similarity(0, 1, (3, 2)), (30, 40))
    np.testing.assert_array_equal(shifted[2:, 3:], image[:-2, :-3])
    assert not shifted[:2].any() and not shifted[:, :3].any()  # black outside the source


def test_arcface_crop_of_a_template_image_is_the_image() -> None:
    image = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    crop = arcface_crop(image, ARCFACE_112)  # the fit is the identity up to rounding: at most 1 grey level off
    assert np.abs(crop.astype(int) - image).max() <= 1


def _raw_sample(root: Path) -> list[tuple[Path, np.ndarray]]:
    """(raw image path, 5 CSV landmarks) for every raw250_sample image."""
    with open(root / "landmarks.csv", newline="") as f:
        marks = {(r["identity"], r["file"]): r for r in csv.DictReader(f)}
    sample = []
    for path in sorted((root / "raw250_sample").glob("*/*.jpg")):
        row = marks[(path.parent.name, path.name)]
        sample.append((path, np.array([[float(row[f"{k}_x"]), float(row[f"{k}_y"])] for k in LANDMARKS])))
    return sample


def _mad(a: np.ndarray, reference: Path) -> float:
    return float(np.abs(a.astype(float) - np.asarray(Image.open(reference).convert("RGB"), float)).mean())


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_arcface_crop_reproduces_lfw_arcface112(lfw_root: Path) -> None:
    sample = _raw_sample(lfw_root)
    robust, plain = [], []
    for path, marks in sample:
        ref = lfw_root / "arcface112" / path.parent.name / path.name
        robust.append(_mad(arcface_crop(_rgb(path), marks), ref))
        plain.append(_mad(arcface_crop(_rgb(path), marks, robust=False), ref))
    assert len(sample) > 100
    assert np.median(robust) < 1.5 and np.mean(np.array(robust) < 3) > 0.95, (np.mean(robust), max(robust))
    assert np.mean(robust) < np.mean(plain)


def test_dlib_chip_reproduces_lfw_dlib150(lfw_root: Path) -> None:
    pytest.importorskip("dlib")
    sample = _raw_sample(lfw_root)[::4]
    diffs = [_mad(dlib_chip(_rgb(p)), lfw_root / "dlib150" / p.parent.name / p.name) for p, _ in sample]
    assert np.mean(diffs) < 3.5 and max(diffs) < 10, diffs


def test_dlib_chip_from_given_landmarks_and_without_a_face() -> None:
    pytest.importorskip("dlib")
    noise = np.random.default_rng(2).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    marks = dlib_landmarks(noise)  # no face: the central fallback box
    assert marks.shape == (5, 2)
    chip = dlib_chip(noise, marks, size=80)
    assert chip.shape == (80, 80, 3) and chip.dtype == np.uint8
    np.testing.assert_array_equal(chip, dlib_chip(noise, size=80))


def test_missing_dlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(DataError, match=r'pip install "faceforget\[dlib\]"'):
        require_dlib()
