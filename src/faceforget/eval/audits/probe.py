"""
Linear-probe recovery: whether a linear map still reads the forgotten identities out of the embedding.

Why: dispersion may destroy the nearest-neighbour structure a gallery relies on while the identity stays
linearly decodable; an attacker with a few labelled photos of each person can then train a classifier on
top of the unlearned model. Linear probes: Alain & Bengio, "Understanding intermediate layers using linear
classifier probes", arXiv 1610.01644 (we probe the output embedding only, not intermediate layers).

A multinomial logistic regression (scikit-learn, after per-feature standardisation) is fitted on the
forget identities' `forget_train` embeddings and scored on their held-out `forget_test` embeddings.
`WhitenedProbeAudit` ("probe_whitened") first whitens the space with the retain photos' covariance.
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

    def features(self, inputs: AuditInputs) -> tuple[np.ndarray, np.ndarray]:
        """(forget_train, forget_test) rows the classifier sees: the embeddings as they are."""
        return inputs.forget_train.emb, inputs.forget_test.emb

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
        x_train, x_test = self.features(inputs)
        probe.fit(x_train, train.labels)
        correct = (probe.predict(x_test) == test.labels).astype(np.float64)
        details["train_accuracy"] = float(probe.score(x_train, train.labels))
        details["uniform_chance"] = 1.0 / len(classes)
        chance = float(np.mean(test.labels == classes[np.argmax(counts)]))
        return AuditResult(self.name, float(correct.mean()), chance, correct, test.labels, details)


@dataclass(frozen=True)
class WhitenedProbeAudit(LinearProbeAudit):
    """
    The linear probe after whitening the space with the retain photos' covariance (the crowd anyone can collect).

    Why: per-feature standardisation and the probe's L2 penalty overlook an identity kept in directions where
    the embeddings barely vary; whitening gives every direction the population's unit spread, so no direction
    hides it (still a linear attack). `ridge` floors the eigenvalues at that share of their mean.
    The coordinates are the principal axes on purpose: the probe standardises each coordinate, so the basis
    is part of the attack, and the symmetric (ZCA) whitening of unlearn/target_map.py probes weaker (seed 7,
    trained default: 0.68 against 0.91).
    """

    name: ClassVar[str] = "probe_whitened"
    ridge: float = 1e-3

    def features(self, inputs: AuditInputs) -> tuple[np.ndarray, np.ndarray]:
        """forget_train and forget_test, centred on the retain mean and whitened by the retain covariance."""
        population = inputs.retain_test.emb.astype(np.float64)
        centre = population.mean(0)
        values, vectors = np.linalg.eigh(np.cov(population - centre, rowvar=False).reshape(centre.size, -1))
        transform = vectors / np.sqrt(np.maximum(values, 0) + self.ridge * max(float(values.mean()), 1e-12))
        return tuple((s.emb.astype(np.float64) - centre) @ transform for s in (inputs.forget_train, inputs.forget_test))
