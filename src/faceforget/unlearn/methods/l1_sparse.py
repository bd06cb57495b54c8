"""
L1-sparse unlearning: fine-tune on retain with a linearly decaying L1 penalty on the weights.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (arXiv 2304.04934), their
sparsity-aware unlearning. Reference code: OPTML-Group/Unlearn-Sparse
(https://github.com/OPTML-Group/Unlearn-Sparse) `unlearn/FT.py` (FT_l1 / FT_iter), `unlearn/FT_prune.py`,
`README.MD`, `arg_parser.py` at 80ba55d (identical in OPTML-Group/Unlearn-Saliency at a6e89fd).
Spec: docs/methods.md#l1-sparse.
Loss: CE(retain) + gamma_e * ||theta||_1, gamma_e = gamma (1 - e / (E - E0)) for e < E - E0, else 0,
constant within epoch e (0-indexed). E: epochs of the run, one pass over our D_r at the engine's
retain batch each, the run's `total_steps` cut into round(total / pass) equal epochs (exactly E
passes under the "epochs" steps policy). E0 = `no_l1_epochs`.
Deviations: the norm covers the conv and fc weights and biases of the trainable set only (C4; dlib's
frozen affine layers and norm affines are left out; the reference uses every parameter); frozen head.
Defaults: `no_l1_epochs` 0 (arg parser); `gamma` 1e-4, a point of the BASELINES grid {1e-5, 5e-5, 1e-4,
5e-4} (the reference passes it on the command line; its 0.2 placeholder would wipe the net). Choose
it so the total shrink, logged as `l1_shrink_fraction` (sum_step lr * gamma_e / median |w|, constant
lr assumed), is 5-30 %. Optimiser as FT: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256, 10 epochs.
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from faceforget.unlearn.losses import l1_norm
from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.finetune import Finetune
from faceforget.unlearn.methods.head_method import HeadParams, n_epochs, n_images, phase_at

_SPARSE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class L1SparseParams(HeadParams):
    """L1-sparse knobs."""

    gamma: float = Field(1e-4, ge=0, description="initial L1 weight (decays linearly to 0)")
    no_l1_epochs: int = Field(0, ge=0, description="final epochs without the L1 term")


def sparse_params(model: nn.Module) -> list[nn.Parameter]:
    """Trainable weights and biases of the conv and fc layers."""
    return [p for mod in model.modules() if isinstance(mod, _SPARSE) for p in mod.parameters(recurse=False)
            if p.requires_grad]


class L1Sparse(Finetune):
    """FT on retain plus a decaying L1 norm of the weights."""

    name = "l1_sparse"
    Params = L1SparseParams

    def gamma_at(self, step: int, ctx: MethodContext) -> float:
        """The L1 weight of the epoch that holds `step`."""
        epochs = n_epochs(ctx.total_steps, math.ceil(n_images(ctx.retain) / max(1, ctx.config.retain_batch)))
        epoch = phase_at(step, ctx.total_steps, [1] * epochs)
        active = epochs - self.params.no_l1_epochs
        return self.params.gamma * (1 - epoch / active) if epoch < active else 0.0

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head and log the planned total shrink relative to the median |weight|."""
        super().setup(ctx)
        weights = [p.detach().abs().flatten() for p in sparse_params(ctx.model)]
        if weights:
            shrink = ctx.config.lr * sum(self.gamma_at(t, ctx) for t in range(ctx.total_steps))
            ctx.state["l1_shrink_fraction"] = shrink / max(float(torch.cat(weights).median()), 1e-12)

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Retain CE and the weighted L1 norm."""
        return super().loss(batch, ctx) | {"l1": self.gamma_at(batch.step, ctx) * l1_norm(sparse_params(ctx.model))}
