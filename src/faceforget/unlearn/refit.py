"""
Closed-form refit of a model's final linear layer: retain outputs back to the original's, forget kept.

Training moves the shared weights, and part of the retain embeddings' drift is linear in the last
layer's input; a ridge regression onto the original model's outputs on every cached retain view
removes that part in one solve, while the forget views are held at their unlearned outputs.
"""
from __future__ import annotations

import torch

from faceforget.models.features import final_linear, penultimate_features
from faceforget.models.spec import FaceModel

MAX_REFIT_INPUTS = 16384  # the float64 Gram matrix of a wider layer (e.g. SFace's 50,176 inputs: 20 GB) does not fit


def check_refit_width(model: FaceModel) -> None:
    """Refuse, before any training, a final linear layer too wide for the refit's (in x in) Gram matrix."""
    width = final_linear(model).in_features
    if width > MAX_REFIT_INPUTS:
        raise ValueError(f"model {model.name!r}: its final linear layer has {width} inputs; the closed-form refit "
                         f"supports at most {MAX_REFIT_INPUTS} (its Gram matrix would need {8 * width**2 / 2**30:.0f} "
                         "GiB): set the method param `refit: false`")


def ridge_solve(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float,
                null: torch.Tensor | None = None) -> torch.Tensor:
    """
    argmin_W sum_i w_i ||W x_i - y_i||^2 + ridge * tr(x^T x)/d ||W||^2, as an (out, in) matrix (float64).

    With `null` (in, r), subject to W null = 0: the directions in its columns are erased from the output.
    """
    x, y, w = x.double(), y.double(), weights.double().view(-1, 1)
    gram = x.T @ (w * x)
    gram = gram + ridge * gram.trace() / gram.shape[0] * torch.eye(gram.shape[0], dtype=gram.dtype)
    solved = torch.linalg.solve(gram, x.T @ (w * y)).T
    if null is None or null.shape[1] == 0:
        return solved
    d = null.double()
    g_inv_d = torch.linalg.solve(gram, d)
    return solved - solved @ d @ torch.linalg.solve(d.T @ g_inv_d, g_inv_d.T)


@torch.no_grad()
def refit_final_linear(model: FaceModel, original: FaceModel, retain_inputs: torch.Tensor,
                       forget_inputs: torch.Tensor, start: int, forget_weight: float, ridge: float = 1e-3,
                       forget_labels: torch.Tensor | None = None) -> None:
    """
    Refit `model`'s final linear layer in place (bias-free layers only).

    Retain views weigh 1 in total and forget views `forget_weight` in total; `ridge` is relative to the
    mean diagonal of the weighted Gram matrix. With `forget_labels`, the refit also erases the forget
    identities linearly (LEACE-style, arXiv 2306.03819): each forget identity's mean input minus the retain
    mean input maps to zero, so every forget identity's mean output equals the population's.
    """
    fc = final_linear(model)
    if fc.bias is not None:
        raise ValueError("refit supports a bias-free final linear layer")
    x_r, x_f = penultimate_features(model, retain_inputs, start), penultimate_features(model, forget_inputs, start)
    y_r = torch.cat([original.forward_from(retain_inputs[lo:lo + 512].float(), start)
                     for lo in range(0, len(retain_inputs), 512)])
    y_f = fc(x_f)
    weights = torch.cat([torch.full((len(x_r),), 1.0 / len(x_r)), torch.full((len(x_f),), forget_weight / len(x_f))])
    null = None
    if forget_labels is not None:
        ids = torch.unique(forget_labels)
        null = torch.stack([x_f[forget_labels == k].mean(0) for k in ids], 1) - x_r.mean(0, keepdim=True).T
    solved = ridge_solve(torch.cat([x_r, x_f]), torch.cat([y_r, y_f]), weights, ridge, null)
    fc.weight.copy_(solved.to(fc.weight.dtype))
