"""
Reference optimiser, batch and step budget of each baseline, as EngineConfig settings (BASELINES C6-C9, §11).

`steps_policy`: "match_reference" takes the reference code's optimiser-step count (§11), because our
forget sets are 10-50x smaller than the papers' and equal epochs would mean far fewer steps (C7);
"epochs" takes the literal epochs over our data: ceil(images / batch) steps per pass of the loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

StepsPolicy = Literal["match_reference", "epochs"]
Loader = Literal["forget", "retain", "mixed", "paired", "alternating"]
# C8: horizontal flip only; view 0 of every bank is the clean image, view 1 a randomly flipped copy.
HFLIP_ONLY = {"hflip": True, "max_shift": 0.0, "max_rotate_deg": 0.0, "scale_range": 0.0, "brightness": 0.0,
              "contrast": 0.0}


@dataclass(frozen=True)
class ReferenceRecipe:
    """
    How the reference code trains one method.

    `loader`: what one epoch passes over. forget / retain: that set; mixed: one shuffled pass over
    both (batch `batch`); paired: one retain batch (`batch`) plus one forget batch (`forget_batch`)
    per step, an epoch being a pass over retain; alternating: a forget pass in the first
    `max_epochs` epochs, then a retain pass, every epoch (SCRUB). `steps`: the §11 step count
    (None: the epoch count over our data, as for NegGrad+).
    """

    loader: Loader
    lr: float
    epochs: int
    steps: int | None
    batch: int = 256
    forget_batch: int | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_epochs: int = 0

    def literal_steps(self, n_forget: int, n_retain: int) -> int:
        """Optimiser steps of `epochs` literal epochs over `n_forget` / `n_retain` training images."""
        forget_pass = math.ceil(n_forget / (self.forget_batch or self.batch))
        retain_pass = math.ceil(n_retain / self.batch)
        per_epoch = {"forget": forget_pass, "retain": retain_pass, "paired": retain_pass,
                     "mixed": math.ceil((n_forget + n_retain) / self.batch), "alternating": retain_pass}
        extra = self.max_epochs * forget_pass if self.loader == "alternating" else 0
        return max(1, self.epochs * per_epoch[self.loader] + extra)

    def engine(self, n_forget: int, n_retain: int, policy: StepsPolicy = "match_reference") -> dict:
        """
        EngineConfig keys (optimiser, schedule, sampler, batches, views, steps) for our set sizes.

        Batches are capped at the set size, as a reference loader's only batch would be.
        """
        steps = self.steps if policy == "match_reference" and self.steps else self.literal_steps(n_forget, n_retain)
        forget_batch = max(1, min(self.forget_batch or self.batch, n_forget))
        retain_batch = min(self.batch, n_retain)
        if self.loader == "mixed":  # the union sampler draws forget_batch + retain_batch rows from both sets
            total = max(1, min(self.batch, n_forget + n_retain))
            forget_batch = max(1, round(total * n_forget / max(1, n_forget + n_retain)))
            retain_batch = max(0, total - forget_batch)
        return {"optimizer": "sgd", "lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "schedule": "constant", "warmup_steps": 0, "grad_clip": None, "steps": steps,
                "sampler": "union" if self.loader == "mixed" else "uniform", "forget_batch": forget_batch,
                "retain_batch": retain_batch, "forget_views": 2, "retain_views": 2, "augment": dict(HFLIP_ONLY)}
