"""
One method, one recipe: the baselines' reference training settings and the resolver every entry point uses.

`resolve_recipe` turns a requested `UnlearnConfig` into the config a run trains with; `api.unlearn` (so
the CLI) and each benchmark cell call it, so a method trains the same way whichever way it is started.
Layers, the later winning: EngineConfig defaults < `engine` < the method's `ReferenceRecipe` (only the
keys the policies hand to it) < `engine_overrides`; then `max_steps` caps the step count.
Policies (docs/methods.md#one-method-one-recipe): `steps_policy` "shared" keeps `engine.steps`;
"match_reference" takes the reference code's optimiser-step count, because our forget sets are 10-50x
smaller than the papers' and equal epochs would mean far fewer steps (docs/methods.md, rule C7);
"epochs" takes the literal epochs over our data (ceil(images / batch) steps per pass of the loader).
`optimizer_policy` "shared" keeps the engine's optimiser, lr, schedule and clipping; "reference" takes
the recipe's (rule C6). Views and augmentation always stay the engine's, so methods share view banks.
A method without a recipe (dispersion) trains with `engine` and `engine_overrides` as given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from faceforget.config import UnlearnConfig, validate_config
from faceforget.unlearn.registry import method_class

StepsPolicy = Literal["match_reference", "epochs"]
Loader = Literal["forget", "retain", "mixed", "paired", "alternating"]
# Rule C8: horizontal flip only; view 0 of every bank is the clean image, view 1 a randomly flipped copy.
HFLIP_ONLY = {"hflip": True, "max_shift": 0.0, "max_rotate_deg": 0.0, "scale_range": 0.0, "brightness": 0.0,
              "contrast": 0.0}
OPTIMISER_KEYS = frozenset({"optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_steps", "grad_clip"})
ALWAYS_SHARED = frozenset({"forget_views", "retain_views", "augment"})


@dataclass(frozen=True)
class ReferenceRecipe:
    """
    How the reference code trains one method.

    `loader`: what one epoch passes over. forget / retain: that set; mixed: one shuffled pass over
    both (batch `batch`); paired: one retain batch (`batch`) plus one forget batch (`forget_batch`)
    per step, an epoch being a pass over retain; alternating: a forget pass in the first
    `max_epochs` epochs, then a retain pass, every epoch (SCRUB). `steps`: the reference code's step
    count (docs/methods.md#reference-step-budgets; None: the epoch count over our data, as for NegGrad+).
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


def resolve_recipe(cfg: UnlearnConfig, n_forget: int, n_retain: int, source: str = "config") -> UnlearnConfig:
    """
    The config a run trains with, for `n_forget` / `n_retain` training images (layers in the module docstring).

    Resolving a resolved config changes nothing; `source` names the config in validation errors.
    """
    engine = cfg.engine.model_dump()
    recipe = method_class(cfg.method).recipe
    if recipe is not None:
        policy = "match_reference" if cfg.steps_policy == "shared" else cfg.steps_policy
        shared = ALWAYS_SHARED | ({"steps"} if cfg.steps_policy == "shared" else set())
        if cfg.optimizer_policy == "shared":
            shared |= OPTIMISER_KEYS
        engine |= {k: v for k, v in recipe.engine(n_forget, n_retain, policy).items() if k not in shared}
    engine |= cfg.engine_overrides
    if cfg.max_steps is not None:
        engine["steps"] = min(engine["steps"], cfg.max_steps)
    return validate_config(UnlearnConfig, cfg.model_dump() | {"engine": engine}, source)
