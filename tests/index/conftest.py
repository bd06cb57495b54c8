"""Gallery test fixtures: seeded clustered embeddings, a path-hashing fake model, brute-force top-k."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from faceforget.data.records import FaceRecord
from faceforget.seeding import numpy_rng


@pytest.fixture(autouse=True)
def single_faiss_thread() -> Iterator[None]:
    """Run FAISS on one thread (tiny indexes; OpenMP threads only contend on a shared CPU), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _toy_embeddings(seed: int, n_ids: int = 20, per_id: int = 8, dim: int = 16,
                    spread: float = 0.4) -> tuple[np.ndarray, list[FaceRecord]]:
    """`n_ids` Gaussian clusters of `per_id` vectors each, with records `idNNNN/MMM.jpg`."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    x = np.repeat(centres, per_id, axis=0) + spread * rng.standard_normal((n_ids * per_id, dim))
    records = [FaceRecord(f"id{i:04d}/{j:03d}.jpg", f"id{i:04d}") for i in range(n_ids) for j in range(per_id)]
    return x.astype(np.float32), records


@pytest.fixture
def toy_embeddings() -> Callable[..., tuple[np.ndarray, list[FaceRecord]]]:
    """Factory of seeded clustered embeddings and matching records."""
    return _toy_embeddings


@pytest.fixture
def fake_model() -> Callable[[str, int], Callable[[list[Path]], np.ndarray]]:
    """Factory of deterministic embed functions: identity (parent folder) centre + per-path noise."""
    def make(tag: str, dim: int) -> Callable[[list[Path]], np.ndarray]:
        def embed(paths: list[Path]) -> np.ndarray:
            centres = [numpy_rng(0, tag, Path(p).parent.name).standard_normal(dim) for p in paths]
            noise = [numpy_rng(0, tag, str(p)).standard_normal(dim) for p in paths]
            return (np.stack(centres) + 0.4 * np.stack(noise)).astype(np.float32)
        return embed
    return make


def _brute_topk(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by cosine in float64: (ids, scores), each (n_queries, min(k, n))."""
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.asarray(ids)[order], np.take_along_axis(sims, order, axis=1)


def _hit_arrays(hits: list) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) arrays from `Gallery.search` output with equal-length hit lists."""
    return np.array([[h.id for h in row] for row in hits]), np.array([[h.score for h in row] for row in hits])


@pytest.fixture
def brute_topk() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The float64 numpy reference search."""
    return _brute_topk


@pytest.fixture
def hit_arrays() -> Callable[[list], tuple[np.ndarray, np.ndarray]]:
    """Converter of search output to (ids, scores) arrays."""
    return _hit_arrays
