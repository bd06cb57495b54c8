"""
Boundary Shrink (BS): relabel each forget image with its nearest wrong identity, found by FGSM.

Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary", CVPR 2023 (arXiv 2303.11570). Reference code: TY-LEE-KR/Boundary-Unlearning-Code
(https://github.com/TY-LEE-KR/Boundary-Unlearning-Code) `boundary_unlearning.py` (boundary_shrink),
`adv_generator.py` (FGSM), `main.py` at 19f9f23. Spec: docs/methods.md#boundary-shrink-bs.
Neighbour search, once in `setup`: one FGSM step through the frozen full original model and the frozen
head with plain logits (C3), in raw RGB pixels before the model's own normalisation:
x_adv = round(clip(x + eps * 255 * sign(grad_x CE), 0, 255)); y_hat = argmax of the plain logits at
x_adv. Training: CosFace CE of the clean forget views toward y_hat; forget stream only.
Deviations: (1) y_hat is computed once per clean forget image (`ctx.forget_pixels`) and used for all of
that image's augmented views (the reference attacks each augmented batch; with the hflip-only views
of C8 the frozen model's neighbour rarely differs). (2) `bs_neighbour_pool: retain` (default): when
y_hat is a forget identity, or the attack fails, the argmax over the retain rows is used instead
(the reference forgets one class, so its neighbour is always retained); `all` is faithful.
(3) Frozen CosFace head (C2). `ctx.state` logs `bs_attack_success` (fraction with y_hat != y before
the pool rule) and `bs_redirected` (fraction moved to a retain row).
Defaults: eps 0.1 in [0,1] units (reference, hard-coded in SalUn's port too); SGD lr 1e-5, momentum
0.9, no wd, batch 64 (main.py), 10 epochs; about 790 steps (§11).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from faceforget.models.spec import FaceModel
from faceforget.unlearn.heads import MarginHead
from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.head_method import HeadMethod, HeadParams
from faceforget.unlearn.methods.reference import ReferenceRecipe


class BoundaryShrinkParams(HeadParams):
    """Boundary Shrink knobs."""

    bs_eps_pixels: float = Field(0.1, gt=0, le=1, description="FGSM step in [0,1] units of RGB (x 255 levels)")
    bs_neighbour_pool: Literal["retain", "all"] = "retain"


@torch.enable_grad()
def fgsm_logits(model: FaceModel, head: MarginHead, pixels: torch.Tensor, labels: torch.Tensor,
                eps: float) -> torch.Tensor:
    """Plain head logits of one rounded FGSM step (float RGB [0,255] NCHW, `eps` in levels) on `model`."""
    x = pixels.detach().clone().requires_grad_(True)
    ce = F.cross_entropy(head.logits(F.normalize(model(x), dim=1)), labels)
    (grad,) = torch.autograd.grad(ce, [x])
    x_adv = (x.detach() + eps * grad.sign()).clamp(0, 255).round()
    with torch.no_grad():
        return head.logits(F.normalize(model(x_adv), dim=1))


class BoundaryShrink(HeadMethod):
    """CE toward the FGSM neighbour label of each forget image."""

    name = "boundary_shrink"
    Params = BoundaryShrinkParams
    recipe = ReferenceRecipe("forget", lr=1e-5, epochs=10, steps=790, batch=64, weight_decay=0.0)
    uses = (True, False)

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head, then find every forget image's neighbour label once (`bs_targets`)."""
        super().setup(ctx)
        labels = ctx.forget.labels[ctx.forget.clean()]
        pixels = ctx.forget_pixels.permute(0, 3, 1, 2).float()
        size, eps = ctx.config.batch_size_embed, self.params.bs_eps_pixels * 255
        logits = torch.cat([fgsm_logits(ctx.original, self.head(ctx), x, y, eps)
                            for x, y in zip(pixels.split(size), labels.split(size), strict=True)])
        raw = logits.argmax(1)
        targets = raw
        if self.params.bs_neighbour_pool == "retain":
            forget_ids = torch.tensor(ctx.forget_label_ids, dtype=torch.long)
            retain_best = logits.index_fill(1, forget_ids, float("-inf")).argmax(1)
            targets = torch.where(torch.isin(raw, forget_ids), retain_best, raw)
        ctx.state["bs_targets"] = targets
        ctx.state["bs_attack_success"] = float((raw != labels).float().mean())
        ctx.state["bs_redirected"] = float((targets != raw).float().mean())

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """CE of forget views toward their image's neighbour label."""
        return {"forget_neighbour_ce": self.ce(ctx, batch.forget, ctx.state["bs_targets"][batch.forget.image])}
