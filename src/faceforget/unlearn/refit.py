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

MAX_REFIT_SIZE = 16384  # the float64 (in x in) or (n x n) system beyond this does not fit (16384^2 x 8 B = 2 GiB)
_COLUMNS = 4096  # feature columns per chunk of the sample-space solve


def check_refit_size(model: FaceModel, n_views: int) -> None:
    """
    Refuse, before any training, a refit whose smaller side is too large to solve.

    The refit solves in feature space (in x in) or, for a layer wider than the number of cached views
    (SFace: 50,176 inputs), in sample space (n x n): it needs min(in, n) <= MAX_REFIT_SIZE.
    """
    width = final_linear(model).in_features
    if min(width, n_views) > MAX_REFIT_SIZE:
        raise ValueError(f"model {model.name!r}: the closed-form refit of its final linear layer ({width} inputs) "
                         f"over {n_views} cached views needs a {min(width, n_views)}-square system; it supports at "
                         f"most {MAX_REFIT_SIZE} ({8 * min(width, n_views)**2 / 2**30:.0f} GiB): set the method "
                         "param `refit: false` or cache fewer views")


def ridge_solve(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float,
                null: torch.Tensor | None = None) -> torch.Tensor:
    """
    argmin_W sum_i w_i ||W x_i - y_i||^2 + ridge * tr(x^T x)/d ||W||^2, as an (out, in) matrix (float64).

    With `null` (in, r), subject to W null = 0: the directions in its columns are erased from the output.
    Solved in feature space when in <= n, else in sample space (the same minimiser, `_dual_solve`).
    """
    if x.shape[1] > x.shape[0]:
        return _dual_solve(x, y, weights, ridge, null)
    x, y, w = x.double(), y.double(), weights.double().view(-1, 1)
    gram = x.T @ (w * x)
    gram = gram + ridge * gram.trace() / gram.shape[0] * torch.eye(gram.shape[0], dtype=gram.dtype)
    solved = torch.linalg.solve(gram, x.T @ (w * y)).T
    if null is None or null.shape[1] == 0:
        return solved
    d = null.double()
    g_inv_d = torch.linalg.solve(gram, d)
    return solved - solved @ d @ torch.linalg.solve(d.T @ g_inv_d, g_inv_d.T)


def _dual_solve(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float,
                null: torch.Tensor | None) -> torch.Tensor:
    """
    `ridge_solve` through the (n x n) kernel: W^T = X^T S (S K S + lam I)^-1 S Y with S = diag(sqrt w), K = X X^T.

    The push-through identity (X^T D X + lam I)^-1 X^T D = X^T D (X X^T D + lam I)^-1 makes it the feature-space
    minimiser; the constraint W null = 0 is the same ridge on inputs projected off span(null). Feature columns are
    processed in chunks, so the float64 copies stay (n x chunk).
    """
    n, d = x.shape
    sw = weights.double().sqrt().view(-1, 1)
    starts = range(0, d, _COLUMNS)
    basis = None if null is None or null.shape[1] == 0 else torch.linalg.qr(null.double())[0]
    coords = None if basis is None else sum(x[:, lo:lo + _COLUMNS].double() @ basis[lo:lo + _COLUMNS] for lo in starts)

    def columns(lo: int) -> torch.Tensor:
        block = x[:, lo:lo + _COLUMNS].double()
        return block if coords is None else block - coords @ basis[lo:lo + _COLUMNS].T

    kernel = torch.zeros(n, n, dtype=torch.float64)
    trace = 0.0
    for lo in starts:
        block = x[:, lo:lo + _COLUMNS].double()
        trace += float((sw.square() * block.square()).sum())  # tr(X^T D X) of the unprojected inputs
        block = columns(lo)
        kernel += block @ block.T
    lam = ridge * trace / d
    system = sw * kernel * sw.T + lam * torch.eye(n, dtype=torch.float64)
    beta = sw * torch.linalg.solve(system, sw * y.double())  # (n, out)
    return torch.cat([beta.T @ columns(lo) for lo in starts], dim=1)


@torch.no_grad()
def refit_final_linear(model: FaceModel, original_model: FaceModel, retain_inputs: torch.Tensor,
                       forget_inputs: torch.Tensor, start_block: int, forget_weight: float, ridge: float = 1e-3,
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
    x_r = penultimate_features(model, retain_inputs, start_block)
    x_f = penultimate_features(model, forget_inputs, start_block)
    y_r = torch.cat([original_model.forward_from(retain_inputs[lo:lo + 512].float(), start_block)
                     for lo in range(0, len(retain_inputs), 512)])
    y_f = fc(x_f)
    weights = torch.cat([torch.full((len(x_r),), 1.0 / len(x_r)), torch.full((len(x_f),), forget_weight / len(x_f))])
    null = None
    if forget_labels is not None:
        ids = torch.unique(forget_labels)
        null = torch.stack([x_f[forget_labels == k].mean(0) for k in ids], 1) - x_r.mean(0, keepdim=True).T
    solved = ridge_solve(torch.cat([x_r, x_f]), torch.cat([y_r, y_f]), weights, ridge, null)
    fc.weight.copy_(solved.to(fc.weight.dtype))
