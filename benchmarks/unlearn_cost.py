"""
Unlearning wall time per method, and how it grows with K (forget identities) and retain images.

Usage: FACEFORGET_DATA=/work/shared/datasets/lfw OMP_NUM_THREADS=1 python benchmarks/unlearn_cost.py \
           [--methods dispersion finetune scrub] [--ks 1 5 10] [--retain 500 1000 2000] [--steps 200] [--append]
Each cell runs `run_engine` with the default engine config (the dlib model, last 5 blocks, 16 / 2
cached views) on LFW `dlib150` images: the forget identities are the first K (sorted) with >= 10
images, the retain images are taken from the other identities in sorted order. Stage times come from
the engine's stopwatch: cache_views (the frozen prefix over every view), method_setup, train,
finalize. Growth in K or retain images is the ratio of total time between the largest and smallest
setting next to the ratio of the settings themselves. LFW is for research use only.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from faceforget.config import EngineConfig
from faceforget.data.folders import scan_folder
from faceforget.eval.embed import load_pixels
from faceforget.models.registry import load_model
from faceforget.unlearn.engine import UnlearnData, run_engine
from faceforget.unlearn.registry import get_method

sys.path.insert(0, str(Path(__file__).parent))
from results_log import append_results, load  # noqa: E402


def lfw_data(root: Path, k: int, n_retain: int, size: tuple[int, int]) -> UnlearnData:
    """K forget identities (>= 10 images, sorted) and `n_retain` images of the others, as engine input."""
    records = scan_folder(root / "dlib150")
    by_id: dict[str, list] = {}
    for r in records:
        by_id.setdefault(r.identity, []).append(r)
    forget_ids = [i for i in sorted(by_id) if len(by_id[i]) >= 10][:k]
    forget = [r for i in forget_ids for r in by_id[i]]
    retain = [r for i in sorted(by_id) if i not in forget_ids for r in by_id[i]][:n_retain]
    names = sorted({r.identity for r in forget + retain})
    index = {n: i for i, n in enumerate(names)}

    def pixels(recs: list) -> torch.Tensor:
        return load_pixels([root / "dlib150" / r.path for r in recs], size)

    def labels(recs: list) -> torch.Tensor:
        return torch.tensor([index[r.identity] for r in recs])

    return UnlearnData(pixels(forget), labels(forget), pixels(retain), labels(retain), names,
                       sorted(index[i] for i in forget_ids))


def main() -> None:
    """Run every (method, K, retain) cell and print (optionally append) the stage times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--methods", nargs="+", default=["dispersion", "finetune", "scrub"])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--retain", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--forget-views", type=int, default=16)
    parser.add_argument("--retain-views", type=int, default=2)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = load()
    root = Path(os.environ["FACEFORGET_DATA"])
    model = load_model("dlib")
    cfg = EngineConfig(steps=args.steps, forget_views=args.forget_views, retain_views=args.retain_views)
    cells = [(k, args.retain[0]) for k in args.ks] + [(args.ks[0], n) for n in args.retain[1:]]
    lines = [f"engine: steps {args.steps}, views {args.forget_views}/{args.retain_views}, trainable "
             f"{cfg.trainable}, 1 torch thread", "",
             "| method | K | forget images | retain images | cache s | setup s | train s | finalize s | total s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals: dict[tuple[str, int, int], float] = {}
    for k, n in cells:
        data = lfw_data(root, k, n, model.preprocess.input_size)
        for name in args.methods:
            t = run_engine(get_method(name), model, data, cfg, progress=False).timings
            stages = [t.get(f"{s}_s", 0.0) for s in ("cache_views", "method_setup", "train", "finalize")]
            totals[name, k, n] = sum(stages)
            lines.append(f"| {name} | {k} | {len(data.forget_pixels)} | {len(data.retain_pixels)} | "
                         + " | ".join(f"{v:.1f}" for v in stages) + f" | {sum(stages):.1f} |")
            print(lines[-1], flush=True)
    lines.append("")
    for name in args.methods:
        k0, k1, n0 = args.ks[0], args.ks[-1], args.retain[0]
        lines.append(f"- {name}: total x{totals[name, k1, n0] / totals[name, k0, n0]:.2f} for K x{k1 / k0:g}"
                     + (f"; x{totals[name, k0, args.retain[-1]] / totals[name, k0, n0]:.2f} for retain images "
                        f"x{args.retain[-1] / n0:g}" if len(args.retain) > 1 else ""))
    table = "\n".join(lines)
    print("\n" + table)
    if args.append:
        append_results("Unlearning cost vs K and retain images (issue 13)",
                       "FACEFORGET_DATA=... OMP_NUM_THREADS=1 python " + " ".join(sys.argv), table, load_before)


if __name__ == "__main__":
    main()
