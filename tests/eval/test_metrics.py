"""Retrieval and verification metrics, each next to an independent reference (sklearn, PML, loops)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import average_precision_score

from faceforget.eval import metrics as M
from faceforget.eval import verification as V


def _clustered(rng: np.random.Generator, n: int, n_classes: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Noisy class clusters: metrics land well between chance and 1, and ties have probability 0."""
    labels = rng.integers(0, n_classes, n)
    centres = rng.standard_normal((n_classes, d))
    return centres[labels] + 1.2 * rng.standard_normal((n, d)), labels


def _tied(rng: np.random.Generator, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings with coordinates in {-1, 0, 1} (d = 3): many exactly tied scores."""
    x = rng.integers(-1, 2, (n, 3)).astype(np.float64)
    x[~x.any(axis=1)] = (1.0, 0.0, 0.0)
    return x, rng.integers(0, n_classes, n)


def _ref_scores(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Cosine scores with a per-row loop (float64, rounded to float32 like the metrics)."""
    qn = np.stack([v / np.linalg.norm(v) for v in q.astype(np.float64)])
    gn = np.stack([v / np.linalg.norm(v) for v in g.astype(np.float64)])
    return (qn @ gn.T).astype(np.float32)


def _literal(order_rel: list[bool], r: int, ks: tuple[int, ...]) -> tuple[float, dict[int, float]]:
    """MAP@R and hit@k of one ranked relevance list, by a literal loop."""
    hits, total = 0, 0.0
    for i, rel in enumerate(order_rel[:r], start=1):
        hits += rel
        total += hits / i if rel else 0.0
    return total / r, {k: float(any(order_rel[:k])) for k in ks}


def test_l2_normalise_vs_loop() -> None:
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    x[2] = 0
    out = M.l2_normalise(x)
    assert out.dtype == np.float32
    for row, ref in zip(out, x, strict=True):
        n = np.linalg.norm(ref)
        np.testing.assert_allclose(row, ref / n if n else ref, rtol=1e-6)


@pytest.mark.parametrize(("nq", "ng", "n_classes", "tied"), [(20, 30, 3, False), (40, 120, 10, False),
                                                             (25, 60, 4, True), (30, 15, 2, True)])
def test_ap_matches_sklearn(nq: int, ng: int, n_classes: int, tied: bool) -> None:
    rng = np.random.default_rng(nq * ng)
    make = _tied if tied else _clustered
    (q, ql), (g, gl) = make(rng, nq, n_classes), make(rng, ng, n_classes)
    qm = M.rank_queries(q, ql, g, gl, chunk_size=7)
    scores = _ref_scores(q, g)
    for i in range(nq):
        y = gl == ql[i]
        if y.any():
            assert qm.ap[i] == pytest.approx(average_precision_score(y, scores[i]), abs=1e-12)
            assert qm.n_relevant[i] == y.sum()
        else:
            assert np.isnan(qm.ap[i]) and not qm.valid[i]
    assert (qm.n_gallery == ng).all()


@pytest.mark.parametrize("tied", [False, True])
def test_ap_leave_one_out_matches_sklearn(tied: bool) -> None:
    rng = np.random.default_rng(11)
    g, gl = (_tied if tied else _clustered)(rng, 50, 6)
    idx = rng.choice(50, 20, replace=False)
    qm = M.rank_queries(g[idx], gl[idx], g, gl, exclude=idx)
    scores = _ref_scores(g[idx], g)
    for i, j in enumerate(idx):
        keep = np.arange(50) != j
        y = gl[keep] == gl[j]
        assert qm.n_gallery[i] == 49 and qm.n_relevant[i] == y.sum()
        if y.any():
            assert qm.ap[i] == pytest.approx(average_precision_score(y, scores[i][keep]), abs=1e-12)


@pytest.mark.parametrize("n_classes", [3, 12])
@pytest.mark.parametrize("ref_includes_query", [False, True])
def test_map_at_r_and_precision_at_1_match_pml(n_classes: int, ref_includes_query: bool) -> None:
    rng = np.random.default_rng(n_classes)
    ref, ref_l = _clustered(rng, 150, n_classes)
    q, ql = (ref[:40], ref_l[:40]) if ref_includes_query else _clustered(rng, 40, n_classes)
    ql = ql.copy()
    ql[0] = n_classes + 5  # a lone query: PML drops it, so do we
    if ref_includes_query:
        ref_l = ref_l.copy()
        ref_l[0] = ql[0]
    ref, q = M.l2_normalise(ref).astype(np.float32), M.l2_normalise(q).astype(np.float32)
    exclude = np.arange(40) if ref_includes_query else None
    qm = M.rank_queries(q, ql, ref, ref_l, exclude=exclude, ks=(1,))
    got = M.summarise(qm)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
    pml = calc.get_accuracy(q, ql, ref, ref_l, ref_includes_query=ref_includes_query)
    full = AccuracyCalculator(include=("mean_average_precision",), k=None)
    pml_full = full.get_accuracy(q, ql, ref, ref_l, ref_includes_query=ref_includes_query)
    assert got["n_no_relevant"] == 1 and got["n_queries"] == 39
    assert got["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert got["mAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert got["mAP"] == pytest.approx(pml_full["mean_average_precision"], abs=1e-9)


def test_recall_and_map_at_r_vs_brute_force_without_ties() -> None:
    rng = np.random.default_rng(5)
    (q, ql), (g, gl) = _clustered(rng, 30, 5), _clustered(rng, 80, 5)
    ks = (1, 3, 10, 80, 200)
    qm = M.rank_queries(q, ql, g, gl, ks=ks)
    scores = _ref_scores(q, g)
    for i in range(30):
        rel = list(gl[np.argsort(-scores[i], kind="stable")] == ql[i])
        map_r, hits = _literal(rel, int(sum(rel)), ks)
        assert qm.ap_at_r[i] == pytest.approx(map_r, abs=1e-12)
        for k in ks:
            assert qm.hit_at[k][i] == hits[k]


def test_ties_use_the_expectation_over_all_tie_orders() -> None:
    """Every order of a 6-item gallery: the mean of the literal metrics is what rank_queries reports."""
    angles = np.deg2rad([0, 0, 40, 40, 40, 90])  # gallery directions: two tie groups and a singleton
    g = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    gl = np.array([1, 0, 1, 0, 0, 1])
    q = np.array([[1.0, 0.0], [0.0, 1.0], [np.cos(0.7), np.sin(0.7)]])
    ql = np.array([0, 1, 1])
    ks = (1, 2, 3, 4)
    qm = M.rank_queries(q, ql, g, gl, ks=ks)
    scores = _ref_scores(q, g)
    for i in range(3):
        runs = []
        for perm in itertools.permutations(range(6)):
            order = sorted(perm, key=lambda j: -scores[i][j])  # stable: ties in permutation order
            rel = list(gl[order] == ql[i])
            runs.append(_literal(rel, int(sum(rel)), ks))
        assert qm.ap_at_r[i] == pytest.approx(np.mean([r[0] for r in runs]), abs=1e-12)
        for k in ks:
            assert qm.hit_at[k][i] == pytest.approx(np.mean([r[1][k] for r in runs]), abs=1e-12)
        assert qm.ap[i] == pytest.approx(average_precision_score(gl == ql[i], scores[i]), abs=1e-12)


def test_hand_made_ranking() -> None:
    angles = np.deg2rad([10, 20, 30, 40])
    g = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    qm = M.rank_queries(np.array([[1.0, 0.0]]), np.array([1]), g, np.array([1, 0, 1, 0]), ks=(1, 2))
    assert qm.ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert qm.ap_at_r[0] == pytest.approx(0.5)
    assert qm.hit_at[1][0] == 1 and qm.hit_at[2][0] == 1


def test_degenerate_model_scores_chance_not_perfect() -> None:
    """All embeddings equal and the gallery grouped by identity: no order-based R@1 = 1."""
    gl = np.repeat(np.arange(5), 4)
    g, q = np.ones((20, 8)), np.ones((5, 8))
    qm = M.rank_queries(q, np.arange(5), g, gl, ks=(1, 5))
    n, r = 20, 4
    np.testing.assert_allclose(qm.hit_at[1], r / n)
    np.testing.assert_allclose(qm.hit_at[5], M.chance_recall_at_k(n, r, 5))
    np.testing.assert_allclose(qm.ap, r / n)  # sklearn: one threshold, precision r/n
    np.testing.assert_allclose(qm.ap_at_r, M.chance_map_at_r(n, r))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(2, 40), st.integers(1, 6), st.booleans())
def test_gallery_permutation_changes_nothing(seed: int, nq: int, ng: int, n_classes: int, loo: bool) -> None:
    rng = np.random.default_rng(seed)
    g, gl = _tied(rng, ng, n_classes)
    if loo:
        exclude = rng.integers(0, ng, nq)
        q, ql = g[exclude], gl[exclude]
    else:
        (q, ql), exclude = _tied(rng, nq, n_classes), None
    perm = rng.permutation(ng)
    inverse = np.argsort(perm)
    a = M.rank_queries(q, ql, g, gl, exclude=exclude, ks=(1, 3))
    moved = None if exclude is None else inverse[exclude]
    b = M.rank_queries(q, ql, g[perm], gl[perm], exclude=moved, ks=(1, 3))
    for x, y in [(a.ap, b.ap), (a.ap_at_r, b.ap_at_r), (a.hit_at[1], b.hit_at[1]), (a.hit_at[3], b.hit_at[3]),
                 (a.n_relevant, b.n_relevant), (a.n_gallery, b.n_gallery)]:
        np.testing.assert_array_equal(x, y)


def test_chunk_sizes_give_identical_results() -> None:
    rng = np.random.default_rng(2)
    g, gl = _tied(rng, 60, 4)
    q, ql = _clustered(rng, 23, 4, d=3)
    exclude = rng.integers(-1, 60, 23)
    ref = M.rank_queries(q, ql, g, gl, exclude=exclude, chunk_size=23)
    for chunk in (1, 7):
        qm = M.rank_queries(q, ql, g, gl, exclude=exclude, chunk_size=chunk)
        for k in ref.hit_at:
            np.testing.assert_array_equal(qm.hit_at[k], ref.hit_at[k])
        np.testing.assert_array_equal(qm.ap, ref.ap)
        np.testing.assert_array_equal(qm.ap_at_r, ref.ap_at_r)


def test_lone_identity_queries_are_left_out_and_counted() -> None:
    rng = np.random.default_rng(4)
    g, gl = _clustered(rng, 30, 3)
    gl[0] = 99  # identity with a single image: lone under leave-one-out
    idx = np.array([0, 1, 2, 3])
    q, ql = np.vstack([g[idx], rng.standard_normal((1, 8))]), np.append(gl[idx], 42)  # 42: not in gallery
    qm = M.rank_queries(q, ql, g, gl, exclude=np.append(idx, -1))
    assert list(qm.valid) == [False, True, True, True, False]
    assert np.isnan(qm.ap[[0, 4]]).all() and np.isnan(qm.hit_at[1][[0, 4]]).all()
    s = M.summarise(qm)
    assert s["n_queries"] == 3 and s["n_no_relevant"] == 2
    assert s["mAP"] == pytest.approx(qm.ap[1:4].mean())
    assert s["R@5"] == pytest.approx(qm.hit_at[5][1:4].mean())
    assert M.chance_summary(qm)["n_queries"] == 3
    assert np.isnan(M.summarise(M.rank_queries(q[4:], ql[4:], g, gl))["mAP"])


def test_rank_queries_rejects_bad_input() -> None:
    g = np.eye(3)
    with pytest.raises(ValueError, match="arrays"):
        M.rank_queries(g, np.arange(2), g, np.arange(3))
    with pytest.raises(ValueError, match="exclude"):
        M.rank_queries(g, np.arange(3), g, np.arange(3), exclude=np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="finite"):
        M.rank_queries(g * np.nan, np.arange(3), g, np.arange(3))


def _enumerate_chance(n: int, r: int, k: int) -> tuple[float, float, float]:
    """Exact E[AP], E[MAP@R], E[hit@k] over all placements of r relevant items among n places."""
    aps, maps, hits = [], [], []
    for places in itertools.combinations(range(1, n + 1), r):
        aps.append(np.mean([j / p for j, p in enumerate(places, start=1)]))
        maps.append(sum(j / p for j, p in enumerate(places, start=1) if p <= r) / r)
        hits.append(float(places[0] <= k))
    return float(np.mean(aps)), float(np.mean(maps)), float(np.mean(hits))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_chance_levels_exact_by_enumeration(n: int) -> None:
    for r, k in itertools.product(range(1, n + 1), (1, 3, 10)):
        ap, map_r, hit = _enumerate_chance(n, r, k)
        assert M.chance_average_precision(n, r) == pytest.approx(ap, abs=1e-12)
        assert M.chance_map_at_r(n, r) == pytest.approx(map_r, abs=1e-12)
        assert M.chance_recall_at_k(n, r, k) == pytest.approx(hit, abs=1e-12)
    assert np.isnan(M.chance_average_precision(n, 0))
    with pytest.raises(ValueError):
        M.chance_map_at_r(n, n + 1)


def test_chance_levels_vs_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    n, r, trials = 300, 6, 20000
    places = np.sort(np.argsort(rng.random((trials, n)), axis=1)[:, :r] + 1, axis=1)
    j = np.arange(1, r + 1)
    ap = (j / places).mean(axis=1)
    map_r = np.where(places <= r, j / places, 0).sum(axis=1) / r
    for sample, expected in [(ap, M.chance_average_precision(n, r)), (map_r, M.chance_map_at_r(n, r)),
                             (places[:, 0] <= 10, M.chance_recall_at_k(n, r, 10))]:
        assert abs(sample.mean() - expected) < 4 * sample.std() / math.sqrt(trials)


def test_chance_recall_is_stable_for_large_galleries() -> None:
    for n, r, k in [(10**6, 1, 1), (2000, 7, 10), (15000, 3, 5)]:
        exact = 1 - math.comb(n - r, k) / math.comb(n, k)
        assert M.chance_recall_at_k(n, r, k) == pytest.approx(exact, rel=1e-12)
    np.testing.assert_allclose(M.chance_recall_at_k(np.array([5, 5]), np.array([1, 2]), 9), [1.0, 1.0])


def test_random_embeddings_score_chance() -> None:
    rng = np.random.default_rng(1)
    g, gl = rng.standard_normal((400, 16)), rng.integers(0, 40, 400)
    q, ql = rng.standard_normal((600, 16)), rng.integers(0, 40, 600)
    qm = M.rank_queries(q, ql, g, gl)
    got, chance = M.summarise(qm), M.chance_summary(qm)
    per_query = {"R@1": qm.hit_at[1], "R@10": qm.hit_at[10], "mAP": qm.ap, "mAP@R": qm.ap_at_r}
    for key, values in per_query.items():
        assert abs(got[key] - chance[key]) < 4 * values.std() / math.sqrt(600), key


def test_compactness_vs_loop() -> None:
    rng = np.random.default_rng(8)
    emb, labels = _clustered(rng, 40, 5)
    labels[0] = 77  # single image: CS = 1
    ids, cs = M.compactness_per_identity(emb, labels)
    for ident, value in zip(ids, cs, strict=True):
        z = [e / np.linalg.norm(e) for e in emb[labels == ident]]
        c = np.mean(z, axis=0)
        c = c / np.linalg.norm(c)
        assert value == pytest.approx(np.mean([float(v @ c) for v in z]), abs=1e-12)
    assert cs[list(ids).index(77)] == pytest.approx(1.0)
    assert M.compactness(emb, labels) == pytest.approx(cs.mean())


def test_pair_scores_vs_loop() -> None:
    rng = np.random.default_rng(9)
    emb, labels = _clustered(rng, 25, 4)
    genuine, impostor = [], []
    for i in range(25):
        for j in range(i + 1, 25):
            s = emb[i] @ emb[j] / np.linalg.norm(emb[i]) / np.linalg.norm(emb[j])
            (genuine if labels[i] == labels[j] else impostor).append(s)
    for chunk in (1, 7, 25):
        gen, imp = V.pair_scores(emb, labels, chunk_size=chunk)
        np.testing.assert_allclose(gen, genuine, atol=1e-6)
        np.testing.assert_allclose(imp, impostor, atol=1e-6)


def _tar_brute(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """Sweep every candidate threshold; keep the lowest whose impostor rate (strictly above) is <= far."""
    for t in np.concatenate([[-np.inf], np.unique(np.concatenate([genuine, impostor]))]):
        if sum(s > t for s in impostor) / len(impostor) <= far:
            return sum(s > t for s in genuine) / len(genuine), float(t)
    raise AssertionError("unreachable: the largest score is always valid")


@pytest.mark.parametrize("discrete", [False, True])
def test_tar_at_far_vs_threshold_sweep(discrete: bool) -> None:
    rng = np.random.default_rng(10)
    genuine, impostor = rng.normal(1, 1, 60), rng.normal(0, 1, 1000)
    if discrete:
        genuine, impostor = np.round(genuine, 1), np.round(impostor, 1)
    for far in (0.0, 1e-3, 0.0105, 0.29, 0.5, 1.0):
        tar, threshold = V.tar_at_far(genuine, impostor, far)
        assert (tar, threshold) == pytest.approx(_tar_brute(genuine, impostor, far))
        assert V.accept_rate(impostor, threshold) <= far
        assert V.accept_rate(genuine, threshold) == pytest.approx(np.mean([s > threshold for s in genuine]))
    with pytest.raises(ValueError):
        V.tar_at_far(genuine, impostor, 1.5)


def test_summary_numbers() -> None:
    assert M.forgetting_efficacy(0.8, 0.2, 0.1) == pytest.approx(6 / 7)
    assert M.forgetting_efficacy(0.8, 0.05, 0.1) == 1.0
    assert M.forgetting_efficacy(0.8, 0.9, 0.1) == 0.0
    assert np.isnan(M.forgetting_efficacy(0.1, 0.05, 0.1))
    assert M.utility(0.45, 0.5) == pytest.approx(0.9)
    assert np.isnan(M.utility(0.3, 0.0))
    assert M.harmonic(0.5, 1.0) == pytest.approx(2 / 3)
    assert M.harmonic(0.0, 0.0) == 0.0 and M.harmonic(0.0, 0.7) == 0.0
