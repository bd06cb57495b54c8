"""
Verification threshold attack: whether a deployed 1:1 verifier still accepts a forgotten person's pairs.

Why: a face-verification service keeps the threshold it calibrated on the original model. If genuine pairs
of a forgotten identity still score above it after unlearning, the person remains verifiable (and
linkable) even when retrieval rankings look scrambled. Threat model of Zakharov, "Face Identity Unlearning
for Retrieval via Embedding Dispersion", arXiv 2512.13317 (no public reference code; ours).

The threshold is the ORIGINAL model's at `far` on impostor pairs of `retain_test` (`reference`, or the
inputs themselves when no reference is given), by `eval.verification.tar_at_far`: a pair is accepted when its
cosine is strictly above it. Reported: the fraction of genuine forget pairs accepted (pairs of one forget
identity within forget_test, and forget_train x forget_test), per identity and pooled, plus for context
the retain TAR and the retain FAR at the same threshold, and the acceptance at the model's own threshold
(an attacker who recalibrates on known people: it differs where the unlearned model's scores shifted).
Chance is `far`: a model that ignores identity scores genuine pairs like impostors. Defaults: `far` 1e-3
as the protocol's TAR@FAR=1e-3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult
from faceforget.eval.metrics import l2_normalise
from faceforget.eval.verification import accept_rate, pair_scores, tar_at_far


@dataclass(frozen=True)
class ThresholdAudit(Audit):
    """Fraction of genuine forget pairs accepted at the original model's FAR threshold."""

    name: ClassVar[str] = "threshold"
    far: float = 1e-3

    def compute(self, inputs: AuditInputs, reference: AuditInputs | None) -> AuditResult:
        """value: pooled acceptance of genuine forget pairs; per_item: acceptance per forget identity."""
        retain_genuine, retain_impostor = pair_scores(inputs.retain_test.emb, inputs.retain_test.labels)
        calibration = retain_impostor if reference is None else pair_scores(
            reference.retain_test.emb, reference.retain_test.labels)[1]
        threshold = tar_at_far(retain_genuine, calibration, self.far)[1]

        train, test = inputs.forget_train, inputs.forget_test
        identities = np.unique(test.labels)
        within, across = [], []
        for identity in identities:
            t = test.emb[test.labels == identity]
            f = l2_normalise(train.emb[train.labels == identity].astype(np.float64))
            within.append(pair_scores(t, np.zeros(len(t)))[0])  # one label: every pair is genuine
            across.append((f @ l2_normalise(t.astype(np.float64)).T).astype(np.float32).ravel())
        pairs = [np.concatenate(p) for p in zip(within, across, strict=True)]
        per_identity = np.array([accept_rate(p, threshold) for p in pairs])
        pooled = np.concatenate(pairs)
        details = {"threshold": threshold, "n_pairs": float(pooled.size),
                   "test_pairs_accepted": accept_rate(np.concatenate(within), threshold),
                   "train_test_pairs_accepted": accept_rate(np.concatenate(across), threshold),
                   "retain_tar": accept_rate(retain_genuine, threshold),
                   "retain_far": accept_rate(retain_impostor, threshold),
                   # an attacker who recalibrates on the model itself (its own retain impostors at `far`)
                   "accepted_at_own_threshold": accept_rate(pooled, tar_at_far(retain_genuine, retain_impostor,
                                                                               self.far)[1])}
        value = accept_rate(pooled, threshold)
        return AuditResult(self.name, value, self.far, per_identity, identities, details)
