"""
Pure retrieval and verification metrics on cosine similarity (numpy in, floats or arrays out).

Ties: cosine scores are computed in float64 and rounded to float32; equal float32 scores are a tie.
No metric depends on the gallery order. AP groups a tie into one threshold, exactly as
`sklearn.metrics.average_precision_score`; R@k and MAP@R are expectations under uniform random
tie-breaking. A query with no relevant gallery item gets NaN in every per-query field and is left
out of the averages; `summarise` reports how many were left out as "n_no_relevant".
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm (all-zero rows stay zero); float dtype is kept."""
    x = np.asarray(x)
    x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    norms = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(x.dtype)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine matrix of two row-normalised float64 arrays, rounded to float32 (ties stay ties)."""
    return (a @ b.T).astype(np.float32)


@dataclass(frozen=True, eq=False)
class QueryMetrics:
    """Per-query retrieval results; every array has one entry per query, NaN where n_relevant == 0."""

    ap: np.ndarray  # average precision over the full gallery ranking (sklearn's tie grouping)
    ap_at_r: np.ndarray  # MAP@R term (pytorch-metric-learning), expected under random tie-breaking
    hit_at: dict[int, np.ndarray]  # k -> probability of a relevant item in the top k
    n_relevant: np.ndarray  # same-label gallery items, exclusion taken off
    n_gallery: np.ndarray  # gallery items ranked for the query, exclusion taken off

    @property
    def valid(self) -> np.ndarray:
        """Queries that enter the averages (at least one relevant gallery item)."""
        return self.n_relevant > 0


def _log_none_drawn(n: np.ndarray, r: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Log of C(n-r, m) / C(n, m): the chance that m draws from n items miss all r relevant ones."""
    n, r, m = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (n, r, m)))
    out = np.zeros(n.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(int(m.max(initial=0))):
            frac = r / (n - i)
            term = np.where(frac < 1, np.log1p(-np.minimum(frac, 1.0)), -np.inf)
            out += np.where(i < m, term, 0.0)
    return out


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


def rank_queries(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 512,
) -> QueryMetrics:
    """
    Rank the gallery for every query by cosine, `chunk_size` queries at a time.

    `exclude[i]` (-1 for none) is a gallery index left out of query i's ranking (leave-one-out).
    """
    q, g = np.asarray(query_emb), np.asarray(gallery_emb)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or len(ql) != len(q) or len(gl) != len(g):
        shapes = f"{q.shape} {ql.shape} {g.shape} {gl.shape}"
        raise ValueError(f"need (nq, d), (nq,), (ng, d), (ng,) arrays, got {shapes}")
    if not (np.isfinite(q).all() and np.isfinite(g).all()):
        raise ValueError("embeddings must be finite")
    if chunk_size < 1 or min(ks, default=0) < 1:
        raise ValueError(f"chunk_size and every k must be >= 1, got {chunk_size} and {tuple(ks)}")
    ex = np.full(len(q), -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    if ex.shape != (len(q),) or ex.min(initial=-1) < -1 or ex.max(initial=-1) >= len(g):
        raise ValueError(f"exclude must be ({len(q)},) with values in [-1, {len(g)})")
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
        scores, rel = _cosine(qn[sl], gn), qc[sl, None] == gc[None, :]
        r_ex, c_ex = rows[sl][has_ex[sl]] - a, ex[sl][has_ex[sl]]
        scores[r_ex, c_ex], rel[r_ex, c_ex] = -np.inf, False
        ap[sl], ap_r[sl], chunk_hits = _rank_chunk(scores, rel, n_rel[sl], n_gal[sl], ks, width)
        for k in ks:
            hits[k][sl] = chunk_hits[k]
    lone = n_rel == 0
    for arr in (ap, ap_r, *hits.values()):
        arr[lone] = np.nan
    return QueryMetrics(ap=ap, ap_at_r=ap_r, hit_at=hits, n_relevant=n_rel, n_gallery=n_gal)


def _mean(x: np.ndarray) -> float:
    """Mean of an array, NaN when empty."""
    return float(x.mean()) if x.size else float("nan")


def summarise(qm: QueryMetrics) -> dict[str, float]:
    """Averages over the queries that have a relevant item: R@k, mAP, mAP@R, n_queries, n_no_relevant."""
    v = qm.valid
    out = {f"R@{k}": _mean(qm.hit_at[k][v]) for k in sorted(qm.hit_at)}
    out |= {"mAP": _mean(qm.ap[v]), "mAP@R": _mean(qm.ap_at_r[v])}
    return out | {"n_queries": float(v.sum()), "n_no_relevant": float((~v).sum())}


def _harmonic_numbers(n: np.ndarray) -> np.ndarray:
    """H_n = 1 + 1/2 + ... + 1/n for an integer array n >= 0."""
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(n.max(initial=0)) + 1))])
    return table[n]


def _chance_args(n_gallery: np.ndarray | int, n_relevant: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Validated integer arrays (n, r) with 0 <= r <= n."""
    n, r = np.broadcast_arrays(np.asarray(n_gallery, dtype=np.int64), np.asarray(n_relevant, dtype=np.int64))
    if (r < 0).any() or (r > n).any():
        raise ValueError("need 0 <= n_relevant <= n_gallery")
    return n, r


def _out(x: np.ndarray) -> np.ndarray | float:
    """A float for a 0-d result, else the array."""
    return float(x) if x.ndim == 0 else x


def chance_recall_at_k(
    n_gallery: np.ndarray | int, n_relevant: np.ndarray | int, k: int
) -> np.ndarray | float:
    """Expected R@k of a random ranking: 1 - C(n-r, k) / C(n, k) (k capped at n; NaN where r = 0)."""
    n, r = _chance_args(n_gallery, n_relevant)
    p = -np.expm1(_log_none_drawn(n, r, np.minimum(k, n)))
    return _out(np.where(r > 0, p, np.nan))


def chance_average_precision(n_gallery: np.ndarray | int, n_relevant: np.ndarray | int) -> np.ndarray | float:
    """Expected AP of a random ranking: (1/n) [H_n + (r-1)/(n-1) (n - H_n)] (NaN where r = 0)."""
    n, r = _chance_args(n_gallery, n_relevant)
    h = _harmonic_numbers(n)
    slope = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.where(r > 0, (h + slope * (n - h)) / n, np.nan))


def chance_map_at_r(n_gallery: np.ndarray | int, n_relevant: np.ndarray | int) -> np.ndarray | float:
    """Expected MAP@R of a random ranking: (1/n) [H_r + (r-1)/(n-1) (r - H_r)] (NaN where r = 0)."""
    n, r = _chance_args(n_gallery, n_relevant)
    h = _harmonic_numbers(r)
    slope = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.where(r > 0, (h + slope * (r - h)) / n, np.nan))


def chance_summary(qm: QueryMetrics) -> dict[str, float]:
    """What random embeddings would score on the same queries (same keys as `summarise`)."""
    v = qm.valid
    n, r = qm.n_gallery[v], qm.n_relevant[v]
    out = {f"R@{k}": _mean(np.asarray(chance_recall_at_k(n, r, k))) for k in sorted(qm.hit_at)}
    out["mAP"] = _mean(np.asarray(chance_average_precision(n, r)))
    out["mAP@R"] = _mean(np.asarray(chance_map_at_r(n, r)))
    return out | {"n_queries": float(v.sum()), "n_no_relevant": float((~v).sum())}


def compactness_per_identity(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(identities, CS of each): mean cosine of an identity's embeddings to its normalised centroid."""
    ids, codes = np.unique(np.asarray(labels), return_inverse=True)
    z = l2_normalise(np.asarray(emb, dtype=np.float64))
    sums = np.zeros((len(ids), z.shape[1]))
    np.add.at(sums, codes.reshape(-1), z)
    cos = (z * l2_normalise(sums)[codes.reshape(-1)]).sum(axis=1)
    return ids, np.bincount(codes.reshape(-1), weights=cos) / np.bincount(codes.reshape(-1))


def compactness(emb: np.ndarray, labels: np.ndarray) -> float:
    """CS: mean over identities of `compactness_per_identity`."""
    return _mean(compactness_per_identity(emb, labels)[1])


def pair_scores(emb: np.ndarray, labels: np.ndarray, chunk_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every unordered pair, split into (genuine, impostor) float32 arrays, rows in chunks."""
    z, lab = l2_normalise(np.asarray(emb, dtype=np.float64)), np.asarray(labels)
    genuine, impostor = [], []
    for a in range(0, len(z), chunk_size):
        b = min(a + chunk_size, len(z))
        s = _cosine(z[a:b], z[a:])
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
    return _mean(np.asarray(scores) > threshold)


def forgetting_efficacy(map_before: float, map_after: float, map_chance: float) -> float:
    """E = clip((before - after) / (before - chance), 0, 1); NaN when before <= chance (nothing to forget)."""
    if map_before <= map_chance:
        return float("nan")
    return float(np.clip((map_before - map_after) / (map_before - map_chance), 0.0, 1.0))


def utility(map_retain_after: float, map_retain_before: float) -> float:
    """U = after / before (not clipped: above 1 means retain retrieval improved); NaN when before <= 0."""
    return float(map_retain_after / map_retain_before) if map_retain_before > 0 else float("nan")


def harmonic(e: float, u: float) -> float:
    """H = 2EU / (E + U), 0 when both are 0 (NaN propagates)."""
    return 0.0 if e == 0 and u == 0 else float(2 * e * u / (e + u))
