"""
The FAISS side of the gallery: unit-normalised float32 input and the index kinds `flat`, `ivf`, `ivfpq`, `hnsw`.

`flat` is exact: `IndexIDMap2(IndexFlatIP)`. `ivf` is `IndexIVFFlat` with inner product and spherical
k-means; `nlist = min(4*sqrt(n), n // 39)` (at least 1) so every centroid has >= 39 training points and a
tiny gallery gets one list, i.e. exact search. All kinds keep caller-chosen int64 ids and can return the
stored vectors (`reconstruct_batch`; IVF kinds keep a hashtable direct map for it).

Why IVF-flat is `auto`'s choice for large galleries: scores stay exact inner products (only the probed
lists are approximate); there is no graph memory on top of the vectors; building is one bounded k-means
(faiss subsamples its input, fixed seed, so deterministic) plus a linear add; and FAISS has a GPU IVF-flat.
The two others are options for galleries where IVF-flat does not fit (docs/galleries.md):
- `ivfpq`: IVF lists holding product-quantised codes, d/4 sub-quantisers of 8 bits (fewer bits for a
  small gallery, so every code word has >= 39 training points): 32 bytes per 128-D vector instead of
  512, approximate scores. The vectors it returns are decoded approximations, so the gallery's
  rebuild-on-delete retrains on them; re-embed (`index rebuild`) rather than delete many times.
- `hnsw`: `IndexHNSWFlat`, M = 32 links, efConstruction 80, efSearch = 4 x nprobe: the fastest queries
  at high recall, exact vectors, but graph memory on top and slow inserts; HNSW cannot remove ids, so
  the gallery rebuilds it from the retained vectors on every delete (as it does for every kind).
With a GPU build of FAISS (`faiss.get_num_gpus() > 0`) the IVF k-means runs on the GPU and
`to_gpu` moves a built index there for search; the CPU wheel used here has no GPU support, so that
path is untested.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

INDEX_KINDS = ("flat", "ivf", "ivfpq", "hnsw")
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 80


def _has_gpu() -> bool:
    """Whether this FAISS build has GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of `index` on all GPUs for searching when FAISS has any, else `index` itself (untested here)."""
    return faiss.index_cpu_to_all_gpus(index) if _has_gpu() else index


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


def _ivf_lists(n: int) -> int:
    """IVF list count: min(4 sqrt(n), n // 39), at least 1, so every centroid gets >= 39 training points."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _pq_shape(d: int, n: int) -> tuple[int, int]:
    """(sub-quantisers, bits): the largest divisor of d up to d/4, and <= 8 bits with >= 39 points per code."""
    m = max(k for k in range(1, max(d // 4, 1) + 1) if d % k == 0)
    return m, max(1, min(8, int(math.log2(max(n, 2) / 39)) if n >= 78 else 1))


def _make_ivf(d: int, n: int, pq: bool) -> faiss.Index:
    """An untrained IVF index (flat or PQ lists), spherical k-means, hashtable direct map."""
    nlist = _ivf_lists(n)
    quantizer = faiss.IndexFlatIP(d)
    if pq:
        m, bits = _pq_shape(d, n)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    if _has_gpu():
        index.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(d))
    return index


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Search breadth of a built index: IVF lists probed (at most nlist), HNSW efSearch = 4 x nprobe; flat: none."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = 4 * nprobe
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = min(nprobe, inner.nlist)


def make_index(vectors: np.ndarray, ids: np.ndarray, kind: str, nprobe: int) -> faiss.Index:
    """A filled inner-product index of `kind` over unit `vectors` (n, d) with int64 `ids`."""
    d = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind in ("ivf", "ivfpq"):
        index = _make_ivf(d, len(vectors), pq=kind == "ivfpq")
        if len(vectors):
            index.train(vectors)
    elif kind == "hnsw":
        graph = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index = faiss.IndexIDMap2(graph)
    else:
        raise ValueError(f"unknown index kind {kind!r}; valid: {INDEX_KINDS}")
    set_nprobe(index, nprobe)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index
