"""
k-NN backends behind one signature: exact blocked top-k (torch, running top-k) and FAISS IndexFlatIP.

Both take L2-normalised float32 arrays, score by inner product (= cosine) and return float32 scores and
int64 gallery indices of shape (nq, k), best first. `exclude[i]` (-1 for none) is a gallery index left
out of query i's ranking (leave-one-out when the queries are part of the gallery).
"""
from __future__ import annotations

from typing import Protocol

import faiss
import numpy as np
import torch


class KnnFunc(Protocol):
    """Signature shared by the k-NN backends (inject one wherever a search is needed)."""

    def __call__(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        chunk_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, indices) of each query in the gallery."""
        ...


def _validate(
    queries: np.ndarray, gallery: np.ndarray, k: int, exclude: np.ndarray | None, chunk_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check shapes and k; return contiguous float32 queries and gallery, and exclude (None if unused)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"queries and gallery must be (n, d) with the same d, got {q.shape} and {g.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ex = None
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        if ex.shape != (len(q),) or ex.min(initial=-1) < -1 or ex.max(initial=-1) >= len(g):
            raise ValueError(f"exclude must be ({len(q)},) with values in [-1, {len(g)}), got {ex.shape}")
        ex = ex if (ex >= 0).any() else None
    available = len(g) - (ex is not None)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] (gallery of {len(g)}, exclusion taken off), got {k}")
    return q, g, ex


def _topk_lowest_index(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-k, best first, ties broken by the lower gallery index (also at the k-th place)."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    slots = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (torch.cumsum(tied, dim=1) <= slots))
    idx = chosen.nonzero()[:, 1].view(-1, k)  # ascending gallery index within each row
    picked = scores.gather(1, idx)
    order = torch.sort(picked, dim=1, descending=True, stable=True).indices
    return picked.gather(1, order), idx.gather(1, order)


def _merge_topk(best_s: torch.Tensor, best_i: torch.Tensor, s: torch.Tensor, first: int,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k: the k best of the kept (scores, indices) and a block `s` of gallery rows from `first`."""
    if best_i.shape[1]:  # kept items, in index order, then the block: column order is gallery order
        order = torch.argsort(best_i, dim=1)
        best_s, best_i = best_s.gather(1, order), best_i.gather(1, order)
    cand_s = torch.cat([best_s, s], dim=1)
    cand_i = torch.cat([best_i, first + torch.arange(s.shape[1], device=s.device).expand(len(s), -1)], dim=1)
    top_s, col = _topk_lowest_index(cand_s, min(k, cand_s.shape[1]))
    return top_s, cand_i.gather(1, col)


def exact_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    chunk_size: int = 1024,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact inner-product top-k in blocks of `chunk_size` queries x b = max(chunk_size, 16384) gallery rows.

    A running top-k merges the blocks; ties go to the lower gallery index. Scores are accumulated in
    float64 and rounded to float32, so they do not depend on the blocking. Memory beyond the inputs:
    about 16 chunk_size (b + k) bytes, whatever the gallery size. `device` is any torch device ("cuda":
    untested here).
    """
    q, g, ex = _validate(queries, gallery, k, exclude, chunk_size)
    g64 = torch.from_numpy(g).to(device, torch.float64)
    block = max(chunk_size, 16384)
    scores = np.empty((len(q), k), dtype=np.float32)
    indices = np.empty((len(q), k), dtype=np.int64)
    for a in range(0, len(q), chunk_size):
        b = min(a + chunk_size, len(q))
        q64 = torch.from_numpy(q[a:b]).to(device, torch.float64)
        top_s = torch.empty((b - a, 0), dtype=torch.float32, device=device)
        top_i = torch.empty((b - a, 0), dtype=torch.int64, device=device)
        for c in range(0, len(g), block):
            s = (q64 @ g64[c:c + block].T).float()
            if ex is not None:
                rows = np.flatnonzero((ex[a:b] >= c) & (ex[a:b] < c + block))
                s[torch.from_numpy(rows), torch.from_numpy(ex[a:b][rows] - c)] = -torch.inf
            top_s, top_i = _merge_topk(top_s, top_i, s, c, k)
        scores[a:b], indices[a:b] = top_s.cpu().numpy(), top_i.cpu().numpy()
    return scores, indices


def faiss_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """
    FAISS IndexFlatIP top-k, `chunk_size` queries at a time, ordered by score then gallery index.

    Which of several items tied at the k-th place is kept is up to FAISS.
    """
    q, g, ex = _validate(queries, gallery, k, exclude, chunk_size)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    extra = int(ex is not None)
    scores = np.empty((len(q), k), dtype=np.float32)
    indices = np.empty((len(q), k), dtype=np.int64)
    for a in range(0, len(q), chunk_size):
        b = min(a + chunk_size, len(q))
        s, i = index.search(q[a:b], k + extra)
        if ex is not None:
            keep = i != ex[a:b, None]
            keep &= np.cumsum(keep, axis=1) <= k
            s, i = s[keep].reshape(-1, k), i[keep].reshape(-1, k)
        order = np.lexsort((i, -s), axis=1)
        scores[a:b] = np.take_along_axis(s, order, axis=1)
        indices[a:b] = np.take_along_axis(i, order, axis=1)
    return scores, indices


def knn_backend(name: str) -> KnnFunc | None:
    """The backend `EvalConfig.knn` names: None for "exact" (full ranking in eval/metrics.py)."""
    backends: dict[str, KnnFunc | None] = {"exact": None, "torch": exact_topk, "faiss": faiss_topk}
    if name not in backends:
        raise ValueError(f"unknown knn backend {name!r}; choose from {sorted(backends)}")
    return backends[name]
