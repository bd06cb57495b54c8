"""
Gallery search, side by side: numpy brute force vs FAISS flat / IVF / IVF-PQ / HNSW (faceforget's kinds).

Usage: OMP_NUM_THREADS=1 python benchmarks/gallery_speed.py [--sizes 10000 100000] [--kinds ...]
           [--data isotropic|face_like] [--append]
Vectors: synthetic identity clusters (5 photos per identity, 128-D, unit length); queries are other
photos of gallery identities. `isotropic`: identity centres uniform on the sphere, so all but a query's
own identity are near-orthogonal to it and the rest of its exact top-10 is noise no index can find;
`face_like`: a Gaussian model with the second-order statistics of dlib embeddings of LFW (all faces in one
cone, between- and within-identity spread and effective dimensions as measured, see `face_like`), where
the other neighbours are similar-looking identities. Per (size, kind): build time, batched QPS
(`--queries` at once), the median single-query latency (100 queries one by one), recall@10 against
numpy's exact top-10, identity recall (of the exact top-10's same-identity photos, the share found),
and the index size (FAISS serialised bytes; numpy: the float32 matrix). FAISS runs on 1 thread.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from faceforget.index.faiss_index import make_index, set_nprobe

sys.path.insert(0, str(Path(__file__).parent))
from results_log import append_results, load  # noqa: E402

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # gallery, its identities, queries, theirs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, n_queries: int, d: int, seed: int) -> Data:
    """Unit vectors: identities of 5 photos (noise 0.35 per unit centre), and queries of the same identities."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) // 5
    centres = _unit(rng.standard_normal((ids[-1] + 1, d)).astype(np.float32))

    def photos(who: np.ndarray) -> np.ndarray:
        return _unit(centres[who] + np.float32(0.35 / np.sqrt(d)) * rng.standard_normal((len(who), d)).astype(
            np.float32))

    who = rng.integers(0, ids[-1] + 1, n_queries)
    return photos(ids), ids, photos(who), who


def _exponential_spectrum(d: int, total: float, effective_dim: float) -> np.ndarray:
    """The `d` variances q^i summing to `total`, participation ratio (sum)^2 / sum of squares = effective_dim."""
    q = (effective_dim - 1) / (effective_dim + 1)  # (1 + q) / (1 - q) = effective_dim for a long spectrum
    s = q ** np.arange(d)
    return total * s / s.sum()


def face_like(n: int, n_queries: int, d: int, seed: int) -> Data:
    """
    Identities of 5 photos from a Gaussian with dlib-on-LFW statistics, unit length after sampling.

    Measured on the tuning split's 13,233 dlib150 embeddings (unit length, 5,749 identities): every face
    at cosine ~0.92 to the mean face; identity centroids spread with total variance 0.122 over an effective
    dimension of 23; photos around their centroid 0.045 over 60 (participation ratios of the spectra).
    The spectra are exponential with those totals and ratios, in independent random orientations.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(n) // 5

    def gaussian(count: int, total: float, effective_dim: float) -> np.ndarray:
        basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
        scale = np.sqrt(_exponential_spectrum(d, total, effective_dim))
        return ((rng.standard_normal((count, d)) * scale) @ basis.T).astype(np.float32)

    mean_face = 0.92 * _unit(rng.standard_normal((1, d)))[0].astype(np.float32)
    centres = mean_face + gaussian(ids[-1] + 1, 0.122, 23.0)
    who = rng.integers(0, ids[-1] + 1, n_queries)
    return (_unit(centres[ids] + gaussian(n, 0.045, 60.0)), ids,
            _unit(centres[who] + gaussian(n_queries, 0.045, 60.0)), who)


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
    parser.add_argument("--nprobe", type=int, nargs="+", default=[32],
                        help="search breadths swept on one build (IVF lists probed; HNSW efSearch = 4 x nprobe)")
    parser.add_argument("--data", choices=["isotropic", "face_like"], default="isotropic")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    load_before = load()
    make = {"isotropic": clustered, "face_like": face_like}[args.data]
    lines = [f"{args.data} synthetic data, {args.queries} queries, k = 10, 128-D, HNSW efSearch = 4 x nprobe, "
             "FAISS and numpy on 1 thread", "",
             "| vectors | kind | nprobe | build s | QPS (batched) | single query ms (median) | recall@10 | identity "
             "recall | index MiB |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in args.sizes:
        g, g_ids, q, q_ids = make(n, args.queries, 128, seed=n)
        exact = brute_topk(g, q, 10)
        own = [set(row[g_ids[row] == who]) for row, who in zip(exact, q_ids, strict=True)]
        for kind in args.kinds:
            t0 = time.perf_counter()
            index = None if kind == "numpy" else make_index(g, np.arange(n, dtype=np.int64), kind, args.nprobe[0])
            build = time.perf_counter() - t0
            size = g.nbytes if index is None else len(faiss.serialize_index(index))
            for nprobe in args.nprobe if kind in ("ivf", "ivfpq", "hnsw") else [None]:
                if nprobe is not None:
                    set_nprobe(index, nprobe)

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
                identity = sum(len(o & set(b)) for o, b in zip(own, found, strict=True)) / max(1, sum(map(len, own)))
                lines.append(f"| {n:,} | {kind} | {nprobe or '-'} | {build:.1f} | {qps:.0f} | "
                             f"{1e3 * np.median(single):.2f} | {recall:.3f} | {identity:.3f} | {size / 2**20:.0f} |")
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.append:
        append_results("Gallery search (issue 13)", "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), table,
                       load_before)


if __name__ == "__main__":
    main()
