"""
Retrieval evaluation speed: faceforget's `rank_queries` vs pytorch-metric-learning's AccuracyCalculator.

Usage: OMP_NUM_THREADS=1 python benchmarks/eval_speed.py [--repeats 3] [--append]
       OMP_NUM_THREADS=1 python benchmarks/eval_speed.py --gallery 1000000 --queries 500 --only exact
Embeddings: synthetic clusters shaped like the LFW protocol's retain queries (2,877 queries, 10,195
gallery rows, 128-D, identity sizes from a Pareto draw, leave-one-out), or `--npz` with `emb`, `labels`
and a boolean `query` (queries are gallery rows, left out of their own ranking). Each contender runs
`--repeats` times, interleaved with the others; the table shows the best time and the numbers it gave,
and the peak of one more run under tracemalloc (numpy allocations only: torch and FAISS buffers are not seen).
`bare` is the least any evaluation needs: the float32 similarity matmul plus top-K (K = the largest R),
in the same query chunks. The process peak RSS is printed too (it includes the inputs).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tracemalloc
from functools import partial

import numpy as np
import torch

from faceforget.eval import metrics
from faceforget.eval.knn import exact_topk, faiss_topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from results_log import append_results, best_of, load  # noqa: E402


def synthetic(n_gallery: int, n_queries: int, seed: int, d: int = 128,
              noise: float = 1.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Clustered embeddings shaped like the LFW protocol: `n_queries` held-out rows, then distractors.

    Identities hold 5 x Pareto(1.47) images (LFW dlib150: median 8, max 530), half of them held out
    (at least 2); the distractors are identities of 1-4 images (about 1.36 each, as LFW's 7,248 / 5,326).
    """
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n_queries:
        sizes.append(max(2, int(5 * (1 - rng.random()) ** (-1 / 1.47)) // 2))
    sizes[-1] -= sum(sizes) - n_queries
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n_dis = n_gallery - n_queries
    labels = np.concatenate([labels, len(sizes) + rng.integers(0, max(int(n_dis / 1.36), 1), n_dis)])
    centres = rng.standard_normal((labels.max() + 1, d)).astype(np.float32)
    emb = centres[labels] + noise * rng.standard_normal((len(labels), d)).astype(np.float32)
    query = np.zeros(len(labels), dtype=bool)
    query[:n_queries] = True
    return emb, labels, query


def bare(q: np.ndarray, g: np.ndarray, k: int, chunk: int) -> None:
    """Float32 similarity matmul (numpy) and top-k (torch) per query chunk: the floor under any evaluation."""
    gt = np.ascontiguousarray(g.T)
    for a in range(0, len(q), chunk):
        torch.topk(torch.from_numpy(q[a:a + chunk] @ gt), k, dim=1)


def main() -> None:
    """Time every contender side by side and print (and optionally append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--gallery", type=int, default=10195)
    parser.add_argument("--queries", type=int, default=2877)
    parser.add_argument("--npz", help="real embeddings: arrays emb, labels, query")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="contenders to run (default: all)")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = load()
    if args.npz:
        data = np.load(args.npz)
        emb, labels, query = data["emb"], data["labels"], data["query"].astype(bool)
        source = f"embeddings from {args.npz}"
    else:
        emb, labels, query = synthetic(args.gallery, args.queries, seed=0)
        source = "synthetic clustered embeddings (benchmarks/eval_speed.py::synthetic, seed 0)"
    order = np.concatenate([np.flatnonzero(query), np.flatnonzero(~query)])  # PML wants the queries first
    g, labels = metrics.l2_normalise(emb[order].astype(np.float32)), labels[order]
    idx = np.arange(int(query.sum()))
    q, ql = g[idx], labels[idx]
    width = int(np.bincount(np.unique(labels, return_inverse=True)[1].reshape(-1)).max())

    def ours(knn: object = None) -> dict:
        qm = metrics.rank_queries(q, ql, g, labels, exclude=idx, ks=(1, 5, 10), knn=knn)
        return metrics.summarise(qm) | {"chance R@1": metrics.chance_summary(qm)["R@1"]}

    def pml() -> dict:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
        out = calc.get_accuracy(q, ql, g, labels, ref_includes_query=True)
        return {"R@1": out["precision_at_1"], "mAP@R": out["mean_average_precision_at_r"]}

    contenders = {
        "exact": ("faceforget rank_queries (exact: R@k, mAP, mAP@R, chance)", ours),
        "torch": ("faceforget rank_queries, knn=exact_topk (R@k, mAP@R)", partial(ours, exact_topk)),
        "faiss": ("faceforget rank_queries, knn=faiss_topk (R@k, mAP@R)", partial(ours, faiss_topk)),
        "pml": ("pytorch-metric-learning AccuracyCalculator (P@1, mAP@R)", pml),
        "bare": (f"bare float32 matmul + top-k (k={width})", lambda: bare(q, g, width, 512)),
    }
    chosen = [c for c in contenders if not args.only or c in args.only]
    times: dict[str, float] = {c: float("inf") for c in chosen}
    results: dict[str, dict] = {}
    peak: dict[str, float] = {}
    for _ in range(args.repeats):
        for c in chosen:
            t, out = best_of(contenders[c][1], 1)
            times[c], results[c] = min(times[c], t), out or {}
    for c in chosen:  # a separate traced run: tracemalloc slows allocation-heavy code down
        tracemalloc.start()
        contenders[c][1]()
        peak[c] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    base = times.get("pml", float("nan"))
    lines = [f"{source}: {len(q):,} queries vs {len(g):,} gallery rows, {g.shape[1]}-D, leave-one-out; "
             f"best of {args.repeats} interleaved runs, 1 thread", "",
             "| contender | s | / PML | / bare | R@1 | mAP@R | mAP | peak traced MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in chosen:
        r = results[c]
        cells = [f"{r[m]:.4f}" if m in r else "–" for m in ("R@1", "mAP@R", "mAP")]
        lines.append(f"| {contenders[c][0]} | {times[c]:.3f} | {times[c] / base:.2f} | "
                     f"{times[c] / times.get('bare', float('nan')):.2f} | " + " | ".join(cells) +
                     f" | {peak[c]:.0f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    lines += ["", f"Process peak RSS (inputs included): {rss:.0f} MiB; dense float32 score matrix would be "
              f"{4 * len(q) * len(g) / 2**20:.0f} MiB."]
    table = "\n".join(lines)
    print(table)
    if args.append:
        append_results("Evaluation speed (issue 13)", "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), table,
                       load_before)


if __name__ == "__main__":
    main()
