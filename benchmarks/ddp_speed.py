"""
Data-parallel unlearning vs one process on the same work: 2 CPU processes (gloo) against 1.

Usage: OMP_NUM_THREADS=1 python benchmarks/ddp_speed.py [--steps 4] [--images 40] [--append]
The dlib model (last 5 blocks) on seeded random 150x150 chips of 8 identities (throughput does not depend
on content), dispersion with the default engine except `--steps` and 4 / 1 cached views; each process
uses 1 torch thread. Wall time of `run_engine` (view cache + training), the 2-process figure being the
slower rank; and the largest weight difference between the two results (the same global batches).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faceforget.config import EngineConfig
from faceforget.models.registry import load_model
from faceforget.unlearn.engine import UnlearnData, run_engine
from faceforget.unlearn.registry import get_method

sys.path.insert(0, str(Path(__file__).parent))
from results_log import append_results, load  # noqa: E402


def toy_data(images: int) -> UnlearnData:
    """`images` random chips over 8 identities; identities 0 and 1 are forgotten."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 150, 150, 3), dtype=torch.uint8, generator=g)
    labels = torch.arange(images) % 8
    forget = labels < 2
    return UnlearnData(pixels[forget], labels[forget], pixels[~forget], labels[~forget],
                       [f"id{i}" for i in range(8)], [0, 1])


def _rank(rank: int, world: int, cfg: EngineConfig, data: UnlearnData, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/pg", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        model = run_engine(get_method("dispersion"), load_model("dlib"), data, cfg, progress=False).model
        torch.save({"seconds": time.perf_counter() - t0, "state": model.state_dict() if rank == 0 else None},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def main() -> None:
    """Time one process, then two, on the same config; print (optionally append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = load()
    cfg = EngineConfig(steps=args.steps, forget_views=4, retain_views=1, retain_batch=32)
    data = toy_data(args.images)
    t0 = time.perf_counter()
    single = run_engine(get_method("dispersion"), load_model("dlib"), data, cfg, progress=False).model
    one = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_rank, args=(2, cfg, data, out), nprocs=2, join=True)
        ranks = [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    two = max(r["seconds"] for r in ranks)
    diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    table = "\n".join([
        f"dispersion, dlib last 5 blocks, {args.images} chips, {args.steps} steps, views 4/1, retain batch 32, "
        "1 torch thread per process", "",
        "| processes | run_engine wall s | speed-up |", "|---:|---:|---:|",
        f"| 1 | {one:.1f} | 1.00 |", f"| 2 (gloo) | {two:.1f} | {one / two:.2f} |", "",
        f"max |weight difference| 2 processes vs 1: {diff:.2e}"])
    print(table)
    if args.append:
        append_results("DDP: 2 processes vs 1 (issue 13)", "OMP_NUM_THREADS=1 python " + " ".join(sys.argv), table,
                       load_before)


if __name__ == "__main__":
    main()
