"""
SCRUB: alternate max-steps (move away from the teacher on forget) and min-steps (stay close on retain).

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023
(arXiv 2302.09880). Reference code: meghdadk/SCRUB (https://github.com/meghdadk/SCRUB)
`large_scale_unlearning.ipynb` (defaults), `thirdparty/repdistiller/distiller_zoo/KD.py` (DistillKL) and
`thirdparty/repdistiller/helper/loops.py` (train_distill, "maximize" / "minimize") at 98ffb11.
Spec: docs/methods.md#scrub.
Teacher: the frozen original model plus the frozen head, i.e. the head's logits of the cached
original embedding of each view. Student: the trainable model plus the same head.
Max-step (forget views only): -KL_T(teacher || student). Min-step (retain views only):
gamma * CosFace CE + alpha * KL_T. KL on plain logits s*cos / T (C3).
Schedule: `epochs` epochs; the first `msteps` have a forget pass (ceil(forget images / forget_batch)
steps) before the retain pass (ceil(retain images / retain_batch) steps). These literal phases are
stretched pro rata over `ctx.total_steps`, so with the "epochs" steps policy they are exact and with
"match_reference" every phase keeps its share.
Deviations: frozen head (C2); one optimiser and LR schedule from the engine (the reference's decay
epochs [3,5,9] never fire for E = 3); the other-KD term (beta = 0) is left out;
`kl_logits: margin` (teacher and student get margin logits, as bjzhb666/GS-LoRA
`baselines/SCRUBtrain.py` at a92fb97) is an option, `plain` the default.
Defaults (large_scale notebook, class forgetting): alpha 0.001, gamma 0.99, T 4, msteps 2, epochs 3;
SGD lr 5e-4, momentum 0.9, wd 5e-4, forget batch 512, retain batch 256; 16 max + 423 min steps (§11).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from faceforget.unlearn.losses import distill_kl
from faceforget.unlearn.method import Batch, LossTerms, MethodContext, Part
from faceforget.unlearn.methods.head_method import HeadMethod, HeadParams, n_images, phase_at
from faceforget.unlearn.methods.reference import ReferenceRecipe


class ScrubParams(HeadParams):
    """SCRUB knobs."""

    alpha: float = Field(0.001, ge=0, description="weight of the retain KL in min-steps")
    gamma: float = Field(0.99, ge=0, description="weight of the retain CE in min-steps")
    T: float = Field(4.0, gt=0, description="distillation temperature")
    msteps: int = Field(2, ge=0, description="epochs that start with a max (forget) pass")
    epochs: int = Field(3, ge=1, description="epochs, each with a min (retain) pass")
    kl_logits: Literal["plain", "margin"] = "plain"


_DEFAULTS = ScrubParams()


class Scrub(HeadMethod):
    """Max/min alternation of the teacher-student KL, with a retain CE in the min-steps."""

    name = "scrub"
    Params = ScrubParams
    recipe = ReferenceRecipe("alternating", lr=5e-4, epochs=_DEFAULTS.epochs, max_epochs=_DEFAULTS.msteps,
                             steps=16 + 423, batch=256, forget_batch=512)

    def streams(self, step: int, ctx: MethodContext) -> tuple[bool, bool]:
        """(True, False) in a max phase, (False, True) in a min phase."""
        p, cfg = self.params, ctx.config
        max_phase = (True, math.ceil(n_images(ctx.forget) / cfg.forget_batch))
        min_phase = (False, math.ceil(n_images(ctx.retain) / max(1, cfg.retain_batch)))
        plan = [ph for e in range(p.epochs) for ph in [max_phase] * (e < p.msteps) + [min_phase]]
        is_max = plan[phase_at(step, ctx.total_steps, [n for _, n in plan])][0]
        return is_max, not is_max

    def kl(self, ctx: MethodContext, part: Part, z: torch.Tensor) -> torch.Tensor:
        """KL_T(teacher || student) of this part's views, `z` being the student's embeddings."""
        head = self.head(ctx)
        if self.params.kl_logits == "plain":
            student, teacher = head.logits(z), head.logits(part.original)
        else:
            student, teacher = head.margin_logits(z, part.labels), head.margin_logits(part.original, part.labels)
        return distill_kl(student, teacher.detach(), self.params.T)

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Max-step: negated forget KL. Min-step: weighted retain CE and retain KL."""
        p = self.params
        if batch.forget is not None:
            return {"forget_kl": -self.kl(ctx, batch.forget, ctx.embed(batch.forget))}
        z = ctx.embed(batch.retain)
        return {"retain_ce": p.gamma * self.head(ctx).ce(z, batch.retain.labels),
                "retain_kl": p.alpha * self.kl(ctx, batch.retain, z)}
