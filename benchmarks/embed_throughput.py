"""
Embedding throughput, side by side: dlib ResNet port (PyTorch) vs onnxruntime vs dlib's C++.

Same exported graph for onnxruntime, same chips and thread count, a batch-size sweep; dlib only if
`import dlib` works.

Usage: FACEFORGET_DATA=/work/shared/datasets/lfw python benchmarks/embed_throughput.py \
           [--images 320] [--batches 1 8 32] [--threads 1] [--pipeline 640] [--append]
Without FACEFORGET_DATA the chips are seeded random pixels (throughput does not depend on content).
Port variants: eager NCHW under `torch.inference_mode`, and the same with channels-last memory format.
The ONNX graph is faceforget's own export (`models/onnx_export.py::to_onnx_bytes`: TorchScript exporter,
opset 17, dynamic batch); its outputs are checked against the port. Each (implementation, batch) cell takes the best of
`--repeats` passes over the chips (a first warm-up batch is not timed); the passes are interleaved.
`--pipeline N` (needs FACEFORGET_DATA) adds the product's own stage: `eval/embed.py::embed_paths` over N
image files (JPEG decode included, batch 64) with the torch and the onnxruntime backend, the latter's
export to ONNX included in its time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceforget.eval.embed import embed_paths
from faceforget.models.dlib_resnet import default_model_path, load_dlib_resnet
from faceforget.models.onnx_export import RuntimeEmbedder

sys.path.insert(0, str(Path(__file__).parent))
from results_log import append_results, load  # noqa: E402

Embed = Callable[[np.ndarray], np.ndarray]


def load_chips(count: int) -> tuple[np.ndarray, str]:
    """`count` uint8 RGB (N,150,150,3) chips: LFW `dlib150` (first sorted paths) or seeded noise."""
    root = os.environ.get("FACEFORGET_DATA")
    if root:
        paths = sorted((Path(root) / "dlib150").glob("*/*.jpg"))[:count]
        chips = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        return chips, f"{len(paths)} LFW dlib150 chips"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 150, 150, 3), dtype=np.uint8), f"{count} random 150x150 chips"


def throughput(embed: Embed, chips: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    """Images/s of `embed` over `chips` in batches (a first warm-up batch is not timed), and the outputs."""
    embed(chips[:batch])
    start = time.perf_counter()
    out = np.concatenate([embed(chips[i:i + batch]) for i in range(0, len(chips), batch)])
    return len(chips) / (time.perf_counter() - start), out


def contenders(threads: int) -> dict[str, Embed]:
    """Every implementation as chips -> embeddings, all on `threads` threads."""
    torch.set_num_threads(threads)
    model = load_dlib_resnet().eval()
    pre = model.preprocess

    def port(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(pre.to_tensor(x)).numpy()

    last = load_dlib_resnet().eval().to(memory_format=torch.channels_last)

    def port_cl(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return last(pre.to_tensor(x).contiguous(memory_format=torch.channels_last)).numpy()

    import onnxruntime as ort

    runtime = RuntimeEmbedder(model, threads=threads)

    def onnx(x: np.ndarray) -> np.ndarray:
        return runtime(pre.to_tensor(x).numpy())[1]

    out = {"port (PyTorch, inference_mode)": port, "port, channels-last": port_cl,
           f"onnxruntime {ort.__version__} (exported port)": onnx}
    try:
        import dlib
    except ImportError:
        return out
    net = dlib.face_recognition_model_v1(str(default_model_path()))

    def native(x: np.ndarray) -> np.ndarray:
        return np.array(net.compute_face_descriptor(list(x)), dtype=np.float32)

    return out | {f"dlib {dlib.__version__} C++ (BLAS={dlib.DLIB_USE_BLAS})": native}


def pipeline(count: int, repeats: int) -> list[str]:
    """Table rows: embed_paths over `count` LFW files with each backend (best of `repeats`, interleaved)."""
    root = os.environ.get("FACEFORGET_DATA")
    if not root or not count:
        return []
    paths = sorted((Path(root) / "dlib150").glob("*/*.jpg"))[:count]
    model, best, outs = load_dlib_resnet(), {}, {}
    for _ in range(repeats):
        for backend in ("torch", "onnxruntime"):
            start = time.perf_counter()
            outs[backend] = embed_paths(model, paths, batch_size=64, progress=False, backend=backend).embeddings
            best[backend] = min(best.get(backend, float("inf")), time.perf_counter() - start)
    rows = [f"| embed_paths, backend {b} | 64 | {len(paths) / t:.1f} | {best['torch'] / t:.2f} |"
            for b, t in best.items()]
    return ["", f"The embedding stage itself: `embed_paths` over {len(paths)} LFW files (decode included; "
            f"onnxruntime: export included), best of {repeats}", "",
            "| stage | batch | images/s | / torch backend |", "|---|---:|---:|---:|", *rows, "",
            f"max abs difference onnxruntime vs torch backend: {np.abs(outs['onnxruntime'] - outs['torch']).max():.2e}"]


def main() -> None:
    """Time every implementation at every batch size, interleaved, and print (optionally append) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pipeline", type=int, default=0, help="also time embed_paths over this many files")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    load_before = load()
    chips, source = load_chips(args.images)
    impls = contenders(args.threads)
    speed: dict[tuple[str, int], float] = {}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for batch in args.batches:
            for name, embed in impls.items():
                if name.startswith("dlib") and batch != args.batches[-1]:
                    continue  # dlib batches internally: one size is enough
                s, out = throughput(embed, chips, batch)
                speed[name, batch] = max(speed.get((name, batch), 0.0), s)
                outputs[name] = out
    onnx = next(n for n in impls if n.startswith("onnxruntime"))
    lines = [f"{source}, torch {torch.__version__} and onnxruntime on {args.threads} thread(s), "
             f"best of {args.repeats} interleaved passes", "",
             "| implementation | batch | images/s | / onnxruntime same batch |", "|---|---:|---:|---:|"]
    for (name, batch), s in speed.items():
        ratio = s / speed[onnx, batch] if (onnx, batch) in speed else float("nan")
        lines.append(f"| {name} | {batch} | {s:.1f} | {ratio:.2f} |")
    ref = outputs["port (PyTorch, inference_mode)"]
    lines += [""] + [f"max abs difference {name} vs the port: {np.abs(out - ref).max():.2e}"
                     for name, out in outputs.items() if out is not ref]
    lines += pipeline(args.pipeline, args.repeats)
    table = "\n".join(lines)
    print(table)
    if args.append:
        append_results("Embedding throughput (issue 13)", "python " + " ".join(sys.argv), table, load_before)


if __name__ == "__main__":
    main()
