"""
CosFace / ArcFace margin heads over normalised embeddings, fitted once on frozen embeddings (docs/methods.md, rule C1).

Face models ship without a classifier, so the classifier-style baselines train against a head whose
rows start at the normalised class means and are then fitted with Adam (rows only, full batch).
"""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from faceforget.seeding import torch_generator
from faceforget.unlearn.losses import arcface_logits, cosface_logits

HeadKind = Literal["cosface", "arcface"]
_CACHE: dict[str, tuple[MarginHead, dict]] = {}
_CACHE_SIZE = 8


class MarginHead(nn.Module):
    """Rows W (n_classes x d), normalised on use; subclasses set the margin transform of the target logit."""

    margin_fn: Callable[[torch.Tensor, torch.Tensor | None, float, float], torch.Tensor]

    def __init__(self, weight: torch.Tensor, s: float = 30.0, m: float = 0.35, trainable: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=trainable)
        self.s, self.m = s, m

    def cosine(self, z: torch.Tensor, extra_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Cosines between normalised embeddings `z` and the normalised rows (plus optional extra rows)."""
        rows = self.weight if extra_rows is None else torch.cat([self.weight, extra_rows])
        return z @ F.normalize(rows, dim=1).T

    def logits(self, z: torch.Tensor, extra_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Plain logits s * cos (predictions, KL, attacks)."""
        return self.s * self.cosine(z, extra_rows)

    def margin_logits(self, z: torch.Tensor, labels: torch.Tensor,
                      extra_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits with the margin applied to each row's target `labels`."""
        return type(self).margin_fn(self.cosine(z, extra_rows), labels, self.s, self.m)

    def ce(self, z: torch.Tensor, labels: torch.Tensor, extra_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Margin cross-entropy toward `labels`, batch mean; 0 (in the graph) for an empty batch."""
        if z.shape[0] == 0:
            return z.sum() * 0.0
        return F.cross_entropy(self.margin_logits(z, labels, extra_rows), labels)


class CosFaceHead(MarginHead):
    """s * (cos - m) on the target (Wang et al., arXiv 1801.09414)."""

    margin_fn = staticmethod(cosface_logits)


class ArcFaceHead(MarginHead):
    """s * cos(theta + m) on the target (Deng et al., arXiv 1801.07698)."""

    margin_fn = staticmethod(arcface_logits)


HEADS: dict[str, type[MarginHead]] = {"cosface": CosFaceHead, "arcface": ArcFaceHead}


def _key(embeddings: torch.Tensor, labels: torch.Tensor, *settings: object) -> str:
    h = hashlib.sha256()
    h.update(embeddings.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().long().cpu().contiguous().numpy().tobytes())
    h.update(repr(settings).encode())
    return h.hexdigest()[:16]


def _class_means(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    """Normalised mean embedding per class; a class without samples gets a seeded random row."""
    d = embeddings.shape[1]
    sums = embeddings.new_zeros(n_classes, d).index_add_(0, labels, embeddings)
    empty = torch.bincount(labels, minlength=n_classes) == 0
    sums[empty] = torch.randn(int(empty.sum()), d, generator=torch_generator(seed, "head")).to(sums)
    return F.normalize(sums, dim=1)


@torch.enable_grad()
def _fit(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int, s: float, m: float, kind: HeadKind,
         lr: float, epochs: int, seed: int) -> tuple[MarginHead, dict]:
    z = F.normalize(embeddings.detach().float(), dim=1)
    head = HEADS[kind](_class_means(z, labels, n_classes, seed), s, m, trainable=True)
    optimizer = torch.optim.Adam([head.weight], lr=lr)
    history = []
    for _ in range(epochs):
        loss = head.ce(z, labels)
        (head.weight.grad,) = torch.autograd.grad(loss, [head.weight])
        optimizer.step()
        history.append(float(loss.detach()))
    head.weight.requires_grad_(False)
    with torch.no_grad():
        top1 = float((head.logits(z).argmax(1) == labels).float().mean())
        final = float(head.ce(z, labels))
    return head, {"kind": kind, "s": s, "m": m, "lr": lr, "epochs": epochs, "n": len(labels),
                  "n_classes": n_classes, "loss_start": history[0] if history else final, "loss_end": final,
                  "train_top1": top1}


def fit_head(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int, s: float = 30.0, m: float = 0.35,
             kind: HeadKind = "cosface", lr: float = 1e-2, epochs: int = 200, seed: int = 0,
             trainable: bool = False) -> tuple[MarginHead, dict]:
    """
    A margin head fitted on frozen embeddings (cached per process on their hash) and its report.

    Every call returns a fresh copy, so a trainable head never leaks into the next method's run.
    """
    key = _key(embeddings, labels, n_classes, s, m, kind, lr, epochs, seed)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _fit(embeddings, labels, n_classes, s, m, kind, lr, epochs, seed)
    head, report = _CACHE[key]
    head = copy.deepcopy(head)
    head.weight.requires_grad_(trainable)
    return head, {**report, "hash": key}
