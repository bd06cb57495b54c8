"""
Closed-form refit of a model's final linear layer: retain outputs back to the original's, forget kept.

Training moves the shared weights, and part of the retain embeddings' drift is linear in the last
layer's input; a ridge regression onto the original model's outputs on every cached retain view
removes that part in one solve, while the forget views are held at their unlearned outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from faceforget.models.spec import FaceModel


def final_linear(model: FaceModel) -> nn.Linear:
    """The `fc` linear layer of the model's last block (the embedding projection)."""
    fc = getattr(model.blocks[-1], "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"model {model.name!r}: its last block has no `fc` linear layer to refit")
    return fc


@torch.no_grad()
def linear_inputs(model: FaceModel, inputs: torch.Tensor, start_block: int, batch_size: int = 512) -> torch.Tensor:
    """Inputs of the final linear layer for inputs of block `start_block` (pixels if start_block == 0)."""
    fc, seen = final_linear(model), []
    handle = fc.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        for lo in range(0, len(inputs), batch_size):
            model.forward_from(inputs[lo:lo + batch_size].float(), start_block)
    finally:
        handle.remove()
    return torch.cat(seen)


def ridge_solve(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float) -> torch.Tensor:
    """argmin_W sum_i w_i ||W x_i - y_i||^2 + ridge * tr(x^T x)/d ||W||^2, as an (out, in) matrix (float64)."""
    x, y, w = x.double(), y.double(), weights.double().view(-1, 1)
    gram = x.T @ (w * x)
    reg = ridge * gram.trace() / gram.shape[0]
    return torch.linalg.solve(gram + reg * torch.eye(gram.shape[0], dtype=gram.dtype), x.T @ (w * y)).T


@torch.no_grad()
def refit_final_linear(model: FaceModel, original_model: FaceModel, retain_inputs: torch.Tensor,
                       forget_inputs: torch.Tensor, start_block: int, forget_weight: float,
                       ridge: float = 1e-3) -> None:
    """
    Refit `model`'s final linear layer in place (bias-free layers only).

    Retain views weigh 1 in total and forget views `forget_weight` in total; `ridge` is relative to the
    mean diagonal of the weighted Gram matrix.
    """
    fc = final_linear(model)
    if fc.bias is not None:
        raise ValueError("refit supports a bias-free final linear layer")
    x_r, x_f = linear_inputs(model, retain_inputs, start_block), linear_inputs(model, forget_inputs, start_block)
    y_r = torch.cat([original_model.forward_from(retain_inputs[lo:lo + 512].float(), start_block)
                     for lo in range(0, len(retain_inputs), 512)])
    y_f = fc(x_f)
    weights = torch.cat([torch.full((len(x_r),), 1.0 / len(x_r)), torch.full((len(x_f),), forget_weight / len(x_f))])
    solved = ridge_solve(torch.cat([x_r, x_f]), torch.cat([y_r, y_f]), weights, ridge)
    fc.weight.copy_(solved.to(fc.weight.dtype))
