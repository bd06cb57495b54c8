"""
Batched, no-grad embedding of image records, optionally keeping the frozen prefix's activations.

Keeping the activations entering block `start_block` (the first block that trains) lets a fine-tuned
model whose earlier blocks are unchanged be re-evaluated by running only its suffix (`embed_from_prefix`).
`backend` "onnxruntime" runs the model's exported graph instead of torch for whole images (CPU only;
docs/scale.md#embedding-backend); the outputs agree to ~1e-6.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from faceforget.data.images import load_image
from faceforget.data.records import FaceRecord
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar

EmbedBackend = Literal["torch", "onnxruntime"]


@dataclass
class Embedded:
    """Raw embeddings (float32, unnormalised) and, if asked for, the input of block `start_block` (prefix)."""

    embeddings: np.ndarray
    prefix: torch.Tensor | None = None


def load_pixels(paths: Sequence[str | Path], size: tuple[int, int]) -> torch.Tensor:
    """uint8 NHWC tensor of the images at `size` (errors name the bad file)."""
    arrays = [load_image(p, size) for p in paths]
    if not arrays:
        return torch.empty((0, *size, 3), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays))


def record_paths(records: Sequence[FaceRecord], data_root: str | Path,
                 distractor_root: str | Path | None = None) -> list[Path]:
    """Absolute image paths of records under their roots."""
    return [r.resolve(data_root, distractor_root) for r in records]


def _batch_runner(model: FaceModel, start_block: int, device: str, backend: EmbedBackend
                  ) -> Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]:
    """Pixels (float NCHW, CPU) -> (prefix or None, raw embeddings), both on the CPU, for the chosen backend."""
    if backend == "onnxruntime":
        if torch.device(device).type != "cpu":
            raise ValueError(f"the onnxruntime embedding backend runs on the CPU; got device {device!r}")
        from faceforget.models.onnx_export import RuntimeEmbedder

        runtime = RuntimeEmbedder(model, start_block)

        def run_onnx(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
            h, out = runtime(x.numpy())
            return (None if h is None else torch.from_numpy(h)), torch.from_numpy(out)
        return run_onnx
    if backend != "torch":
        raise ValueError(f"unknown embedding backend {backend!r}; valid: torch, onnxruntime")
    model = _on(model, device)

    def run_torch(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = x.to(device)
        if not start_block:
            return None, model(x).cpu()
        h = model.forward_prefix(x, start_block)
        return h.cpu(), model.forward_from(h, start_block).cpu()
    return run_torch


@torch.no_grad()
def embed_paths(
    model: FaceModel, paths: Sequence[str | Path], *, batch_size: int = 64, start_block: int = 0,
    progress: bool = True, description: str = "embedding", device: str = "cpu", backend: EmbedBackend = "torch",
) -> Embedded:
    """Embed every image with `model` in eval mode, batch by batch (on `device`, CPU out); prefix if start_block."""
    run = _batch_runner(model.eval(), start_block, device, backend)
    size = model.preprocess.input_size
    outs, prefixes = [], []
    with progress_bar(description, len(paths), progress) as bar:
        for lo in range(0, len(paths), batch_size):
            chunk = paths[lo:lo + batch_size]
            h, out = run(load_pixels(chunk, size).permute(0, 3, 1, 2).float())
            outs.append(out)
            if h is not None:
                prefixes.append(h)
            bar.advance(len(chunk))
    dim = model.preprocess.embedding_dim
    emb = torch.cat(outs).numpy().astype(np.float32) if outs else np.zeros((0, dim), np.float32)
    prefix = torch.cat(prefixes) if prefixes else None
    return Embedded(emb, prefix)


@torch.no_grad()
def embed_pixels(model: FaceModel, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings (n, dim) of uint8 NHWC images already at the model's input size."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    return torch.cat([model(x[lo:lo + batch_size]) for lo in range(0, len(x), batch_size)]).numpy().astype(np.float32)


def embed_records(
    model: FaceModel, records: Sequence[FaceRecord], data_root: str | Path,
    distractor_root: str | Path | None = None, **kwargs: object,
) -> Embedded:
    """`embed_paths` over records resolved under their roots."""
    return embed_paths(model, record_paths(records, data_root, distractor_root), **kwargs)


def _on(model: FaceModel, device: str) -> FaceModel:
    """`model` itself for the CPU, else a copy on `device` (the caller's model is not moved)."""
    return model if torch.device(device).type == "cpu" else copy.deepcopy(model).to(device)


@torch.no_grad()
def embed_from_prefix(model: FaceModel, prefix: torch.Tensor, start_block: int, batch_size: int = 256,
                      device: str = "cpu") -> np.ndarray:
    """Run blocks[start_block:] of `model` over stored prefix activations (blocks before must be unchanged)."""
    model = _on(model, device).eval()
    outs = [model.forward_from(prefix[lo:lo + batch_size].to(device), start_block).cpu()
            for lo in range(0, prefix.shape[0], batch_size)]
    return torch.cat(outs).numpy().astype(np.float32)
