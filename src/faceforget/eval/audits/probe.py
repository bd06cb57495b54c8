"""
Linear-probe recovery: whether a linear map still reads the forgotten identities out of the embedding.

Why: dispersion may destroy the nearest-neighbour structure a gallery relies on while the identity stays
linearly decodable; an attacker with a few labelled photos of each person can then train a classifier on
top of the unlearned model. Linear probes: Alain & Bengio, "Understanding intermediate layers using linear
classifier probes", arXiv 1610.01644 (we probe the output embedding only, not intermediate layers).

A multinomial logistic regression (scikit-learn, after per-feature standardisation) is fitted on the
forget identities' `forget_train` embeddings and scored on their held-out `forget_test` embeddings.
Chance: the test accuracy of always predicting the most frequent training identity (1/K when balanced).
With fewer than two forget identities there is nothing to discriminate: value is NaN and chance 1.
Defaults: `C` 1.0 is scikit-learn's; `max_iter` 1000 (scikit-learn's 100 often stops before convergence
on high-dimensional embeddings); `seed` feeds `random_state`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult


@dataclass(frozen=True)
class LinearProbeAudit(Audit):
    """Held-out accuracy of a linear classifier trained to recognise the forget identities."""

    name: ClassVar[str] = "probe"
    seed: int = 0
    C: float = 1.0
    max_iter: int = 1000

    def compute(self, inputs: AuditInputs, reference: AuditInputs | None) -> AuditResult:
        """value: probe accuracy on forget_test; per_item: 1.0 where a test photo is identified, else 0.0."""
        train, test = inputs.forget_train, inputs.forget_test
        classes, counts = np.unique(train.labels, return_counts=True)
        details = {"n_classes": float(len(classes)), "n_train": float(len(train)), "n_test": float(len(test))}
        if len(classes) < 2:
            return AuditResult(self.name, float("nan"), 1.0, np.full(len(test), np.nan), test.labels, details)
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        )
        probe.fit(train.emb, train.labels)
        correct = (probe.predict(test.emb) == test.labels).astype(np.float64)
        details["train_accuracy"] = float(probe.score(train.emb, train.labels))
        details["uniform_chance"] = 1.0 / len(classes)
        chance = float(np.mean(test.labels == classes[np.argmax(counts)]))
        return AuditResult(self.name, float(correct.mean()), chance, correct, test.labels, details)
