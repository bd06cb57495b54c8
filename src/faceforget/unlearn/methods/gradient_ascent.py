"""
Gradient Ascent (GA, "NegGrad"): maximise the classification loss of the forget images.

Thudi et al., "Unrolling SGD", IEEE EuroS&P 2022 (arXiv 2109.13398); the NegGrad baseline of Golatkar
et al. 2020 (arXiv 1911.04933). Reference code: OPTML-Group/Unlearn-Sparse
(https://github.com/OPTML-Group/Unlearn-Sparse) `unlearn/GA.py`, `README.MD` at 80ba55d; the same loop
is `Classification/unlearn/GA.py` in OPTML-Group/Unlearn-Saliency at a6e89fd. Spec: docs/methods.md#gradient-ascent-ga.
Loss: -mean CosFace CE of forget views toward their true labels; forget stream only.
Deviations: frozen, normalised CosFace head (C2), so the ascent is bounded (CE <= s(2+m) + log N)
and saturates instead of exploding; SGD weight decay still acts during the ascent.
Defaults: SGD lr 1e-4, 5 epochs (Unlearn-Sparse README, 10 % random forgetting), momentum 0.9,
wd 5e-4, batch 256 (arg parser); about 90 steps (§11).
"""
from __future__ import annotations

from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.head_method import HeadMethod
from faceforget.unlearn.methods.reference import ReferenceRecipe


class GradientAscent(HeadMethod):
    """Ascend the forget CosFace loss."""

    name = "gradient_ascent"
    recipe = ReferenceRecipe("forget", lr=1e-4, epochs=5, steps=90)
    uses = (True, False)

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Negated forget CE."""
        return {"forget_ce": -self.ce(ctx, batch.forget)}
