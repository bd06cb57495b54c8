"""
Is a search query probably not a face? A score calibrated per gallery and model, plus dlib's detector.

A face model maps anything to some embedding: with dlib's ResNet a black image or noise lands at cosine
0.90 from real gallery faces, inside the range of true matches, so the best match's score cannot tell.
What does tell: the model answers every image without a face (flat colours, noise) with nearly the same
embedding. `NonFaceCheck` stores that *null direction* (the unit mean embedding of `null_images`, made
when the gallery is built with the model) and the cosine of the gallery's own rows to it. A query whose
cosine to the null direction is above `threshold` (midway between the gallery faces' 99.9th percentile
and the lowest null image, when those are apart) is flagged. On LFW with dlib (docs/safety.md,
`benchmarks/nonface_check.py`): unseen people's chips 0.83-0.93, flat colours, noise, gradients, colour
blocks and shuffled pixels 0.935-0.985, threshold 0.936. Deleted rows leave the calibration (`refit`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceforget.data.face_detect import has_face

if TYPE_CHECKING:
    from faceforget.index.gallery import Gallery, Hit

FACE_QUANTILE = 0.999
NULL_GREYS = (0, 64, 128, 192, 255)


def null_images(size: tuple[int, int], n_noise: int = 4, seed: int = 0) -> np.ndarray:
    """uint8 (n, h, w, 3) images without a face: flat greys, uniform noise and Gaussian noise (seeded)."""
    h, w = size
    rng = np.random.default_rng(seed)
    flat = [np.full((h, w, 3), v, dtype=np.uint8) for v in NULL_GREYS]
    uniform = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n_noise)]
    gauss = [np.clip(128 + 40 * rng.standard_normal((h, w, 3)), 0, 255).astype(np.uint8) for _ in range(n_noise)]
    return np.stack(flat + uniform + gauss)


@dataclass(frozen=True)
class NonFaceCheck:
    """The null direction (unit, dim), the null images' lowest and the faces' high cosine, and the threshold."""

    direction: np.ndarray
    null_min: float
    face_high: float

    @classmethod
    def fit(cls, null_vectors: np.ndarray, face_vectors: np.ndarray) -> NonFaceCheck:
        """Calibrate from unit null-image embeddings (`null_images` through the model) and the gallery's rows."""
        mean = np.asarray(null_vectors, dtype=np.float64).mean(0)
        direction = (mean / np.linalg.norm(mean)).astype(np.float32)
        return cls(direction, float((null_vectors @ direction).min()), 0.0).refit(face_vectors)

    def refit(self, face_vectors: np.ndarray) -> NonFaceCheck:
        """The same null direction with the faces' percentile taken over `face_vectors` (the rows kept)."""
        scores = self.scores(face_vectors)
        high = float(np.quantile(scores, FACE_QUANTILE)) if len(scores) else -1.0
        return NonFaceCheck(self.direction, self.null_min, high)

    @property
    def threshold(self) -> float:
        """Cosine to the null direction above which a query is flagged."""
        if self.null_min > self.face_high:
            return (self.null_min + self.face_high) / 2
        return self.face_high  # the model does not separate them: flag only beyond the faces' tail

    def scores(self, unit_vectors: np.ndarray) -> np.ndarray:
        """Cosine of each unit vector (n, dim) to the null direction."""
        return np.asarray(unit_vectors, dtype=np.float32) @ self.direction

    def to_dict(self) -> dict:
        """JSON form stored in the gallery metadata."""
        return {"direction": [float(x) for x in self.direction], "null_min": self.null_min,
                "face_high": self.face_high}

    @classmethod
    def from_dict(cls, data: object, where: str, dim: int) -> NonFaceCheck:
        """Parse `to_dict` output, with an error naming `where` when a field is missing or malformed."""
        try:
            direction = np.asarray(data["direction"], dtype=np.float32)
            check = cls(direction, float(data["null_min"]), float(data["face_high"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{where}: malformed nonface calibration ({type(exc).__name__}: {exc})") from None
        if direction.shape != (dim,):
            raise ValueError(f"{where}: nonface direction has shape {direction.shape}, the index has dim {dim}")
        return check


@dataclass(frozen=True)
class QueryQuality:
    """Why a query may not be a face: its null-direction score and what dlib's detector found (None: not run)."""

    nonface_score: float | None = None
    threshold: float | None = None
    face_detected: bool | None = None

    @property
    def probably_not_face(self) -> bool:
        """True when the score is above the gallery's threshold or the detector found no face."""
        high = self.nonface_score is not None and self.threshold is not None and self.nonface_score > self.threshold
        return high or self.face_detected is False

    def warning(self) -> str | None:
        """One line saying why the query is probably not a face, or None."""
        if not self.probably_not_face:
            return None
        why = []
        if self.face_detected is False:
            why.append("dlib's face detector finds no face")
        if self.nonface_score is not None and self.threshold is not None and self.nonface_score > self.threshold:
            why.append(f"its embedding is {self.nonface_score:.3f} similar to the model's answer to blank and noise "
                       f"images (this gallery's faces: <= {self.threshold:.3f})")
        return "probably not a face: " + "; ".join(why) + "; its matches mean nothing"


@dataclass(frozen=True)
class QueryResult:
    """One query image's top-k hits and how likely it is to be a face at all."""

    query: str
    hits: list[Hit]
    quality: QueryQuality = field(default_factory=QueryQuality)


def search_checked(gallery: Gallery, embeddings: np.ndarray, paths: Sequence[str | Path], k: int) -> list[QueryResult]:
    """Top-`k` hits of each query (embeddings row i <-> image paths[i]) with its non-face score and detector result."""
    scores = gallery.nonface_scores(embeddings)
    threshold = None if gallery.nonface is None else gallery.nonface.threshold
    return [QueryResult(str(p), hits, QueryQuality(None if scores is None else float(scores[i]), threshold,
                                                    has_face(p)))
            for i, (p, hits) in enumerate(zip(paths, gallery.search(embeddings, k), strict=True))]
