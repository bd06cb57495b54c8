"""The one resolver of a method's config: layer order, policies, reference budgets, idempotence."""
import math

import pytest

from faceforget.config import UnlearnConfig, validate_config
from faceforget.unlearn.methods import BASELINES
from faceforget.unlearn.recipe import resolve_recipe

N_FORGET, N_RETAIN = 50, 3000


def resolve(method, **fields):
    return resolve_recipe(UnlearnConfig(method=method, **fields), N_FORGET, N_RETAIN).engine


def test_recipe_sits_between_the_engine_and_the_overrides():
    # SCRUB's reference loader: forget batch 512 (capped at the 50 forget images), retain batch 256
    engine = resolve("scrub", engine={"retain_batch": 32, "lr": 1e-4, "steps": 7})
    assert (engine.sampler, engine.forget_batch, engine.retain_batch) == ("uniform", 50, 256)
    assert (engine.optimizer, engine.lr, engine.steps) == ("adam", 1e-4, 7)  # shared policies keep these
    engine = resolve("scrub", engine={"retain_batch": 32}, engine_overrides={"retain_batch": 32, "sampler": "union"})
    assert (engine.sampler, engine.retain_batch) == ("union", 32)


def test_policies_hand_the_optimiser_and_the_budget_to_the_recipe():
    engine = resolve("scrub", optimizer_policy="reference", steps_policy="match_reference")
    assert (engine.optimizer, engine.lr, engine.momentum, engine.weight_decay) == ("sgd", 5e-4, 0.9, 5e-4)
    assert (engine.schedule, engine.grad_clip, engine.steps) == ("constant", None, 16 + 423)
    # literal epochs: 3 retain passes of ceil(3000 / 256) = 12 steps, plus 2 forget passes of 1 step
    assert resolve("scrub", steps_policy="epochs").steps == 3 * 12 + 2
    assert resolve("scrub", steps_policy="match_reference", max_steps=100).steps == 100
    assert resolve("scrub", engine={"forget_views": 5}, optimizer_policy="reference").forget_views == 5


def test_a_method_without_recipe_trains_with_the_engine_as_given():
    engine = resolve("dispersion", engine={"retain_batch": 32}, steps_policy="match_reference",
                     optimizer_policy="reference", engine_overrides={"lr": 1e-4}, max_steps=50)
    default = UnlearnConfig().engine
    assert (engine.retain_batch, engine.lr, engine.steps) == (32, 1e-4, 50)
    assert (engine.sampler, engine.optimizer) == (default.sampler, default.optimizer)


def test_resolving_twice_changes_nothing():
    request = UnlearnConfig(method="random_labeling", engine={"sampler": "balanced"}, steps_policy="epochs",
                            engine_overrides={"forget_batch": 3}, max_steps=20)
    once = resolve_recipe(request, N_FORGET, N_RETAIN)
    assert resolve_recipe(once, N_FORGET, N_RETAIN) == once
    assert (once.engine.sampler, once.engine.forget_batch, once.engine.steps) == ("union", 3, 20)


def test_unknown_override_keys_name_the_field():
    with pytest.raises(ValueError, match="engine_overrides.*stepz"):
        validate_config(UnlearnConfig, {"method": "scrub", "engine_overrides": {"stepz": 3}})


REFERENCE_STEPS = {"random_labeling": 1760, "salun": 1760, "gradient_ascent": 90, "boundary_shrink": 790,
                   "boundary_expanding": 790, "scrub": 439, "finetune": 1590, "l1_sparse": 1590,
                   "neggrad_plus": 10 * math.ceil(N_RETAIN / 128)}
LITERAL_STEPS = {"random_labeling": 10 * 12, "salun": 10 * 12, "gradient_ascent": 5, "boundary_shrink": 10,
                 "boundary_expanding": 10, "scrub": 2 + 3 * 12, "finetune": 10 * 12, "l1_sparse": 10 * 12,
                 "neggrad_plus": 10 * math.ceil(N_RETAIN / 128)}


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_reference_recipe_gives_the_reference_budget_and_optimiser(cls):
    ref = resolve(cls.name, steps_policy="match_reference", optimizer_policy="reference")
    assert ref.steps == REFERENCE_STEPS[cls.name] and ref.optimizer == "sgd" and ref.grad_clip is None
    assert resolve(cls.name, steps_policy="epochs").steps == LITERAL_STEPS[cls.name]
    assert ref.forget_batch <= N_FORGET and ref.retain_batch <= 256
    if cls.name in ("random_labeling", "salun"):  # one mixed batch of 256: round(256 * 50 / 3050) = 4 forget
        assert ref.sampler == "union" and (ref.forget_batch, ref.retain_batch) == (4, 252)
