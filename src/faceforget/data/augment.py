"""
Seeded photometric + geometric augmentation of aligned face chips (pixel space, float RGB [0,255]).

Held-out photos of a person differ from the unlearning's photos in pose, framing and light; small
random similarity warps, flips and brightness/contrast changes stand in for that variation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    """Augmentation strengths; the zero values disable each part."""

    model_config = ConfigDict(extra="forbid")
    hflip: bool = Field(True, description="random horizontal flip (p = 0.5)")
    max_shift: float = Field(0.06, ge=0, le=0.3, description="max translation, fraction of the chip size")
    max_rotate_deg: float = Field(8.0, ge=0, le=45)
    scale_range: float = Field(0.08, ge=0, le=0.5, description="zoom in [1 - r, 1 + r]")
    brightness: float = Field(0.25, ge=0, le=1, description="multiplicative, in [1 - b, 1 + b]")
    contrast: float = Field(0.25, ge=0, le=1, description="around the image mean, in [1 - c, 1 + c]")

    @property
    def is_identity(self) -> bool:
        """True when no augmentation is configured."""
        return not self.hflip and not any(
            (self.max_shift, self.max_rotate_deg, self.scale_range, self.brightness, self.contrast)
        )


def _uniform(n: int, half_width: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * half_width


def augment(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply one random augmentation per image to float RGB [0,255] NCHW images; same gen state -> same output."""
    n = images.shape[0]
    if n == 0 or cfg.is_identity:
        return images.clone()
    angle = _uniform(n, math.radians(cfg.max_rotate_deg), gen)
    scale = 1 + _uniform(n, cfg.scale_range, gen)
    shift = _uniform(2 * n, 2 * cfg.max_shift, gen).view(n, 2)
    flip = (torch.rand(n, generator=gen) < 0.5) if cfg.hflip else torch.zeros(n, dtype=torch.bool)
    gain = 1 + _uniform(n, cfg.brightness, gen)
    contrast = 1 + _uniform(n, cfg.contrast, gen)

    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * sx, -sin, shift[:, 0]], 1), torch.stack([sin * sx, cos, shift[:, 1]], 1)], 1
    ).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast.view(n, 1, 1, 1).to(out.dtype) + mean
    out = out * gain.view(n, 1, 1, 1).to(out.dtype)
    return out.clamp(0, 255)
