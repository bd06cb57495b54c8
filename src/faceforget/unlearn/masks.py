"""Weight masks: which trainable weights an update may change (SalUn's saliency, dispersion's selectivity)."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def top_fraction_mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """1 for the floor(ratio * P) largest scores ranked over all tensors together, else 0 (same shapes)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = torch.zeros_like(flat)
    keep[torch.argsort(flat, descending=True, stable=True)[: int(ratio * flat.numel())]] = 1
    parts = keep.split([s.numel() for s in scores.values()])
    return {name: part.view_as(s) for (name, s), part in zip(scores.items(), parts, strict=True)}


def mask_density(mask: dict[str, torch.Tensor]) -> float:
    """Fraction of weights the mask lets change."""
    return sum(float(m.sum()) for m in mask.values()) / max(1, sum(m.numel() for m in mask.values()))


def summed_gradients(params: dict[str, torch.nn.Parameter], losses: Iterable[torch.Tensor],
                     square: bool = False) -> dict[str, torch.Tensor]:
    """Sum over `losses` of each loss's gradient w.r.t. `params` (or of its element-wise square)."""
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for loss in losses:
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, g in zip(params, grads, strict=True):
            if g is not None:
                total[name] += g * g if square else g
    return total
