"""FaceModel and its declared Preprocess: what a backbone expects, so nothing downstream guesses."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class Preprocess:
    """
    Input contract of a face model.

    Images enter the model as float RGB in [0, 255], NCHW, `input_size` (h, w); the model itself
    applies `(x[:, order] - mean) * scale`, so attacks and augmentations work in pixel space.
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    scale: float
    channel_order: str  # "RGB" or "BGR": the order the backbone's first layer expects
    embedding_dim: int

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"input_size must be (h, w) > 0, got {self.input_size}")

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return asdict(self)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map float RGB [0,255] NCHW to the backbone's input scale and channel order."""
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) * self.scale

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """uint8/float HWC RGB images (N,H,W,3) of `input_size` -> float32 NCHW in [0,255]."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N,H,W,3) RGB images, got shape {images.shape}")
        if tuple(images.shape[1:3]) != tuple(self.input_size):
            raise ValueError(f"expected images of size {self.input_size}, got {images.shape[1:3]}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


class FaceModel(nn.Module):
    """
    A backbone made of an ordered sequence of blocks, with its preprocessing.

    `blocks` is the unit of trainable-layer selection and prefix caching: block i's output feeds
    block i+1 and the last block returns the raw (unnormalised) embedding.
    """

    train_batchnorm: bool = False  # BatchNorm layers stay in eval mode in `train()` unless set

    def __init__(self, blocks: nn.Sequential, preprocess: Preprocess, name: str) -> None:
        super().__init__()
        self.blocks = blocks
        self.preprocess = preprocess
        self.name = name

    def train(self, mode: bool = True) -> FaceModel:
        """Train/eval mode; BatchNorm keeps its running statistics (eval mode) unless `train_batchnorm`."""
        super().train(mode)
        if mode and not self.train_batchnorm:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float RGB [0,255] NCHW -> raw embedding (N, embedding_dim)."""
        return self.blocks(self.preprocess.normalise(x))

    def forward_from(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """Run blocks[start:] on an activation produced by blocks[:start] (or pixels if start == 0)."""
        if start == 0:
            return self(h)
        for block in list(self.blocks)[start:]:
            h = block(h)
        return h

    def forward_prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """Run blocks[:stop] on float RGB pixels (stop == 0 returns the pixels unchanged)."""
        if stop == 0:
            return x
        h = self.preprocess.normalise(x)
        for block in list(self.blocks)[:stop]:
            h = block(h)
        return h
