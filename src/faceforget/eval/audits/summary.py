"""
The audits of one split before and after unlearning, as plain data: what audits.json holds.

`audit_inputs` groups one model's embeddings (aligned with the manifest's records) by protocol role;
`audit_embeddings` runs every audit on both models (plus a probe per deeper feature space) and returns
the audits.json document, whose layout is in docs/run_folder.md#auditsjson and docs/audits.md.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from faceforget.data.records import SplitManifest
from faceforget.eval.audits.base import AuditInputs, AuditResult, run_audits


def audit_inputs(embeddings: np.ndarray, manifest: SplitManifest) -> AuditInputs:
    """The audits' view of one model: embeddings (aligned with manifest.records) grouped by role."""
    if len(embeddings) != len(manifest.records):
        raise ValueError(f"{len(embeddings)} embeddings for {len(manifest.records)} manifest records")
    records = manifest.records
    return AuditInputs.from_records(embeddings, [r.role for r in records], [r.identity for r in records],
                                    [r.path for r in records])


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


def audit_embeddings(manifest: SplitManifest, before: np.ndarray, after: np.ndarray, seed: int,
                     features_before: Mapping[str, np.ndarray] | None = None,
                     features_after: Mapping[str, np.ndarray] | None = None) -> dict:
    """
    The audits.json document: {"split_hash", "seed", "audits": `summarise_audits` of every audit}.

    Arrays are aligned with `manifest.records`; `features_*` {space: array} are optional deeper features of
    both models, each audited by a linear probe "probe_<space>" (docs/audits.md, "Probes below the output").
    """
    after_f = features_after or {}
    spaces = {space: (audit_inputs(v, manifest), audit_inputs(after_f[space], manifest))
              for space, v in (features_before or {}).items()}
    table = run_audits(audit_inputs(before, manifest), audit_inputs(after, manifest), seed, feature_spaces=spaces)
    return {"split_hash": manifest.hash, "seed": seed, "audits": summarise_audits(table)}
