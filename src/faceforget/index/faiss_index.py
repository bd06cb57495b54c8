"""
The FAISS side of the gallery: unit-normalised float32 input and the two index kinds, `flat` and `ivf`.

`flat` is exact: `IndexIDMap2(IndexFlatIP)`. `ivf` is `IndexIVFFlat` with inner product and spherical
k-means; `nlist = min(4*sqrt(n), n // 39)` (at least 1) so every centroid has >= 39 training points and a
tiny gallery gets one list, i.e. exact search. Both keep caller-chosen int64 ids and can return the
stored vectors (`reconstruct_batch`; IVF keeps a hashtable direct map for it).

Why IVF-flat and not HNSW for large galleries: scores stay exact inner products (only the probed
lists are approximate); there is no graph memory on top of the vectors; building is one bounded k-means
(faiss subsamples its input, fixed seed, so deterministic) plus a linear add, whereas HNSW inserts every
vector into a graph and cannot remove ids, so forgetting someone would need that slow rebuild or a
tombstone that keeps their embedding on disk; and FAISS has a GPU IVF-flat.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

INDEX_KINDS = ("flat", "ivf")


def normalise(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    """Finite (n, dim) rows as contiguous float32 of unit length; zero rows are an error."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{what} must have shape (n, {dim or 'dim'}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} rows {np.flatnonzero(norms[:, 0] == 0)[:10].tolist()} have zero norm")
    return np.ascontiguousarray(x / norms)


def make_index(vectors: np.ndarray, ids: np.ndarray, kind: str, nprobe: int) -> faiss.Index:
    """A filled inner-product index of `kind` over unit `vectors` (n, d) with int64 `ids`."""
    d = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(len(vectors))), len(vectors) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.nprobe = min(nprobe, nlist)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if len(vectors):
            index.train(vectors)
    else:
        raise ValueError(f"unknown index kind {kind!r}; valid: {INDEX_KINDS}")
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index
