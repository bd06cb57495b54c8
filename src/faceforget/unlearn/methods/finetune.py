"""
Fine-tune on retain (FT): train on the retain images only; forgetting comes from interference.

Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023 (arXiv 2108.11577); Golatkar
et al. 2020 (arXiv 1911.04933); the FT baseline of Jia et al. 2023 (arXiv 2304.04934) and Fan et al.
2024 (arXiv 2310.12508). Reference code: OPTML-Group/Unlearn-Sparse
(https://github.com/OPTML-Group/Unlearn-Sparse) `unlearn/FT.py`, `README.MD`, `arg_parser.py` at 80ba55d
(identical in OPTML-Group/Unlearn-Saliency `Classification/unlearn/FT.py` at a6e89fd).
Spec: docs/methods.md#fine-tune-on-retain-ft.
Loss: mean CosFace CE of retain views toward their true labels; retain stream only.
Deviations: none beyond the frozen CosFace head and the shared trainable set (C1-C4).
Defaults: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256, 10 epochs (README / arg parser); about
1,590 steps (§11).
"""
from __future__ import annotations

from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.head_method import HeadMethod
from faceforget.unlearn.methods.reference import ReferenceRecipe


class Finetune(HeadMethod):
    """CosFace fine-tuning on the retain set."""

    name = "finetune"
    recipe = ReferenceRecipe("retain", lr=0.01, epochs=10, steps=1590)
    uses = (False, True)

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Retain CE."""
        return {"retain_ce": self.ce(ctx, batch.retain)}
