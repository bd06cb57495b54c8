"""
Batched, no-grad embedding of image records, optionally keeping the frozen prefix's activations.

Keeping the activations at block `capture_at` lets a fine-tuned model whose earlier blocks are
unchanged be re-evaluated by running only its suffix (`embed_from_prefix`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from faceforget.data.images import load_image
from faceforget.data.records import FaceRecord
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar


@dataclass
class Embedded:
    """Raw embeddings (float32, unnormalised) and, if asked for, the prefix activations."""

    embeddings: np.ndarray
    prefix: torch.Tensor | None = None
    capture_at: int = 0


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


@torch.no_grad()
def embed_paths(
    model: FaceModel, paths: Sequence[str | Path], *, batch_size: int = 64, capture_at: int = 0,
    progress: bool = True, description: str = "embedding", device: str = "cpu",
) -> Embedded:
    """Embed every image with `model` in eval mode, streaming images batch by batch (on `device`, CPU out)."""
    model = _on(model, device).eval()
    size = model.preprocess.input_size
    outs, prefixes = [], []
    with progress_bar(description, len(paths), progress) as bar:
        for lo in range(0, len(paths), batch_size):
            chunk = paths[lo:lo + batch_size]
            x = load_pixels(chunk, size).permute(0, 3, 1, 2).float().to(device)
            if capture_at:
                h = model.forward_prefix(x, capture_at)
                prefixes.append(h.cpu())
                outs.append(model.forward_from(h, capture_at).cpu())
            else:
                outs.append(model(x).cpu())
            bar.advance(len(chunk))
    dim = model.preprocess.embedding_dim
    emb = torch.cat(outs).numpy().astype(np.float32) if outs else np.zeros((0, dim), np.float32)
    prefix = torch.cat(prefixes) if prefixes else None
    return Embedded(emb, prefix, capture_at)


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
def embed_from_prefix(model: FaceModel, prefix: torch.Tensor, start: int, batch_size: int = 256,
                      device: str = "cpu") -> np.ndarray:
    """Run blocks[start:] of `model` over stored prefix activations (its blocks[:start] must be unchanged)."""
    model = _on(model, device).eval()
    outs = [model.forward_from(prefix[lo:lo + batch_size].to(device), start).cpu()
            for lo in range(0, prefix.shape[0], batch_size)]
    return torch.cat(outs).numpy().astype(np.float32)
