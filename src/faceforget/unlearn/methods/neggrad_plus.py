"""
NegGrad+: descend the retain loss and ascend the forget loss, with a pull toward the original weights.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023
(arXiv 2302.09880). Reference code: meghdadk/SCRUB (https://github.com/meghdadk/SCRUB)
`small_scale_unlearning.ipynb` (`run_neggrad_epoch` / `negative_grad` cells, `ng_alpha`, `ng_epochs`,
`ng_lr`) at 98ffb11; the same combination without the L2 term is `train_negrad` in
`thirdparty/repdistiller/helper/loops.py`. Spec: docs/methods.md#neggrad.
Loss: beta * [CE(retain) + (lambda/2) ||theta - theta0||^2] - (1 - beta) * CE(forget), CosFace CE with
the true labels; the norm runs over the trainable set (C4). One retain and one forget batch per step.
Deviations: frozen CosFace head (C2); BN mode is the engine's (C5).
Defaults: beta 0.95, lambda 0.1 (notebook); SGD lr 0.01, momentum 0, optimiser wd 0, retain batch 128,
forget batch 64, 10 epochs of one pass over D_r each (§11). beta 0.9999 (paper, large scale) is a sweep point.
"""
from __future__ import annotations

from pydantic import Field

from faceforget.unlearn.losses import sq_distance
from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.head_method import HeadMethod, HeadParams
from faceforget.unlearn.methods.reference import ReferenceRecipe
from faceforget.unlearn.trainable import trainable_named_parameters


class NegGradPlusParams(HeadParams):
    """NegGrad+ knobs."""

    beta: float = Field(0.95, ge=0, le=1, description="weight of the retain side; 1 - beta on the forget ascent")
    l2_to_init: float = Field(0.1, ge=0, description="lambda of the (lambda/2)||theta - theta0||^2 pull")


class NegGradPlus(HeadMethod):
    """Convex combination of retain descent and forget ascent."""

    name = "neggrad_plus"
    Params = NegGradPlusParams
    recipe = ReferenceRecipe("paired", lr=0.01, epochs=10, steps=None, batch=128, forget_batch=64, momentum=0.0,
                             weight_decay=0.0)

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Weighted retain CE, L2 pull to the original weights and negated forget CE."""
        p = self.params
        terms: LossTerms = {}
        if batch.retain is not None:
            terms["retain_ce"] = p.beta * self.ce(ctx, batch.retain)
        if p.l2_to_init:
            params = trainable_named_parameters(ctx.model)
            original = dict(ctx.original.named_parameters())
            dist = sq_distance(list(params.values()), [original[n] for n in params])
            terms["l2_to_init"] = p.beta * p.l2_to_init / 2 * dist
        if batch.forget is not None:
            terms["forget_ce"] = -(1 - p.beta) * self.ce(ctx, batch.forget)
        return terms
