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
    opencv_pair_samples,
    require_dlib,
    similarity_fit,
    warp_affine,
)
from faceforget.data.align_dataset import align_dataset
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
    replicated = warp_affine(image, _similarity(0, 1, (3, 2)), (30, 40), border="replicate")
    np.testing.assert_array_equal(replicated[2:, 3:], image[:-2, :-3])
    np.testing.assert_array_equal(replicated[:2, 3:], np.broadcast_to(image[:1, :-3], (2, 27, 3)))
    np.testing.assert_array_equal(replicated[5, :3], np.broadcast_to(image[3, 0], (3, 3)))
    half = warp_affine(image, _similarity(0, 1, (0.5, 0)), (30, 40))  # bilinear: the mean of neighbours
    np.testing.assert_array_equal(half[:, 1:], np.rint((image[:, :-1].astype(float) + image[:, 1:]) / 2))


def test_opencv_lmeds_draws_and_what_they_leave_out() -> None:
    """OpenCV's fixed-seed draws for 5 points never try the nose-mouth pairs; LFW's crops show it (Rossi_0006)."""
    assert sorted({tuple(sorted(p)) for p in opencv_pair_samples(5)}) == [(0, 1), (0, 3), (0, 4), (1, 2), (1, 3),
                                                                          (1, 4)]
    assert len(opencv_pair_samples(5)) == 13 and all(a != b for a, b in opencv_pair_samples(7))
    src = np.array([[100.5, 104.7], [147.2, 106.8], [128.0, 116.0], [101.0, 147.0], [148.0, 149.0]])
    src[:2] = np.round(6 * src[:2]) / 6
    np.testing.assert_allclose(lmeds_similarity_fit(src, ARCFACE_112), similarity_fit(src, ARCFACE_112), atol=1e-12)


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


@pytest.mark.lfw
def test_align_reproduces_lfw_arcface112_within_jpeg_noise(lfw_root: Path, tmp_path: Path) -> None:
    """The README's recipe (sixths, OpenCV LMedS, replicate, JPEG q95) on raw250_sample: measured 0.80 mean."""
    report = align_dataset(lfw_root / "raw250_sample", tmp_path / "a", landmarks=lfw_root / "landmarks.csv",
                           progress=False)
    out = sorted((tmp_path / "a").glob("*/*.jpg"))
    assert report.written == len(out) == 147
    diffs = [_mad(_rgb(p), lfw_root / "arcface112" / p.parent.name / p.name) for p in out]
    assert np.mean(diffs) < 1.0 and max(diffs) < 1.5, (np.mean(diffs), max(diffs))
    plain = [_mad(arcface_crop(_rgb(path), marks, robust=False), lfw_root / "arcface112" / path.parent.name / path.name)
             for path, marks in _raw_sample(lfw_root)]
    assert np.mean(plain) > np.mean(diffs)


@pytest.mark.lfw
def test_dlib150_from_given_landmarks_is_close_to_dlibs_chips(lfw_root: Path, tmp_path: Path) -> None:
    """dlib's chips come from other landmarks (eye corners, nose base), so this is near, not equal: measured 14.1."""
    align_dataset(lfw_root / "raw250_sample", tmp_path / "d", template="dlib150",
                  landmarks=lfw_root / "landmarks.csv", progress=False)
    diffs = [_mad(_rgb(p), lfw_root / "dlib150" / p.parent.name / p.name) for p in (tmp_path / "d").glob("*/*.jpg")]
    assert len(diffs) == 147 and np.mean(diffs) < 16, np.mean(diffs)


def test_align_dataset_on_generated_images(tmp_path: Path, make_tree) -> None:
    root = make_tree(tmp_path / "raw", {"ann": 2, "bob": 2})
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*"))
    rng = np.random.default_rng(3)
    for rel in paths:  # larger images than the tree's
        Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(root / rel)
    truth = _similarity(0.05, 0.8, (12.0, 9.0))  # crop -> raw; the landmarks are the template mapped by it
    marks = _apply(truth, ARCFACE_112)
    table = tmp_path / "marks.csv"
    table.write_text("path," + ",".join(f"{k}_{c}" for k in LANDMARKS for c in "xy") + "\n" + "".join(
        f"{rel}," + ",".join(f"{v:.6f}" for v in marks.ravel()) + "\n" for rel in paths))
    out = tmp_path / "aligned"
    report = align_dataset(root, out, landmarks=table, progress=False)
    assert report.written == 4 and sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.jpg")) == sorted(
        f"{Path(rel).parent}/{Path(rel).stem}.jpg" for rel in paths)
    inverse = np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2]
    for rel in paths:
        expected = warp_affine(_rgb(root / rel), inverse, (112, 112), border="replicate")
        got = _rgb(out / Path(rel).parent / f"{Path(rel).stem}.jpg")
        assert np.abs(got.astype(float) - expected).mean() < 6  # JPEG of noise images: measured ~3.5
    assert align_dataset(root, out, landmarks=table, progress=False).kept == 4  # resumable
    table.write_text(table.read_text().splitlines()[0] + "\n" + "\n".join(table.read_text().splitlines()[2:]) + "\n")
    with pytest.raises(DataError, match=r"1 of 4 images have no landmarks: ann/ann_0000.jpg; .*--detect"):
        align_dataset(root, tmp_path / "x", landmarks=table, progress=False)
    with pytest.raises(DataError, match="no landmarks for"):
        align_dataset(root, tmp_path / "x", progress=False)


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
