"""
Audits: attacks on the forgetting, run on the original and the unlearned model's embeddings.

- `ReEnrolAudit` (reenrol.py): enrol held-out photos of a forgotten person, search with the others.
- `LinearProbeAudit` (probe.py): train a linear classifier on forget_train, test on forget_test.
- `ThresholdAudit` (threshold.py): genuine forget pairs accepted at the original FAR=1e-3 threshold.
- `MembershipInferenceAudit` (mia.py): tell the photos the unlearning saw from held-out ones.
"""
from collections.abc import Mapping

import numpy as np

from faceforget.data.records import SplitManifest
from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult, EmbeddingSet, run_audits
from faceforget.eval.audits.mia import MembershipInferenceAudit
from faceforget.eval.audits.probe import LinearProbeAudit
from faceforget.eval.audits.reenrol import ReEnrolAudit
from faceforget.eval.audits.threshold import ThresholdAudit


def audit_embeddings(manifest: SplitManifest, before: np.ndarray, after: np.ndarray, seed: int,
                     features_before: Mapping[str, np.ndarray] | None = None,
                     features_after: Mapping[str, np.ndarray] | None = None) -> dict:
    """
    The audits.json dict of one unlearned model: every audit before/after, plus a probe per feature space.

    Arrays are aligned with `manifest.records`; `features_*` {space: array} are optional deeper features of
    both models (docs/audits.md, "Probes below the output").
    """
    from faceforget.report.tables import audit_summary

    roles = [r.role for r in manifest.records]
    labels = [r.identity for r in manifest.records]

    def inputs(values: np.ndarray) -> AuditInputs:
        return AuditInputs.from_records(values, roles, labels)

    after_f = features_after or {}
    spaces = {space: (inputs(v), inputs(after_f[space])) for space, v in (features_before or {}).items()}
    table = run_audits(inputs(before), inputs(after), seed, feature_spaces=spaces)
    return {"split_hash": manifest.hash, "seed": seed, "audits": audit_summary(table)}


def default_audits(seed: int) -> list[Audit]:
    """The four audits with their default params; `seed` drives the random ones."""
    return [
        ReEnrolAudit(seed=seed), LinearProbeAudit(seed=seed), ThresholdAudit(), MembershipInferenceAudit()
    ]


__all__ = [
    "Audit", "AuditInputs", "AuditResult", "EmbeddingSet", "LinearProbeAudit", "MembershipInferenceAudit",
    "ReEnrolAudit", "ThresholdAudit", "audit_embeddings", "default_audits", "run_audits",
]
