"""
Random Labeling (RL): fine-tune on forget images with random identity labels plus retain images.

Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (arXiv 1911.04933); Graves et al.,
"Amnesiac Machine Learning", AAAI 2021 (arXiv 2010.10981). Reference code: OPTML-Group/Unlearn-Saliency
(https://github.com/OPTML-Group/Unlearn-Saliency) `Classification/unlearn/RL.py`, `arg_parser.py`,
`README.md`, `unlearn/impl.py` at a6e89fd. Spec: docs/methods.md#random-labeling-rl.
Loss: CosFace CE toward a random label for forget views and the true label for retain views, averaged
over the whole batch (two terms weighted by their share of the batch).
Epochs: a fresh label per forget image is drawn at the start of each epoch; an epoch is one pass over
our D_f + D_r at the engine's batch (forget_batch + retain_batch), and the run's `total_steps` are cut
into round(total / pass) equal epochs. All views of an image share the epoch's label.
`forget_then_retain`: per epoch, a pass over D_f with fresh labels per step, then a pass over D_r;
it needs the `uniform` sampler.
Deviations: frozen CosFace head (C2); labels range over the N training identities.
Defaults: `rl_schedule: mixed` (the reference's many-class branch), `rl_exclude_true: false` (the
code allows the true label); SGD lr 0.01 (arg default), momentum 0.9, wd 5e-4, batch 256, 10 epochs,
about 1,760 steps (§11).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from faceforget.seeding import torch_generator
from faceforget.unlearn.method import Batch, LossTerms, MethodContext
from faceforget.unlearn.methods.head_method import HeadMethod, HeadParams, n_epochs, n_images, phase_at
from faceforget.unlearn.methods.reference import ReferenceRecipe


class RandomLabelingParams(HeadParams):
    """RL knobs."""

    rl_schedule: Literal["mixed", "forget_then_retain"] = "mixed"
    rl_exclude_true: bool = Field(False, description="draw random labels different from the true one")


class RandomLabeling(HeadMethod):
    """CE toward fresh random labels on forget views and true labels on retain views."""

    name = "random_labeling"
    Params = RandomLabelingParams
    recipe = ReferenceRecipe("mixed", lr=0.01, epochs=10, steps=1760)

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head; `forget_then_retain` needs per-stream batches."""
        if self.params.rl_schedule == "forget_then_retain" and ctx.config.sampler != "uniform":
            raise ValueError("rl_schedule 'forget_then_retain' needs the engine's 'uniform' sampler")
        super().setup(ctx)

    def _phase(self, step: int, ctx: MethodContext) -> int:
        """Epoch (mixed) or pass (forget_then_retain: even = forget, odd = retain) that holds `step`."""
        cfg, nf, nr = ctx.config, n_images(ctx.forget), n_images(ctx.retain)
        if self.params.rl_schedule == "mixed":
            lengths = [math.ceil((nf + nr) / (cfg.forget_batch + cfg.retain_batch))]
        else:
            lengths = [math.ceil(nf / cfg.forget_batch), math.ceil(nr / max(1, cfg.retain_batch))]
        return phase_at(step, ctx.total_steps, lengths * n_epochs(ctx.total_steps, sum(lengths)))

    def streams(self, step: int, ctx: MethodContext) -> tuple[bool, bool]:
        """Both streams per batch (mixed), or a forget pass then a retain pass per epoch."""
        if self.params.rl_schedule == "mixed":
            return True, True
        on_forget = self._phase(step, ctx) % 2 == 0
        return on_forget, not on_forget

    def random_labels(self, step: int, ctx: MethodContext) -> torch.Tensor:
        """One random train-identity label per forget image for `step` (seeded by run seed and epoch)."""
        key = self._phase(step, ctx) if self.params.rl_schedule == "mixed" else step
        gen = torch_generator(ctx.seed, "random_labels", key)
        true = ctx.forget.labels[ctx.forget.clean()]
        if not self.params.rl_exclude_true:
            return torch.randint(0, ctx.n_identities, true.shape, generator=gen)
        draw = torch.randint(0, ctx.n_identities - 1, true.shape, generator=gen)
        return draw + (draw >= true).long()

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Batch-mean CE: random labels on forget views, true labels on retain views."""
        parts = [p for p in (batch.forget, batch.retain) if p is not None]
        total = sum(len(p) for p in parts)
        terms: LossTerms = {}
        if batch.forget is not None:
            targets = self.random_labels(batch.step, ctx)[batch.forget.image]
            terms["forget_random_ce"] = len(batch.forget) / total * self.ce(ctx, batch.forget, targets)
        if batch.retain is not None:
            terms["retain_ce"] = len(batch.retain) / total * self.ce(ctx, batch.retain)
        return terms
