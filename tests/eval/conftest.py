"""
Fixture `dense_rank`: the sort-every-row ranking faceforget used before issue 13 (eval/metrics.py at df3aa39).

It materialises each query's full score row, sorts it and walks the tie groups; `rank_queries` must
give the same numbers without doing that.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from faceforget.eval.metrics import QueryMetrics, _log_none_drawn, l2_normalise


def _rank_chunk(
    scores: np.ndarray, rel: np.ndarray, n_rel: np.ndarray, n_gal: np.ndarray, ks: Sequence[int], w: int
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """
    AP, expected AP@R and expected hits for rows of scores (excluded items at -inf, not relevant).

    MAP@R looks at the first `w` >= max(n_rel) places; w is fixed per call so sums do not depend on chunks.
    """
    c, ng = scores.shape
    order = np.argsort(-scores, axis=1)
    s = np.take_along_axis(scores, order, axis=1)
    cum = np.zeros((c, ng + 1))
    np.cumsum(np.take_along_axis(rel, order, axis=1), axis=1, out=cum[:, 1:])
    pos = np.arange(ng)
    first = np.ones((c, ng), dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones((c, ng), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, ng - 1)[:, ::-1], axis=1)[:, ::-1]
    above = np.take_along_axis(cum, start, axis=1)  # relevant items strictly above the tie group
    through = np.take_along_axis(cum, end + 1, axis=1)  # ... down to the end of the tie group
    r = np.maximum(n_rel, 1)
    ap = np.where(last, (through - above) * through / (pos + 1), 0.0).sum(axis=1) / r

    size, r_g, p = end[:, :w] - start[:, :w] + 1, through[:, :w] - above[:, :w], pos[:w] - start[:, :w]
    # E[rel_i * (#relevant in the first i)] at place i = p-th (0-based) inside its tie group
    inner = np.where(size > 1, p * (r_g - 1) / np.maximum(size - 1, 1), 0.0)
    term = r_g / size * (above[:, :w] + 1 + inner) / (pos[:w] + 1)
    ap_r = np.where(pos[:w] < n_rel[:, None], term, 0.0).sum(axis=1) / r

    hits = {}
    for k in ks:
        col = np.maximum(np.minimum(k, n_gal) - 1, 0)[:, None]
        st, en = np.take_along_axis(start, col, 1)[:, 0], np.take_along_axis(end, col, 1)[:, 0]
        ab = np.take_along_axis(above, col, 1)[:, 0]
        r_tie = np.take_along_axis(through, col, 1)[:, 0] - ab
        miss = np.exp(_log_none_drawn(en - st + 1, r_tie, col[:, 0] + 1 - st))
        hits[k] = np.where(ab > 0, 1.0, 1.0 - miss)
    return ap, ap_r, hits


def dense_rank_queries(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 512,
) -> QueryMetrics:
    """The pre-issue-13 `rank_queries` (inputs assumed valid)."""
    q, g = np.asarray(query_emb), np.asarray(gallery_emb)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    ex = np.full(len(q), -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    codes = np.unique(np.concatenate([ql, gl]), return_inverse=True)[1].reshape(-1)
    qc, gc = codes[: len(q)], codes[len(q):]
    qn, gn = l2_normalise(q.astype(np.float64)), l2_normalise(g.astype(np.float64))
    has_ex = ex >= 0
    n_gal = len(g) - has_ex.astype(np.int64)
    n_rel = np.bincount(gc, minlength=codes.max(initial=0) + 1)[qc] - (has_ex & (gc[ex] == qc))

    width = max(int(n_rel.max(initial=0)), 1)
    ap, ap_r = np.empty(len(q)), np.empty(len(q))
    hits = {k: np.empty(len(q)) for k in ks}
    rows = np.arange(len(q))
    for a in range(0, len(q), chunk_size):
        sl = slice(a, min(a + chunk_size, len(q)))
        scores, rel = (qn[sl] @ gn.T).astype(np.float32), qc[sl, None] == gc[None, :]
        r_ex, c_ex = rows[sl][has_ex[sl]] - a, ex[sl][has_ex[sl]]
        scores[r_ex, c_ex], rel[r_ex, c_ex] = -np.inf, False
        ap[sl], ap_r[sl], chunk_hits = _rank_chunk(scores, rel, n_rel[sl], n_gal[sl], ks, width)
        for k in ks:
            hits[k][sl] = chunk_hits[k]
    lone = n_rel == 0
    for arr in (ap, ap_r, *hits.values()):
        arr[lone] = np.nan
    return QueryMetrics(ap=ap, ap_at_r=ap_r, hit_at=hits, n_relevant=n_rel, n_gallery=n_gal)


@pytest.fixture
def dense_rank() -> Callable[..., QueryMetrics]:
    """The dense reference ranking (same signature as `rank_queries` without `knn`)."""
    return dense_rank_queries
