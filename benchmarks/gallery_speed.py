"""
Gallery search, side by side: numpy brute force vs FAISS flat / IVF / IVF-PQ / HNSW (faceforget's kinds).

Usage: OMP_NUM_THREADS=1 python benchmarks/gallery_speed.py [--sizes 10000 100000] [--kinds ...] [--append]
Vectors: synthetic identity clusters (5 photos per identity, 128-D, unit length); queries are other
photos of gallery identities. Per (size, kind): build time, batched QPS (`--queries` at once), the
median single-query latency (100 queries one by one), recall@10 against numpy's exact top-10, and
the index size (FAISS serialised bytes; numpy: the float32 matrix). FAISS runs on 1 thread.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from faceforget.index.faiss_index import make_index

sys.path.insert(0, str(Path(__file__).parent))
from results_log import append_results, load  # noqa: E402


def clustered(n: int, n_queries: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: identities of 5 photos (noise 0.35 per unit centre), and queries of the same identities."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) // 5
    centres = rng.standard_normal((ids[-1] + 1, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def photos(who: np.ndarray) -> np.ndarray:
        x = centres[who] + np.float32(0.35 / np.sqrt(d)) * rng.standard_normal((len(who), d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return photos(ids), photos(rng.integers(0, ids[-1] + 1, n_queries))


def brute_topk(g: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by inner product with numpy (float32 matmul + argpartition), 256 queries at a time."""
    out = []
    for a in range(0, len(q), 256):
        s = q[a:a + 256] @ g.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)


def main() -> None:
    """Build and query every kind at every size; print (optionally append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kinds", nargs="+", default=["numpy", "flat", "ivf", "ivfpq", "hnsw"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    load_before = load()
    lines = [f"{args.queries} queries, k = 10, 128-D, nprobe {args.nprobe} (HNSW efSearch {4 * args.nprobe}), "
             "FAISS and numpy on 1 thread", "",
             "| vectors | kind | build s | QPS (batched) | single query ms (median) | recall@10 | index MiB |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n in args.sizes:
        g, q = clustered(n, args.queries, 128, seed=n)
        exact = brute_topk(g, q, 10)
        for kind in args.kinds:
            t0 = time.perf_counter()
            index = None if kind == "numpy" else make_index(g, np.arange(n, dtype=np.int64), kind, args.nprobe)
            build = time.perf_counter() - t0

            def search(x: np.ndarray, index: faiss.Index | None = index, g: np.ndarray = g) -> np.ndarray:
                return brute_topk(g, x, 10) if index is None else index.search(x, 10)[1]

            t0 = time.perf_counter()
            found = search(q)
            qps = len(q) / (time.perf_counter() - t0)
            single = []
            for row in q[:100]:
                t0 = time.perf_counter()
                search(row[None, :])
                single.append(time.perf_counter() - t0)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found, strict=True)])
            size = g.nbytes if index is None else len(faiss.serialize_index(index))
            lines.append(f"| {n:,} | {kind} | {build:.1f} | {qps:.0f} | {1e3 * np.median(single):.2f} | "
                         f"{recall:.3f} | {size / 2**20:.0f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.append:
        append_results("Gallery search (issue 13)", "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), table,
                       load_before)


if __name__ == "__main__":
    main()
