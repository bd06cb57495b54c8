"""
k-NN backends behind one signature: exact chunked top-k (torch) and FAISS IndexFlatIP.

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


def exact_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact inner-product top-k, `chunk_size` queries at a time; ties go to the lower gallery index.

    Scores are accumulated in float64 and rounded to float32, so they do not depend on the chunking.
    """
    q, g, ex = _validate(queries, gallery, k, exclude, chunk_size)
    g64 = torch.from_numpy(g).double()
    scores = np.empty((len(q), k), dtype=np.float32)
    indices = np.empty((len(q), k), dtype=np.int64)
    for a in range(0, len(q), chunk_size):
        b = min(a + chunk_size, len(q))
        s = (torch.from_numpy(q[a:b]).double() @ g64.T).float()
        if ex is not None:
            rows = np.flatnonzero(ex[a:b] >= 0)
            s[torch.from_numpy(rows), torch.from_numpy(ex[a:b][rows])] = -torch.inf
        top_s, top_i = _topk_lowest_index(s, k)
        scores[a:b], indices[a:b] = top_s.numpy(), top_i.numpy()
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
