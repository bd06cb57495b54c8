"""Audit inputs and results, the `Audit` base (validate once, call `compute`), `run_audits` (before/after)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from faceforget.eval.metrics import l2_normalise


@dataclass(frozen=True)
class EmbeddingSet:
    """One protocol role's embeddings: `emb` (n, d) float32, L2-normalised on construction, and labels."""

    emb: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        emb = np.array(self.emb, dtype=np.float32)
        labels = np.asarray(self.labels).astype(str)
        if emb.ndim != 2:
            raise ValueError(f"emb must be 2-D (n, d), got shape {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("emb contains NaN or inf")
        if labels.shape != (len(emb),):
            raise ValueError(f"labels must be 1-D with {len(emb)} entries (one per row), got {labels.shape}")
        if self.paths is not None and len(self.paths) != len(emb):
            raise ValueError(f"paths has {len(self.paths)} entries for {len(emb)} embeddings")
        emb = np.ascontiguousarray(l2_normalise(emb), dtype=np.float32)
        emb.flags.writeable = False
        labels.flags.writeable = False
        object.__setattr__(self, "emb", emb)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.emb)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return self.emb.shape[1]


@dataclass(frozen=True)
class AuditInputs:
    """One model's embeddings of the protocol roles an audit reads (`*_test` held out from unlearning)."""

    forget_train: EmbeddingSet
    forget_test: EmbeddingSet
    retain_test: EmbeddingSet
    distractors: EmbeddingSet | None = None

    @classmethod
    def from_records(cls, embeddings: np.ndarray, roles: Sequence[str], labels: Sequence[str],
                     paths: Sequence[str] | None = None) -> "AuditInputs":
        """The audits' view of one model: rows of `embeddings` (aligned with the split's records) by role."""
        roles, labels = np.asarray(roles), np.asarray(labels)
        paths_arr = None if paths is None else np.asarray(paths)

        def role(name: str) -> EmbeddingSet:
            sel = roles == name
            return EmbeddingSet(embeddings[sel], labels[sel], None if paths_arr is None else tuple(paths_arr[sel]))

        return cls(role("forget_train"), role("forget_test"), role("retain_test"),
                   role("distractor") if (roles == "distractor").any() else None)

    def sets(self) -> dict[str, EmbeddingSet]:
        """The present sets by role name."""
        named = {"forget_train": self.forget_train, "forget_test": self.forget_test,
                 "retain_test": self.retain_test, "distractors": self.distractors}
        return {name: s for name, s in named.items() if s is not None}


@dataclass(frozen=True)
class AuditResult:
    """
    An audit's aggregate `value`, its `chance` level, per-query or per-identity values, extra numbers.

    `item_labels` names the identity of each `per_item` entry.
    """

    name: str
    value: float
    chance: float | None
    per_item: np.ndarray
    item_labels: np.ndarray
    details: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.per_item) != len(self.item_labels):
            raise ValueError(f"{len(self.per_item)} per_item values for {len(self.item_labels)} item labels")


def check_inputs(inputs: AuditInputs) -> None:
    """Raise ValueError unless the sets are non-empty, share one dim and forget identities are consistent."""
    sets = inputs.sets()
    for name in ("forget_train", "forget_test", "retain_test"):
        if len(sets[name]) == 0:
            raise ValueError(f"{name} is empty: the audits need forget_train, forget_test and retain_test")
    dims = {name: s.dim for name, s in sets.items()}
    if len(set(dims.values())) > 1:
        raise ValueError(f"embedding dim mismatch between sets: {dims}")
    train, test = set(inputs.forget_train.labels), set(inputs.forget_test.labels)
    if train != test:
        raise ValueError(
            "each forget identity needs photos in both forget_train and forget_test; "
            f"only in forget_train: {sorted(train - test)}, only in forget_test: {sorted(test - train)}"
        )
    for name in ("retain_test", "distractors"):
        shared = train & set(sets[name].labels) if name in sets else set()
        if shared:
            raise ValueError(f"forget identities also appear in {name}: {sorted(shared)}")


class Audit(ABC):
    """An attack on the forgetting: `run` validates the inputs once, then calls the `compute` hook."""

    name: ClassVar[str]

    def run(self, inputs: AuditInputs, reference: AuditInputs | None = None) -> AuditResult:
        """Audit one model's embeddings; `reference`: the original model's (None: the inputs themselves)."""
        check_inputs(inputs)
        if reference is not None:
            check_inputs(reference)
        return self.compute(inputs, reference)

    @abstractmethod
    def compute(self, inputs: AuditInputs, reference: AuditInputs | None) -> AuditResult:
        """The attack itself, on validated inputs."""


def run_audits(
    original: AuditInputs, unlearned: AuditInputs, seed: int, audits: Sequence[Audit] | None = None,
    feature_spaces: Mapping[str, tuple[AuditInputs, AuditInputs]] | None = None,
) -> dict[str, dict[str, AuditResult | float | None]]:
    """
    {audit name: {before, after, chance}}: each audit on the original and the unlearned embeddings.

    `feature_spaces` {space: (original, unlearned)} adds a linear probe on other features of the same photos
    (e.g. "penultimate": the input of the final linear layer), reported as "probe_<space>".
    """
    from faceforget.eval.audits.probe import LinearProbeAudit

    _check_pair(original, unlearned)
    if audits is None:
        from faceforget.eval.audits import default_audits

        audits = default_audits(seed)
    table: dict[str, dict[str, AuditResult | float | None]] = {}
    for audit in audits:
        before, after = audit.run(original), audit.run(unlearned, reference=original)
        table[audit.name] = {"before": before, "after": after, "chance": after.chance}
    for space, (space_before, space_after) in (feature_spaces or {}).items():
        _check_pair(space_before, space_after)
        probe = LinearProbeAudit(seed=seed)
        before, after = probe.run(space_before), probe.run(space_after, reference=space_before)
        table[f"probe_{space}"] = {"before": before, "after": after, "chance": after.chance}
    return table


def _check_pair(original: AuditInputs, unlearned: AuditInputs) -> None:
    """The two models' inputs must hold the same photos in the same order."""
    if original.sets().keys() != unlearned.sets().keys():
        raise ValueError(f"original has sets {list(original.sets())}, unlearned has {list(unlearned.sets())}")
    for name, before in original.sets().items():
        if not np.array_equal(before.labels, unlearned.sets()[name].labels):
            raise ValueError(f"original and unlearned {name} must hold the same photos (labels, order)")
