"""
Embedding throughput of the dlib ResNet port vs dlib's own C++ (if `import dlib` works), same LFW chips.

Usage: FACEFORGET_DATA=/work/shared/datasets/lfw python benchmarks/embed_throughput.py [--images 320]
Prints a Markdown table (images/s, warm-up excluded) and the max abs difference between the two.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from faceforget.models.dlib_resnet import default_model_path, load_dlib_resnet


def load_chips(root: Path, count: int) -> np.ndarray:
    """Load the first `count` chips of `root/dlib150` (sorted paths) as uint8 RGB (N,150,150,3) via PIL."""
    paths = sorted((root / "dlib150").glob("*/*.jpg"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


Embed = Callable[[np.ndarray], np.ndarray]


def throughput(embed: Embed, chips: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    """Time `embed` over `chips` in batches: images/s and the outputs (a first warm-up batch is not timed)."""
    embed(chips[:batch])
    start = time.perf_counter()
    out = np.concatenate([embed(chips[i : i + batch]) for i in range(0, len(chips), batch)])
    return len(chips) / (time.perf_counter() - start), out


def main() -> None:
    """Time the port (and dlib, if importable) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chips = load_chips(Path(os.environ["FACEFORGET_DATA"]), args.images)
    model = load_dlib_resnet().eval()

    def port(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(model.preprocess.to_tensor(x)).numpy()

    rows = [("faceforget port (PyTorch)", *throughput(port, chips, args.batch))]
    try:
        import dlib
    except ImportError:
        print("dlib is not importable (pip install dlib-bin): only the port was timed")
    else:
        net = dlib.face_recognition_model_v1(str(default_model_path()))

        def native(x: np.ndarray) -> np.ndarray:
            return np.array(net.compute_face_descriptor(list(x)), dtype=np.float32)

        name = f"dlib {dlib.__version__} C++ (BLAS={dlib.DLIB_USE_BLAS})"
        rows.append((name, *throughput(native, chips, args.batch)))
    print(f"{len(chips)} chips, batch {args.batch}, torch {torch.__version__} on {args.threads} threads\n")
    print("| implementation | images/s | relative to dlib |")
    print("|---|---:|---:|")
    base = rows[-1][1] if len(rows) == 2 else float("nan")
    for name, speed, _ in rows:
        print(f"| {name} | {speed:.1f} | {speed / base:.2f}x |")
    if len(rows) == 2:
        print(f"\nmax abs difference port vs dlib: {np.abs(rows[0][2] - rows[1][2]).max():.2e}")


if __name__ == "__main__":
    main()
