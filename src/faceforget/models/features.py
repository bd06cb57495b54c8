"""The penultimate features of a FaceModel: the input of its final linear layer (the embedding projection)."""
from __future__ import annotations

import torch
from torch import nn

from faceforget.models.spec import FaceModel


def final_linear(model: FaceModel) -> nn.Linear:
    """The `fc` linear layer of the model's last block (the embedding projection)."""
    fc = getattr(model.blocks[-1], "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"model {model.name!r}: its last block has no `fc` linear layer")
    return fc


def forward_with_features(model: FaceModel, inputs: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the final linear layer, raw output) for activations at block `start`; keeps gradients."""
    seen: list[torch.Tensor] = []
    handle = final_linear(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        out = model.forward_from(inputs, start)
    finally:
        handle.remove()
    return seen[0], out


@torch.no_grad()
def penultimate_features(model: FaceModel, inputs: torch.Tensor, start: int, batch_size: int = 512) -> torch.Tensor:
    """Inputs of the final linear layer for activations at block `start` (or float pixels if start == 0)."""
    if len(inputs) == 0:
        return torch.empty(0, final_linear(model).in_features)
    return torch.cat([forward_with_features(model, inputs[lo:lo + batch_size].float(), start)[0]
                      for lo in range(0, len(inputs), batch_size)])
