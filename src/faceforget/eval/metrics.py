"""
Pure retrieval metrics on cosine similarity (numpy in, floats or arrays out); pairs: eval/verification.py.

Ties: cosine scores are computed in float64 and rounded to float32; equal float32 scores are a tie.
`rank_queries` needs no full sort and no N x N matrix: a float32 matmul places every gallery item,
only the items within its error of a relevant item's score are rescored exactly, and each relevant
item's rank is a count (docs/evaluation.md). No metric depends on the gallery order. AP groups a
tie into one threshold, exactly as `sklearn.metrics.average_precision_score`; R@k and MAP@R are
expectations under uniform random tie-breaking. A query with no relevant gallery item gets NaN in
every per-query field and is left out of the averages; `summarise` reports how many were left out
as "n_no_relevant".
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

KnnSearch = Callable[..., tuple[np.ndarray, np.ndarray]]  # eval/knn.py's KnnFunc: (queries, gallery, k) -> top-k


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm (all-zero rows stay zero); float dtype is kept."""
    x = np.asarray(x)
    x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    norms = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(x.dtype)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """
    Cosine matrix of two row-normalised float64 arrays, rounded to float32 (ties stay ties).

    Both sides get at least two rows, so BLAS always takes its matrix-matrix path and a score does
    not depend on how many others are computed with it (a one-row product takes another path).
    """
    na, nb = len(a), len(b)
    a2, b2 = (np.concatenate([x, x[:1]]) if len(x) == 1 else x for x in (a, b))
    return (a2 @ b2.T)[:na, :nb].astype(np.float32)


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


MAX_BLOCK_SCORES = 1 << 22  # similarity cells per block: rank_queries caps its query chunk at this // n_gallery


def _unit_rows(x: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of `x` L2-normalised in float64, bit-identical to `l2_normalise(x.astype(float64))[rows]`."""
    return x[rows].astype(np.float64) / np.maximum(norms[rows], 1e-12)[:, None]


def _unit32(x: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(rows of `x` L2-normalised in float64 then rounded to float32, float64 norms), in row blocks."""
    unit, norms = np.empty(x.shape, dtype=np.float32), np.empty(len(x))
    for a in range(0, len(x), block):
        rows = np.arange(a, min(a + block, len(x)))
        norms[rows] = np.linalg.norm(x[rows].astype(np.float64), axis=1)
        unit[rows] = _unit_rows(x, norms, rows)
    return unit, norms


def _take_relevant(scores: np.ndarray, q_unit: np.ndarray, g: np.ndarray, g_norms: np.ndarray, qc: np.ndarray,
                   ex: np.ndarray, by_code: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """
    (c, width) exact scores of each query's same-label gallery items, best first, -inf padding.

    Label `code` owns gallery rows `by_code[starts[code]:starts[code + 1]]`; those items (and the
    excluded ones) are set to -inf in `scores`, which is modified in place.
    """
    t = np.full((len(qc), width), -np.inf, dtype=np.float32)
    r_ex = np.flatnonzero(ex >= 0)
    scores[r_ex, ex[r_ex]] = -np.inf
    for code in np.unique(qc):
        rows, items = np.flatnonzero(qc == code), by_code[starts[code]:starts[code + 1]]
        if len(items):
            s = cosine(q_unit[rows], _unit_rows(g, g_norms, items))
            s[items[None, :] == ex[rows, None]] = -np.inf
            t[rows[:, None], np.arange(len(items))[None, :]] = s
            scores[rows[:, None], items[None, :]] = -np.inf
    return -np.sort(-t, axis=1)


def _tie_span(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted best first: how many entries of the row are > and >= each entry."""
    c, w = t.shape
    pos, first, last = np.arange(w), np.ones((c, w), dtype=bool), np.ones((c, w), dtype=bool)
    first[:, 1:] = t[:, 1:] != t[:, :-1]
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, w - 1)[:, ::-1], axis=1)[:, ::-1]
    return start.astype(np.float64), end + 1.0


def _order_keys(row_offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 keys that sort by (row, float32 value) as the floats compare (-0.0 == 0.0); offsets: row << 32."""
    keys = values.astype(np.float32, copy=False).view(np.int32).astype(np.int64)
    negative = keys < 0
    keys[negative] = -(keys[negative] & 0x7FFFFFFF)  # now monotone in the value, in (-2^31, 2^31)
    keys += 2**31
    keys += row_offsets
    return keys


def _count_above(scores: np.ndarray, t: np.ndarray, n_rel: np.ndarray, q_unit: np.ndarray, g: np.ndarray,
                 g_norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact (c, width) counts of the other gallery items scoring > and >= each relevant score `t`.

    `scores` are float32 matmul scores with the relevant and excluded items at -inf; they are within
    `delta` of the exact ones, so only items inside [t - delta, t + delta) are rescored exactly, and
    only the items above a row's lowest t - delta are sorted (all rows at once, by (row, score) keys).
    """
    delta = np.float32(2.0 * (g.shape[1] + 2) * 2.0**-24)  # > the float32 error of a unit dot (d+3 ulps)
    c, w = t.shape
    lowest = np.where(n_rel > 0, t[np.arange(c), np.maximum(n_rel - 1, 0)] - delta, np.inf)
    keep = scores >= lowest[:, None]
    counts = np.count_nonzero(keep, axis=1)
    keys = _order_keys(np.repeat(np.arange(c, dtype=np.int64) << 32, counts), scores[keep])
    keys.sort()
    e_rows, e_cols = np.nonzero(np.arange(w)[None, :] < n_rel[:, None])
    lo_edge, hi_edge = t[e_rows, e_cols] - delta, t[e_rows, e_cols] + delta
    lo = np.searchsorted(keys, _order_keys(e_rows.astype(np.int64) << 32, lo_edge))
    hi = np.searchsorted(keys, _order_keys(e_rows.astype(np.int64) << 32, hi_edge))
    gt = np.zeros(t.shape)
    gt[e_rows, e_cols] = np.cumsum(counts)[e_rows] - hi
    ge = gt.copy()
    tied = np.flatnonzero(hi > lo)
    for i in np.unique(e_rows[tied]):  # one exact rescoring per query row, over the union of its windows
        edges = tied[e_rows[tied] == i]
        row, by_lo = scores[i], np.argsort(lo_edge[edges], kind="stable")
        starts, reach = lo_edge[edges][by_lo], np.maximum.accumulate(hi_edge[edges][by_lo])
        first = np.searchsorted(starts, row, side="right") - 1  # windows opening at or below each score
        near = np.flatnonzero((first >= 0) & (row < reach[np.maximum(first, 0)]))
        exact = cosine(q_unit[i][None, :], _unit_rows(g, g_norms, near))[0]
        inside = (row[near][None, :] >= lo_edge[edges, None]) & (row[near][None, :] < hi_edge[edges, None])
        cols, edge_t = e_cols[edges], t[i, e_cols[edges]][:, None]
        gt[i, cols] += (inside & (exact[None, :] > edge_t)).sum(1)
        ge[i, cols] += (inside & (exact[None, :] >= edge_t)).sum(1)
    return gt, ge


def _rank_chunk(above: np.ndarray, through: np.ndarray, rel_above: np.ndarray, rel_through: np.ndarray,
                n_rel: np.ndarray, n_gal: np.ndarray, ks: Sequence[int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """
    AP, expected AP@R and expected hits from each relevant item's tie group (rows best first).

    above / through: gallery items scoring > / >= the item; rel_*: the same among the relevant items.
    """
    w = above.shape[1]
    valid = np.arange(w)[None, :] < n_rel[:, None]
    r = np.maximum(n_rel, 1).astype(np.float64)
    ap = np.where(valid, rel_through / np.maximum(through, 1), 0.0).sum(axis=1) / r

    # E[rel_i * (#relevant in the first i) / i] summed over the places i < R of the item's tie group
    size = through - above
    stop = np.minimum(through, r[:, None])
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, w + 1))])
    h = harmonic[np.clip(stop, 0, w).astype(np.int64)] - harmonic[np.clip(above, 0, w).astype(np.int64)]
    s0 = np.where(size == 1, 1.0 / (above + 1), h)  # sum of 1 / (place + 1)
    s1 = (stop - above) - (above + 1) * s0  # sum of (place - first place) / (place + 1)
    slope = np.where(size > 1, (rel_through - rel_above - 1) / np.maximum(size - 1, 1), 0.0)
    term = ((rel_above + 1) * s0 + slope * s1) / size
    ap_r = np.where(valid & (above < stop), term, 0.0).sum(axis=1) / r

    hits = {}
    first, group, tied = above[:, 0], size[:, 0], rel_through[:, 0] - rel_above[:, 0]
    for k in ks:
        drawn = np.clip(np.minimum(k, n_gal) - first, 0, group)
        hits[k] = 1.0 - np.exp(_log_none_drawn(group, tied, drawn))
    return ap, ap_r, hits


def _rank_from_neighbours(nbr: np.ndarray, qc: np.ndarray, gc: np.ndarray, n_rel: np.ndarray,
                          ks: Sequence[int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """NaN AP, AP@R and hits from top-K neighbour lists (K >= max(n_rel, ks)), in the backend's order."""
    rel = gc[nbr] == qc[:, None]
    cum = np.cumsum(rel, axis=1)
    place = np.arange(1, nbr.shape[1] + 1)
    ap_r = np.where(rel & (place[None, :] <= n_rel[:, None]), cum / place, 0.0).sum(axis=1)
    hits = {k: rel[:, :k].any(axis=1).astype(np.float64) for k in ks}
    return np.full(len(nbr), np.nan), ap_r / np.maximum(n_rel, 1), hits


def rank_queries(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 512,
    knn: KnnSearch | None = None,
) -> QueryMetrics:
    """
    Rank the gallery for every query by cosine, `chunk_size` queries at a time (docs/evaluation.md).

    `exclude[i]` (-1 for none) is a gallery index left out of query i's ranking (leave-one-out).
    Exact by default. With a `knn` backend (eval/knn.py: KnnFunc) only R@k and MAP@R, from its
    top-K lists (K = max(R, k), ties in the backend's order); `ap` is NaN. Memory beyond the inputs,
    exact: at most 4 ng d + 28 c ng + 128 (nq + ng) bytes, c = min(chunk_size, MAX_BLOCK_SCORES // ng)
    queries per block (1M x 128-D gallery: under 0.8 GB); knn: the backend's own bound.
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
    (_, q_norms), (g32, g_norms) = _unit32(q), _unit32(g)
    has_ex = ex >= 0
    n_gal = len(g) - has_ex.astype(np.int64)
    by_code = np.argsort(gc, kind="stable")
    counts = np.bincount(gc, minlength=codes.max(initial=0) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    n_rel = counts[qc] - (has_ex & (gc[ex] == qc))
    if knn is not None:
        k = int(min(max(max(ks), n_rel.max(initial=1)), n_gal.min(initial=len(g))))
        nbr = knn(_unit32(q)[0], g32, k, exclude=ex, chunk_size=chunk_size)[1]
        ap, ap_r, hits = _rank_from_neighbours(nbr, qc, gc, n_rel, ks)
    else:
        width = max(int(counts[qc].max(initial=0)), 1)
        ap, ap_r = np.empty(len(q)), np.empty(len(q))
        hits = {k: np.empty(len(q)) for k in ks}
        step = max(1, min(chunk_size, MAX_BLOCK_SCORES // max(len(g), 1)))
        for a in range(0, len(q), step):
            sl = slice(a, min(a + step, len(q)))
            q_unit = _unit_rows(q, q_norms, np.arange(sl.start, sl.stop))
            scores = q_unit.astype(np.float32) @ g32.T
            t = _take_relevant(scores, q_unit, g, g_norms, qc[sl], ex[sl], by_code, starts, width)
            gt, ge = _count_above(scores, t, n_rel[sl], q_unit, g, g_norms)
            rel_gt, rel_ge = _tie_span(t)
            ap[sl], ap_r[sl], chunk_hits = _rank_chunk(gt + rel_gt, ge + rel_ge, rel_gt, rel_ge, n_rel[sl],
                                                       n_gal[sl], ks)
            for k in ks:
                hits[k][sl] = chunk_hits[k]
    lone = n_rel == 0
    for arr in (ap, ap_r, *hits.values()):
        arr[lone] = np.nan
    return QueryMetrics(ap=ap, ap_at_r=ap_r, hit_at=hits, n_relevant=n_rel, n_gallery=n_gal)


def mean_or_nan(x: np.ndarray) -> float:
    """Mean of an array, NaN when empty."""
    return float(x.mean()) if x.size else float("nan")


def summarise(qm: QueryMetrics) -> dict[str, float]:
    """Averages over the queries that have a relevant item: R@k, mAP, mAP@R, n_queries, n_no_relevant."""
    v = qm.valid
    out = {f"R@{k}": mean_or_nan(qm.hit_at[k][v]) for k in sorted(qm.hit_at)}
    out |= {"mAP": mean_or_nan(qm.ap[v]), "mAP@R": mean_or_nan(qm.ap_at_r[v])}
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
    out = {f"R@{k}": mean_or_nan(np.asarray(chance_recall_at_k(n, r, k))) for k in sorted(qm.hit_at)}
    out["mAP"] = mean_or_nan(np.asarray(chance_average_precision(n, r)))
    out["mAP@R"] = mean_or_nan(np.asarray(chance_map_at_r(n, r)))
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
    return mean_or_nan(compactness_per_identity(emb, labels)[1])


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
