"""
Embedding-space membership inference: tell the photos the unlearning saw from held-out ones.

Why: a forgetting that holds only for the forget-set photos themselves (it scrambles what it was shown)
leaves those photos anomalous, which both reveals who was forgotten and says the identity itself was not.
After Shokri et al., "Membership Inference Attacks against Machine Learning Models", arXiv 1610.05820;
deviations: no shadow models and no classifier outputs; the attack score is computed in embedding space.

Each forget photo's score is the cosine between it and the normalised leave-one-out centroid of all other
photos (train and test) of the same identity; the ROC AUC separates `forget_train` (members, score as
positive) from `forget_test` (non-members). Chance is 0.5. Reading it: AUC > 0.5, the seen photos sit
closer to their identity than unseen ones (memorised, or the unseen ones were dispersed more); AUC < 0.5,
the seen photos were pushed away more than unseen ones (only the shown photos were scrambled). Either
direction leaks membership; the leak grows with |AUC - 0.5|. The original model, which never trained on
the split, should score ~0.5. No tunable defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.metrics import roc_auc_score

from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult
from faceforget.eval.metrics import l2_normalise


@dataclass(frozen=True)
class MembershipInferenceAudit(Audit):
    """AUC of telling forget_train (members) from forget_test photos by a leave-one-out centroid cosine."""

    name: ClassVar[str] = "mia"

    def compute(self, inputs: AuditInputs, reference: AuditInputs | None) -> AuditResult:
        """value: pooled AUC; per_item: each forget photo's score (forget_train rows, then forget_test)."""
        emb = np.concatenate([inputs.forget_train.emb, inputs.forget_test.emb]).astype(np.float64)
        labels = np.concatenate([inputs.forget_train.labels, inputs.forget_test.labels])
        member = np.arange(len(emb)) < len(inputs.forget_train)
        identities, inverse = np.unique(labels, return_inverse=True)
        sums = np.zeros((len(identities), emb.shape[1]))
        np.add.at(sums, inverse, emb)
        score = np.sum(emb * l2_normalise(sums[inverse] - emb), axis=1)
        per_identity = [roc_auc_score(member[inverse == i], score[inverse == i]) for i in range(len(sums))]
        details = {"member_mean_score": float(score[member].mean()),
                   "nonmember_mean_score": float(score[~member].mean()),
                   "mean_identity_auc": float(np.mean(per_identity)),
                   "n_members": float(member.sum()), "n_nonmembers": float((~member).sum())}
        return AuditResult(self.name, float(roc_auc_score(member, score)), 0.5, score, labels, details)
