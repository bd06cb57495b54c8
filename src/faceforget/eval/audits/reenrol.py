"""
Re-enrolment attack: enrol new photos of a forgotten person, then search the gallery with other photos.

Why: deleting a person's gallery rows does nothing once someone enrols a fresh photo of them; the attack
checks that the *model* no longer links held-out photos of a forgotten identity to each other. This is
the face-retrieval threat model of Zakharov, "Face Identity Unlearning for Retrieval via Embedding
Dispersion", arXiv 2512.13317 (no public reference code; this implementation is ours).

Per forget identity, its `forget_test` photos (never seen by the unlearning) are split, seeded, into an
enrol part and a query part. The gallery is `retain_test` + distractors + every identity's enrolments.
Top-k hits, mAP and their chance levels are `eval.metrics` (`rank_queries`, `chance_*`), so they mean
what the protocol's R@k and mAP mean. The rank of a query's first true match is 1 + the number of
other-identity items scoring above its best enrolment, ties broken uniformly at random in expectation
(as `rank_queries` does); it is counted `chunk_size` gallery items at a time, so no full ranking is
stored. Chance rank: (N+1)/(m+1) for m true matches among N gallery items. Deviation from the paper:
hits are reported at several k and the rank is added. Defaults: `enrol_fraction` 0.5 (halves),
`ks` (1, 5) as in the protocol, `chunk_size` a memory bound, not a tuned value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from faceforget.eval.audits.base import Audit, AuditInputs, AuditResult
from faceforget.eval.metrics import chance_average_precision, chance_recall_at_k, l2_normalise, rank_queries
from faceforget.seeding import numpy_rng


@dataclass(frozen=True)
class ReEnrolAudit(Audit):
    """Top-k hit rate and first-true-match rank of forget queries against re-enrolled forget photos."""

    name: ClassVar[str] = "reenrol"
    seed: int = 0
    enrol_fraction: float = 0.5
    ks: tuple[int, ...] = (1, 5)
    chunk_size: int = 512

    def compute(self, inputs: AuditInputs, reference: AuditInputs | None) -> AuditResult:
        """value: hit rate at `ks[0]`; per_item: rank of the first true match of each query."""
        test = inputs.forget_test
        rng = numpy_rng(self.seed, "reenrol")
        enrol = np.zeros(len(test), dtype=bool)
        for identity in np.unique(test.labels):
            idx = rng.permutation(np.flatnonzero(test.labels == identity))
            if len(idx) < 2:
                raise ValueError(f"re-enrolment needs 2+ forget_test photos per identity; {identity!r} has 1")
            enrol[idx[: int(np.clip(len(idx) * self.enrol_fraction, 1, len(idx) - 1))]] = True
        others = [s for s in (inputs.retain_test, inputs.distractors) if s is not None]
        gallery = np.concatenate([s.emb for s in others] + [test.emb[enrol]])
        gallery_labels = np.concatenate([s.labels for s in others] + [test.labels[enrol]])
        queries, query_labels = test.emb[~enrol], test.labels[~enrol]

        qm = rank_queries(queries, query_labels, gallery, gallery_labels,
                          ks=self.ks, chunk_size=self.chunk_size)
        q64, g64 = l2_normalise(queries.astype(np.float64)), l2_normalise(gallery.astype(np.float64))
        enrolled = g64[len(gallery) - int(enrol.sum()):]  # the enrolments are the gallery's last rows
        genuine = np.where(query_labels[:, None] == test.labels[enrol][None, :],
                           (q64 @ enrolled.T).astype(np.float32), -np.inf)
        best = genuine.max(axis=1, keepdims=True)
        tied_genuine = (genuine == best).sum(axis=1)
        above, tied = np.zeros(len(queries)), np.zeros(len(queries))
        for start in range(0, len(gallery), self.chunk_size):
            stop = start + self.chunk_size
            scores = (q64 @ g64[start:stop].T).astype(np.float32)
            impostor = query_labels[:, None] != gallery_labels[None, start:stop]
            above += ((scores > best) & impostor).sum(axis=1)
            tied += ((scores == best) & impostor).sum(axis=1)
        rank = above + (tied + tied_genuine + 1) / (tied_genuine + 1)  # expected under random tie-breaking

        n, m = qm.n_gallery, qm.n_relevant
        details = {"median_rank": float(np.median(rank)), "mean_rank": float(rank.mean()),
                   "chance_mean_rank": float(np.mean((n + 1) / (m + 1))), "mAP": float(qm.ap.mean()),
                   "chance_mAP": float(np.mean(chance_average_precision(n, m))),
                   "n_queries": float(len(queries)), "n_gallery": float(len(gallery))}
        for k in self.ks:
            details[f"top{k}"] = float(qm.hit_at[k].mean())
            details[f"chance_top{k}"] = float(np.mean(chance_recall_at_k(n, m, k)))
        k0 = self.ks[0]
        value, chance = details[f"top{k0}"], details[f"chance_top{k0}"]
        return AuditResult(self.name, value, chance, rank, query_labels, details)
