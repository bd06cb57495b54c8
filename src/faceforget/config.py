"""
Validated configuration (pydantic): engine, unlearning run, recipe policies and evaluation sections.

Every model forbids unknown keys, so a misspelled key or an out-of-range value fails with the path
of the field in the message (see `load_yaml`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from faceforget.data.augment import AugmentConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(_Strict):
    """The training loop's knobs, shared by every method (same budget and layers for a fair comparison)."""

    steps: int = Field(400, ge=1, description="optimiser steps (ignored when `epochs` is set); 400: the K = 10 "
                       "budget tuned on the LFW tuning split (benchmarks/RESULTS.md, \"Step budget\")")
    epochs: int | None = Field(None, ge=1, description="passes over the retain images (over the forget images "
                               "when retain_batch is 0) at the batch size; sets the step count")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(5e-5, gt=0, le=1.0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum / Adam beta1")
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0, description="max global grad norm; null disables")
    trainable: str = Field("last:5", description="'all', 'embedding' (last block) or 'last:N' blocks")
    train_batchnorm: bool = Field(False, description="update BatchNorm running statistics while unlearning "
                                  "(default: BatchNorm stays in eval mode)")
    sampler: Literal["balanced", "uniform", "union"] = Field(
        "balanced", description="balanced: m views of every forget identity per batch; uniform: "
        "independent uniform forget and retain draws; union: one uniform draw over both sets")
    forget_identities_per_batch: int | None = Field(None, ge=1, description="P; null = all forget ids")
    forget_per_identity: int = Field(8, ge=1, description="m views per forget identity (balanced)")
    forget_batch: int = Field(64, ge=1, description="forget views per batch (uniform / union)")
    retain_batch: int = Field(256, ge=0, description="retain views per batch")
    forget_views: int = Field(16, ge=1, description="cached views per forget image (1 = clean only)")
    retain_views: int = Field(2, ge=1, description="cached views per retain image (1 = clean only)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0, description="steps between resumable checkpoints; 0 = off")
    batch_size_embed: int = Field(64, ge=1, description="batch size when building the view cache")


class EvalConfig(_Strict):
    """Retrieval evaluation settings."""

    ks: tuple[int, ...] = (1, 5, 10)
    fars: tuple[float, ...] = (1e-3, 1e-4)
    batch_size: int = Field(64, ge=1)
    chunk_size: int = Field(512, ge=1)
    knn: Literal["exact", "torch", "faiss"] = "exact"  # torch/faiss: top-k, R@k and mAP@R only


class VerdictConfig(_Strict):
    """The acceptance bars a run is held to (`eval.verdict`); defaults are the project's, see docs/report.md."""

    forget_r1_max: float = Field(0.10, ge=0, le=1, description="held-out forget R@1 at most this")
    forget_map_max: float = Field(0.10, ge=0, le=1, description="held-out forget mAP at most this")
    seen_forget_r1_max: float = Field(0.05, ge=0, le=1, description="forget R@1 on the photos the unlearning saw")
    reenrol_top1_max: float = Field(0.10, ge=0, le=1, description="re-enrolment attack top-1 hit rate")
    probe_chance_factor_max: float = Field(2.0, ge=1, description="linear-probe accuracy at most this x chance")
    threshold_accept_max: float = Field(0.05, ge=0, le=1, description="share of genuine forget pairs a verifier "
                                        "at the original threshold still accepts")
    mia_distinguishability_max: float = Field(0.10, ge=0, le=0.5, description="membership inference |AUC - 0.5|")
    retain_map_ratio_min: float = Field(0.97, ge=0, le=1, description="retain (and lookalike) mAP at least "
                                        "this x the original model's")
    retain_r1_drop_max: float = Field(0.01, ge=0, le=1, description="retain (and lookalike) R@1 drop at most this")
    gallery_top1_max: float = Field(0.10, ge=0, le=1, description="forget photos whose gallery top-1 is the same "
                                    "person after the rebuild")


class RuntimeConfig(_Strict):
    """Where a run executes, not what it computes: left out of the job signature (docs/scale.md)."""

    device: str = Field("cpu", description="torch device of every stage: embedding, view cache, training "
                        "('cuda' is untested here)")
    amp: bool = Field(False, description="bfloat16 autocast of the forward passes (for GPUs)")
    embed_backend: Literal["torch", "onnxruntime"] = Field(
        "torch", description="runs the whole-image embedding stages (the split before unlearning, a full-model "
        "run after): torch, or the model's exported graph on onnxruntime (CPU; docs/scale.md#embedding-backend)")


class RecipePolicy(_Strict):
    """How a method's reference recipe meets the engine settings (`unlearn/recipe.py`, docs/methods.md)."""

    steps_policy: Literal["shared", "match_reference", "epochs"] = Field(
        "shared", description="shared: every method gets engine.steps; else the baselines' reference budgets")
    optimizer_policy: Literal["shared", "reference"] = Field(
        "shared", description="shared: every method uses the engine's optimiser, lr, schedule and clipping; "
        "reference: each baseline keeps its reference optimiser and lr (docs/methods.md, rule C6)")
    max_steps: int | None = Field(None, ge=1, description="cap on any method's steps")


class UnlearnConfig(RecipePolicy):
    """
    One unlearning run: method name, its params (validated by the method), the engine, the recipe policies.

    `unlearn.recipe.resolve_recipe` merges the method's reference recipe into `engine`; the resolved
    `run_settings()` are what a run records; its signature hashes them without the verdict and runtime.
    """

    method: str = "dispersion"
    params: dict = Field(default_factory=dict)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    engine_overrides: dict = Field(default_factory=dict, description="engine keys that win over the method's "
                                   "reference recipe (a benchmark entry's `engine`)")

    @field_validator("engine_overrides")
    @classmethod
    def _known_engine_keys(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(EngineConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown engine keys {unknown}")
        return value

    def run_settings(self) -> dict:
        """Method, params, engine, eval, verdict bars and runtime as JSON data: what a resolved run records."""
        return self.model_dump(mode="json", include={"method", "params", "engine", "eval", "verdict", "runtime"})


M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted field path."""
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def validate_config(model: type[M], data: dict, source: str = "config") -> M:
    """Validate a dict, raising ValueError whose message names every bad field path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, source)) from None


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read a YAML file and validate it as `model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return validate_config(model, data, str(path))
