"""
SalUn: Random Labeling restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency
in Both Image Classification and Generation", ICLR 2024 (arXiv 2310.12508). Reference code:
OPTML-Group/Unlearn-Saliency (https://github.com/OPTML-Group/Unlearn-Saliency)
`Classification/generate_mask.py`, `Classification/unlearn/RL.py` (mask application and restore, since
"Fix weight decay (#33)"), `Classification/main_random.py`, `Classification/README.md` at a6e89fd.
Spec: docs/methods.md#salun.
Mask, once in `setup` on the original weights in eval mode: g = sum over forget batches (clean views,
engine forget_batch) of grad of -CE(true labels); the floor(ratio * P) entries of |g| ranked globally
over the trainable set (C4) get 1 (ties by stable sort order), the rest 0. Then RL (random_labeling.py)
with the mask: the engine multiplies gradients by it and, after each step, resets masked-out weights
to the original and zeroes their optimiser state (the reference's current rule).
Deviations: frozen CosFace head, saliency loss is CosFace CE; mask over the trainable backbone only.
`ctx.state` keeps the mask (`salun_mask`), its density and per-tensor breakdown (`salun_mask_layers`).
Defaults: ratio 0.5 (README's mask); RL update with SGD lr 0.013 (README example), momentum 0.9,
wd 5e-4, batch 256, 10 epochs; about 1,760 steps (§11).
"""
from __future__ import annotations

import dataclasses

from pydantic import Field

from faceforget.unlearn.masks import mask_density, summed_gradients, top_fraction_mask
from faceforget.unlearn.method import MethodContext
from faceforget.unlearn.methods.random_labeling import RandomLabeling, RandomLabelingParams
from faceforget.unlearn.trainable import trainable_named_parameters


class SalUnParams(RandomLabelingParams):
    """SalUn knobs (RL's plus the mask ratio)."""

    ratio: float = Field(0.5, gt=0, le=1, description="fraction of trainable weights the update may change")


class SalUn(RandomLabeling):
    """Random labeling under a gradient-saliency weight mask."""

    name = "salun"
    Params = SalUnParams
    recipe = dataclasses.replace(RandomLabeling.recipe, lr=0.013)

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head, then build the mask from forget-loss gradients at the original weights."""
        super().setup(ctx)
        params = trainable_named_parameters(ctx.model)
        training = ctx.model.training
        ctx.model.eval()
        batches = ctx.forget.clean().split(ctx.config.forget_batch)
        saliency = summed_gradients(params, (-self.ce(ctx, ctx.forget.take(idx)) for idx in batches))
        ctx.model.train(training)
        ctx.param_mask = top_fraction_mask({n: g.abs() for n, g in saliency.items()}, self.params.ratio)
        ctx.state["salun_mask"] = ctx.param_mask
        ctx.state["salun_mask_density"] = mask_density(ctx.param_mask)
        ctx.state["salun_mask_layers"] = {n: float(m.mean()) for n, m in ctx.param_mask.items()}
