"""k-NN backends: against a dense brute force, against each other, and across chunk sizes."""
from __future__ import annotations

import numpy as np
import pytest

from faceforget.eval.knn import KnnFunc, exact_topk, faiss_topk

BACKENDS: list[KnnFunc] = [exact_topk, faiss_topk]


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(q: np.ndarray, g: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference: full float64 score rows, excluded item removed, sorted by (-score, index)."""
    scores, indices = [], []
    for i in range(len(q)):
        row = [(float(q[i].astype(np.float64) @ g[j].astype(np.float64)), j) for j in range(len(g))]
        row = sorted((-s, j) for s, j in row if exclude is None or j != exclude[i])[:k]
        scores.append([-s for s, _ in row])
        indices.append([j for _, j in row])
    return np.array(scores), np.array(indices)


@pytest.mark.parametrize("knn", BACKENDS)
@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("loo", [False, True])
def test_matches_dense_brute_force(knn: KnnFunc, k: int, loo: bool) -> None:
    rng = np.random.default_rng(k)
    g = _unit(rng, 41, 16)
    q = g[:13] if loo else _unit(rng, 13, 16)
    exclude = np.arange(13) if loo else None
    k = min(k, 40 if loo else 41)
    scores, indices = knn(q, g, k, exclude=exclude)
    ref_s, ref_i = _brute(q, g, k, exclude)
    assert scores.dtype == np.float32 and indices.dtype == np.int64 and scores.shape == (13, k)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_allclose(scores, ref_s, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("loo", [False, True])
def test_backends_give_equal_rankings(loo: bool) -> None:
    rng = np.random.default_rng(7)
    g = _unit(rng, 500, 32)
    q = g[::3] if loo else _unit(rng, 120, 32)
    exclude = np.arange(0, 500, 3) if loo else None
    s_exact, i_exact = exact_topk(q, g, 10, exclude=exclude)
    s_faiss, i_faiss = faiss_topk(q, g, 10, exclude=exclude)
    np.testing.assert_array_equal(i_exact, i_faiss)
    np.testing.assert_allclose(s_exact, s_faiss, atol=1e-5)


@pytest.mark.parametrize("knn", BACKENDS)
def test_chunk_sizes_give_identical_results(knn: KnnFunc) -> None:
    rng = np.random.default_rng(3)
    g, q = _unit(rng, 200, 24), _unit(rng, 37, 24)
    exclude = rng.integers(-1, 200, 37)
    s_ref, i_ref = knn(q, g, 9, exclude=exclude, chunk_size=len(q))
    for chunk in (1, 7):
        s, i = knn(q, g, 9, exclude=exclude, chunk_size=chunk)
        np.testing.assert_array_equal(i, i_ref)
        if knn is exact_topk:
            np.testing.assert_array_equal(s, s_ref)
        else:  # FAISS switches kernels with the batch size; only the ranking is promised
            np.testing.assert_allclose(s, s_ref, atol=1e-6)


@pytest.mark.parametrize("knn", BACKENDS)
def test_exclusion_leaves_out_only_that_item(knn: KnnFunc) -> None:
    g = np.eye(4, dtype=np.float32)
    q = g[[0, 1, 2]]
    _, idx = knn(q, g, 3, exclude=np.array([0, 3, -1]))
    assert 0 not in idx[0] and 3 not in idx[1]
    assert idx[1, 0] == 1 and idx[2, 0] == 2


def test_exact_breaks_ties_by_lower_index() -> None:
    g = np.array([[0, 1], [1, 0], [1, 0], [0.6, 0.8], [1, 0], [1, 0]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    scores, idx = exact_topk(q, g, 3)
    np.testing.assert_array_equal(idx, [[1, 2, 4]])
    np.testing.assert_array_equal(scores, [[1, 1, 1]])
    _, idx = exact_topk(q, g, 3, exclude=np.array([2]))
    np.testing.assert_array_equal(idx, [[1, 4, 5]])


@pytest.mark.parametrize("knn", BACKENDS)
def test_bad_arguments_are_clear_errors(knn: KnnFunc) -> None:
    g, q = np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)[:2]
    with pytest.raises(ValueError, match="k must be in"):
        knn(q, g, 4)
    with pytest.raises(ValueError, match="k must be in"):
        knn(q, g, 3, exclude=np.array([0, -1]))
    with pytest.raises(ValueError, match="k must be in"):
        knn(q, g, 0)
    with pytest.raises(ValueError, match="exclude"):
        knn(q, g, 1, exclude=np.array([3, 0]))
    with pytest.raises(ValueError, match="same d"):
        knn(q[:, :2], g, 1)
    assert knn(q, g, 3, exclude=np.array([-1, -1]))[1].shape == (2, 3)


@pytest.mark.parametrize("loo", [False, True])
def test_running_topk_is_identical_for_block_sizes_1_prime_n(loo: bool) -> None:
    """exact_topk blocks queries and gallery rows alike; ties (duplicated rows) go to the lower index."""
    rng = np.random.default_rng(3)
    g = _unit(rng, 60, 8)
    g[30:40] = g[:10]  # exact duplicates: tied scores across gallery blocks
    q = g[:17] if loo else _unit(rng, 17, 8)
    exclude = np.arange(17) if loo else None
    ref_s, ref_i = _brute(q, g, 12, exclude)
    for chunk in (1, 7, 60):
        s, i = exact_topk(q, g, 12, exclude=exclude, chunk_size=chunk)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(s, ref_s, atol=1e-6)
    big = np.concatenate([g] * 300)  # 18,000 rows: two gallery blocks of 16,384, ties across the boundary
    scores = (q.astype(np.float64) @ big.T.astype(np.float64)).astype(np.float32)
    order = np.lexsort((np.broadcast_to(np.arange(len(big)), scores.shape), -scores), axis=1)
    np.testing.assert_array_equal(exact_topk(q, big, 5, chunk_size=7)[1], order[:, :5])
