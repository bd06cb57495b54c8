"""
The audits of one split before and after unlearning, as plain data: what `faceforget audit` writes.

`audit_inputs` groups one model's embeddings (aligned with the manifest's records) by protocol role;
`audits_json` runs every audit on both models and returns the audits.json document, whose layout is
in docs/run_folder.md#auditsjson and docs/audits.md.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from faceforget.data.records import SplitManifest
from faceforget.eval.audits.base import AuditInputs, AuditResult, EmbeddingSet, run_audits


def audit_inputs(embeddings: np.ndarray, manifest: SplitManifest) -> AuditInputs:
    """The audits' view of one model: embeddings (aligned with manifest.records) grouped by role."""
    if len(embeddings) != len(manifest.records):
        raise ValueError(f"{len(embeddings)} embeddings for {len(manifest.records)} manifest records")
    roles = np.array([r.role for r in manifest.records])
    labels = np.array([r.identity for r in manifest.records])
    paths = np.array([r.path for r in manifest.records])

    def role(name: str) -> EmbeddingSet:
        sel = roles == name
        return EmbeddingSet(embeddings[sel], labels[sel], tuple(paths[sel]))

    distractors = role("distractor") if (roles == "distractor").any() else None
    return AuditInputs(role("forget_train"), role("forget_test"), role("retain_test"), distractors)


def summarise_audits(table: Mapping[str, Mapping[str, AuditResult | float | None]]) -> dict[str, dict]:
    """`run_audits`' {name: {before, after, chance}} with each AuditResult reduced to its value and details."""
    out = {}
    for name, entry in table.items():
        before, after, chance = entry["before"], entry["after"], entry["chance"]
        out[name] = {"before": float(before.value), "after": float(after.value),
                     "chance": None if chance is None else float(chance),
                     "details_before": {k: float(v) for k, v in before.details.items()},
                     "details_after": {k: float(v) for k, v in after.details.items()}}
    return out


def audits_json(embeddings_before: np.ndarray, embeddings_after: np.ndarray, manifest: SplitManifest,
                seed: int) -> dict:
    """The audits.json document: {"split_hash", "seed", "audits": `summarise_audits` of every audit}."""
    table = run_audits(audit_inputs(embeddings_before, manifest), audit_inputs(embeddings_after, manifest), seed)
    return {"split_hash": manifest.hash, "seed": seed, "audits": summarise_audits(table)}
