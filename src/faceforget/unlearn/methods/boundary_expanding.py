"""
Boundary Expanding (BE): map every forget image to an added shadow class, then drop that class.

Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary", CVPR 2023 (arXiv 2303.11570). Reference code: TY-LEE-KR/Boundary-Unlearning-Code
(https://github.com/TY-LEE-KR/Boundary-Unlearning-Code) `boundary_unlearning.py` (boundary_expanding)
at 19f9f23. Spec: docs/methods.md#boundary-expanding-be.
Loss: CosFace CE of forget views toward the shadow index N over the widened rows [W; w_sh]; forget
stream only. The shadow rows live in `ctx.extra_params` (trained and checkpointed by the engine) and
are never part of the shipped backbone, which is the reference's pruning step.
Deviations: the N original rows stay frozen (C2; the reference trains the whole widened net); the
shadow row starts as a seeded Gaussian, normalised (reference: Xavier-normal). `be_shadow_rows: K`
(one row per forget identity) is an ablation; 1 is faithful. Expect the forget identities to merge
toward one direction rather than disperse.
Defaults: one shadow row; SGD lr 1e-5, momentum 0.9, no wd, batch 64, 10 epochs; about 790 steps (§11).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from faceforget.seeding import torch_generator
from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.boundary_shrink import BoundaryShrink
from faceforget.unlearn.methods.head_method import HeadMethod, HeadParams


class BoundaryExpandingParams(HeadParams):
    """Boundary Expanding knobs."""

    be_shadow_rows: Literal[1, "K"] = Field(1, description="1 shadow row, or K: one per forget identity")


class BoundaryExpanding(HeadMethod):
    """CE toward a trainable shadow row appended to the frozen head."""

    name = "boundary_expanding"
    Params = BoundaryExpandingParams
    recipe = BoundaryShrink.recipe
    uses = (True, False)

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head, add the shadow row(s) and the label -> shadow index map."""
        super().setup(ctx)
        k = 1 if self.params.be_shadow_rows == 1 else len(ctx.forget_label_ids)
        rows = torch.randn(k, ctx.forget.original.shape[1], generator=torch_generator(ctx.seed, "be_shadow"))
        shadow = nn.Parameter(F.normalize(rows, dim=1))
        ctx.extra_params.append(shadow)
        slot = torch.zeros(ctx.n_identities, dtype=torch.long)
        if k > 1:
            slot[torch.tensor(ctx.forget_label_ids)] = torch.arange(k)
        ctx.state["be_shadow"], ctx.state["be_target"] = shadow, ctx.n_identities + slot

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """CE of forget views toward their shadow row."""
        z = ctx.embed(batch.forget)
        targets = ctx.state["be_target"][batch.forget.labels]
        return {"forget_shadow_ce": self.head(ctx).ce(z, targets, extra_rows=ctx.state["be_shadow"])}
