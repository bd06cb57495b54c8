"""Shared base of the classifier-style baselines: fit (or reuse) the margin head in `setup` (docs/methods.md, C1-C4)."""
from __future__ import annotations

import bisect
import itertools
from typing import ClassVar

import torch
from pydantic import Field

from faceforget.unlearn.heads import HeadKind, MarginHead, fit_head
from faceforget.unlearn.method import MethodContext, MethodParams, Part, UnlearningMethod, ViewBank


class HeadSpec(MethodParams):
    """The margin head the baselines train against; defaults: docs/methods.md, rules C1 (AM-Softmax s, m) and C2."""

    s: float = Field(30.0, gt=0, description="logit scale")
    m: float = Field(0.35, ge=0, lt=1, description="margin on the target (cosine for CosFace, angle for ArcFace)")
    kind: HeadKind = "cosface"
    trainable: bool = Field(False, description="also train the N original rows (ablation of rule C2 in "
                            "docs/methods.md; default frozen)")
    fit_lr: float = Field(1e-2, gt=0, description="Adam learning rate of the head fit")
    fit_epochs: int = Field(200, ge=0, description="full-batch Adam epochs of the head fit")


class HeadParams(MethodParams):
    """Params of every head-based baseline."""

    head: HeadSpec = Field(default_factory=HeadSpec)


def n_images(bank: ViewBank) -> int:
    """Number of images (not views) in a bank."""
    return len(bank) // bank.views_per_image


def n_epochs(total_steps: int, pass_steps: int) -> int:
    """
    Epochs in a run: round(total steps / steps of one pass over our data), at least 1.

    Exact under the "epochs" steps policy; under "match_reference" an epoch is still about one pass.
    """
    return max(1, round(total_steps / max(1, pass_steps)))


def phase_at(step: int, total_steps: int, lengths: list[int]) -> int:
    """Index of the phase holding `step` when phases of these literal step counts fill `total_steps` pro rata."""
    pos = (step + 0.5) * sum(lengths) / total_steps
    return min(bisect.bisect_right(list(itertools.accumulate(lengths)), pos), len(lengths) - 1)


class HeadMethod(UnlearningMethod):
    """Fits the shared frozen head (cached per process) and offers margin CE toward any targets."""

    Params: ClassVar[type[MethodParams]] = HeadParams
    uses: ClassVar[tuple[bool, bool]] = (True, True)  # (forget, retain) streams of every batch

    def streams(self, step: int, ctx: MethodContext) -> tuple[bool, bool]:
        """The streams named by `uses`."""
        return self.uses

    def setup(self, ctx: MethodContext) -> None:
        """Fit the head on the original clean embeddings of all training images (rule C1); log its report."""
        f, r = ctx.forget, ctx.retain
        emb = torch.cat([f.z_original[f.clean()], r.z_original[r.clean()]])
        labels = torch.cat([f.labels[f.clean()], r.labels[r.clean()]])
        spec = self.params.head
        head, report = fit_head(emb, labels, ctx.n_identities, spec.s, spec.m, spec.kind, spec.fit_lr,
                                spec.fit_epochs, ctx.seed, trainable=spec.trainable)
        if spec.trainable:
            ctx.extra_params.append(head.weight)
        ctx.state["head"], ctx.state["head_report"] = head, report

    @staticmethod
    def head(ctx: MethodContext) -> MarginHead:
        """The head fitted in `setup`."""
        return ctx.state["head"]

    def ce(self, ctx: MethodContext, part: Part, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Margin CE of the trainable model's embeddings of `part` toward `targets` (default: true labels)."""
        return self.head(ctx).ce(ctx.embed(part), part.labels if targets is None else targets)
