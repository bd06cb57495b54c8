"""Bounded-memory ranking: equal to the dense sort-every-row path, across chunk sizes, near ties and backends."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from faceforget.config import EvalConfig
from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval import metrics as M
from faceforget.eval.knn import exact_topk, faiss_topk, knn_backend
from faceforget.eval.protocol import evaluate_embeddings


def _clustered(rng: np.random.Generator, n: int, n_classes: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, n_classes, n)
    return rng.standard_normal((n_classes, d))[labels] + 1.2 * rng.standard_normal((n, d)), labels


def _tied(rng: np.random.Generator, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(-1, 2, (n, 3)).astype(np.float64)
    x[~x.any(axis=1)] = (1.0, 0.0, 0.0)
    return x, rng.integers(0, n_classes, n)


def _near_tied(rng: np.random.Generator, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of 6 directions, each nudged by 0 or +-1e-7: float32 scores tie or differ by an ulp or two."""
    base = rng.standard_normal((6, 16))
    x = base[rng.integers(0, 6, n)] + rng.choice([-1e-7, 0.0, 0.0, 1e-7], (n, 16))
    return x, rng.integers(0, n_classes, n)


def _assert_same(a: M.QueryMetrics, b: M.QueryMetrics, atol: float = 0.0) -> None:
    for x, y in [(a.ap, b.ap), (a.ap_at_r, b.ap_at_r), (a.n_relevant, b.n_relevant), (a.n_gallery, b.n_gallery),
                 *((a.hit_at[k], b.hit_at[k]) for k in a.hit_at)]:
        np.testing.assert_allclose(x, y, rtol=0, atol=atol, equal_nan=True)


@pytest.mark.parametrize("make", [_clustered, _tied, _near_tied])
@pytest.mark.parametrize("loo", [False, True])
def test_equal_to_dense_path_for_chunk_sizes_1_prime_n(make, loo: bool, dense_rank) -> None:
    rng = np.random.default_rng(3)
    g, gl = make(rng, 90, 5)
    if loo:
        exclude = rng.choice(90, 31, replace=False)
        q, ql = g[exclude], gl[exclude]
    else:
        (q, ql), exclude = make(rng, 31, 6), None  # class 5: queries with no relevant item
    ks = (1, 2, 5, 40, 100)
    dense = dense_rank(q, ql, g, gl, exclude=exclude, ks=ks)
    runs = [M.rank_queries(q, ql, g, gl, exclude=exclude, ks=ks, chunk_size=c) for c in (1, 7, 31)]
    for run in runs:
        _assert_same(run, runs[-1])  # bit-identical across chunk sizes
    _assert_same(runs[-1], dense, atol=1e-12)


def test_near_ties_are_rescored_exactly(dense_rank) -> None:
    """Relevant and other items closer than the float32 error: the counts must come from the exact scores."""
    rng = np.random.default_rng(0)
    g, gl = _near_tied(rng, 400, 3)
    q = g[:50] + rng.choice([-1e-7, 1e-7], (50, 16))
    dense = dense_rank(q, gl[:50], g, gl)
    fast = M.rank_queries(q, gl[:50], g, gl)
    _assert_same(fast, dense, atol=1e-12)
    assert 0.2 < np.nanmean(fast.ap) < 0.8  # neither trivial nor chance: ties decide the numbers


def test_gallery_wider_than_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """With MAX_BLOCK_SCORES below one row the block shrinks to one query; numbers do not change."""
    rng = np.random.default_rng(4)
    (q, ql), (g, gl) = _clustered(rng, 13, 4), _clustered(rng, 300, 4)
    ref = M.rank_queries(q, ql, g, gl)
    monkeypatch.setattr(M, "MAX_BLOCK_SCORES", 100)
    _assert_same(M.rank_queries(q, ql, g, gl), ref)


def test_peak_memory_follows_the_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """100k gallery x 1,000 queries: traced peak within the documented bound, a small part of the dense matrix."""
    rng = np.random.default_rng(5)
    ng, nq, d = 100_000, 1000, 16
    gl = rng.integers(0, 20_000, ng)
    g = (rng.standard_normal((20_000, d))[gl] + 0.05 * rng.standard_normal((ng, d))).astype(np.float32)
    q, ql = g[:nq] + np.float32(0.05) * rng.standard_normal((nq, d)).astype(np.float32), gl[:nq]
    monkeypatch.setattr(M, "MAX_BLOCK_SCORES", 1 << 20)
    c = (1 << 20) // ng
    tracemalloc.start()
    qm = M.rank_queries(q, ql, g, gl, chunk_size=512)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bound = 4 * ng * d + 28 * c * ng + 128 * (nq + ng)
    assert peak <= bound, (peak, bound)
    assert peak < 0.05 * 4 * nq * ng  # the dense float32 score matrix would be 400 MB
    assert np.nanmean(qm.hit_at[1]) > 0.9


def _manifest(labels: np.ndarray, roles: np.ndarray) -> SplitManifest:
    records = [FaceRecord(f"{i}.jpg", str(lab), role) for i, (lab, role) in enumerate(zip(labels, roles))]
    return SplitManifest.from_records(records, {}, "/data", None)


def test_protocol_knn_backends_give_equal_rankings() -> None:
    """torch and FAISS top-k through the protocol: equal R@k and mAP@R, equal to the exact path (no ties)."""
    rng = np.random.default_rng(6)
    emb, labels = _clustered(rng, 240, 12, d=16)
    roles = rng.choice(["forget_test", "retain_test", "retain_test", "distractor", "retain_train"], 240)
    roles[labels < 2] = rng.choice(["forget_train", "forget_test"], (labels < 2).sum())
    manifest = _manifest(labels, roles)
    exact = evaluate_embeddings(emb, manifest)
    by_torch = evaluate_embeddings(emb, manifest, knn=exact_topk)
    by_faiss = evaluate_embeddings(emb, manifest, EvalConfig(knn="faiss"))
    for group in ("forget", "retain", "retain_seen"):
        for key in ("R@1", "R@5", "R@10", "mAP@R", "n_queries"):
            assert by_torch[group][key] == by_faiss[group][key], (group, key)
            assert by_torch[group][key] == pytest.approx(exact[group][key], abs=1e-12), (group, key)
        assert np.isnan(by_torch[group]["mAP"]) and not np.isnan(exact[group]["mAP"])
    assert 0.3 < exact["retain"]["mAP@R"] < 0.95


def test_knn_backend_names() -> None:
    assert knn_backend("exact") is None and knn_backend("torch") is exact_topk and knn_backend("faiss") is faiss_topk
    with pytest.raises(ValueError, match="choose from"):
        knn_backend("annoy")
