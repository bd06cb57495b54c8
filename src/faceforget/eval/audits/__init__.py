"""
Audits: attacks on the forgetting, run on the original and the unlearned model's embeddings.

- `ReEnrolAudit` (reenrol.py): enrol held-out photos of a forgotten person, search with the others.
- `LinearProbeAudit` (probe.py): train a linear classifier on forget_train, test on forget_test;
  `WhitenedProbeAudit` the same after whitening the space with the retain photos' covariance.
- `ThresholdAudit` (threshold.py): genuine forget pairs accepted at the original FAR=1e-3 threshold.
- `MembershipInferenceAudit` (mia.py): tell the photos the unlearning saw from held-out ones.
`audit_embeddings` (summary.py) runs them on a split's before/after embeddings into the audits.json document.
What each measures, its chance level and direction: docs/audits.md.
"""
from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult, EmbeddingSet, run_audits
from faceforget.eval.audits.mia import MembershipInferenceAudit
from faceforget.eval.audits.probe import LinearProbeAudit, WhitenedProbeAudit
from faceforget.eval.audits.reenrol import ReEnrolAudit
from faceforget.eval.audits.summary import audit_embeddings, audit_inputs, summarise_audits
from faceforget.eval.audits.threshold import ThresholdAudit


def default_audits(seed: int) -> list[Audit]:
    """The five audits with their default params; `seed` drives the random ones."""
    return [
        ReEnrolAudit(seed=seed), LinearProbeAudit(seed=seed), WhitenedProbeAudit(seed=seed), ThresholdAudit(),
        MembershipInferenceAudit()
    ]


__all__ = [
    "Audit", "AuditInputs", "AuditResult", "EmbeddingSet", "LinearProbeAudit", "MembershipInferenceAudit",
    "ReEnrolAudit", "ThresholdAudit", "WhitenedProbeAudit", "audit_embeddings", "audit_inputs", "default_audits",
    "run_audits", "summarise_audits",
]
