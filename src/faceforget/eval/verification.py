"""
Verification metrics on pairs: genuine / impostor cosine scores, TAR at a FAR, acceptance rates.

Scores are `eval.metrics.cosine` (float64 products rounded to float32, so equal scores are ties);
definitions: docs/metrics.md.
"""
from __future__ import annotations

import numpy as np

from faceforget.eval.metrics import cosine, l2_normalise, mean_or_nan


def pair_scores(emb: np.ndarray, labels: np.ndarray, chunk_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every unordered pair, split into (genuine, impostor) float32 arrays, rows in chunks."""
    z, lab = l2_normalise(np.asarray(emb, dtype=np.float64)), np.asarray(labels)
    genuine, impostor = [], []
    for a in range(0, len(z), chunk_size):
        b = min(a + chunk_size, len(z))
        s = cosine(z[a:b], z[a:])
        upper = np.arange(a, len(z))[None, :] > np.arange(a, b)[:, None]
        same = lab[a:b, None] == lab[None, a:]
        genuine.append(s[upper & same])
        impostor.append(s[upper & ~same])
    empty = [np.empty(0, np.float32)]
    return np.concatenate(genuine or empty), np.concatenate(impostor or empty)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold): the lowest threshold with at most `far` of impostors strictly above it."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if imp.size == 0 or not 0 <= far <= 1:
        raise ValueError(f"need impostor scores and 0 <= far <= 1, got {imp.size} scores and far={far}")
    allowed = int(np.floor(far * imp.size))  # impostors allowed strictly above, guarded against rounding
    allowed += (allowed + 1) / imp.size <= far
    allowed -= allowed / imp.size > far
    threshold = float(imp[allowed]) if allowed < imp.size else -np.inf
    return accept_rate(genuine, threshold), threshold


def accept_rate(scores: np.ndarray, threshold: float) -> float:
    """Fraction of scores strictly above the threshold (NaN for no scores)."""
    return mean_or_nan(np.asarray(scores) > threshold)
