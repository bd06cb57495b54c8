"""
What a report shows: `ReportInputs` (a run's raw outputs) and `report_data`, the dict every format reads.

The report dict (JSON-ready except "figures"):
    title        str
    run          {"method", "model", "model_sha256", "config_hash", "signature", "seed", "split_seed"}
    params       the resolved config flattened to dotted keys ({"engine.lr": 1e-4, ...})
    split        {"hash", "counts": {role: {"images", "identities"}}, "forget_identities": [names]}
    metrics      {"original": groups, "unlearned": groups} as `eval.protocol.evaluate_embeddings` returns
    summary      {"E", "U", "H"}
    verdict      `eval.verdict.Verdict.as_dict()`: status, headline, thresholds, checks (first in every format)
    audits       {name: {"before", "after", "chance", "details_before", "details_after"}} (may be empty)
    gallery      {"before", "after"} of the gallery check, or None
    glossary     rows [term, kind, what it is, better, chance] of `report.glossary`
    points       trade-off points (`plots.tradeoff_point`): this run's first, then `ReportInputs.points`
    timings      {stage: seconds};  environment  {key: value}
    figures      {"tradeoff" | "similarity" | "projection" | "loss": PNG bytes}, those that apply
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforget.config import VerdictConfig
from faceforget.data.records import ROLES, SplitManifest
from faceforget.eval.verdict import judge, thresholds_of
from faceforget.fileio import canonical_json, sha256_bytes
from faceforget.report import plots
from faceforget.report.glossary import glossary_rows
from faceforget.report.tables import flatten
from faceforget.runs import RunFolder

HELD_OUT = ("forget_test", "retain_test")
FIGURE_CAPTIONS = {
    "tradeoff": "Forgetting / utility trade-off: forget mAP (lower is better) against retain mAP after "
                "unlearning, one point per run; the star is the original model, the dashed line chance.",
    "similarity": "Cosine similarity of genuine (same identity) and impostor pairs of held-out photos, "
                  "for forget and retain identities, before and after unlearning.",
    "projection": "Held-out embeddings projected on the original model's first two principal components: "
                  "forget identities in colour, retain identities in grey.",
    "loss": "Unlearning loss terms per optimiser step.",
}


@dataclass
class ReportInputs:
    """
    A run's outputs: metrics.json, config.json, the split, embeddings aligned with its records, and extras.

    `audits` is `report.tables.audit_summary` of `eval.audits.run_audits`' output; `points` are other
    runs' trade-off points (other methods or seeds, from `plots.tradeoff_point`); the trade-off plot is
    drawn when there is more than one point. `gallery` is the gallery check ({"before", "after"}); the
    verdict's thresholds are config.json's `config.verdict` (defaults when absent).
    """

    metrics: dict
    config: dict = field(default_factory=dict)
    manifest: SplitManifest | None = None
    embeddings_original: np.ndarray | None = None
    embeddings_unlearned: np.ndarray | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    audits: dict | None = None
    points: list[dict] = field(default_factory=list)
    title: str = "faceforget report"
    gallery: dict | None = None

    @classmethod
    def from_run_folder(cls, root: str | Path, manifest: SplitManifest | None = None,
                        audits: dict | None = None, points: Sequence[dict] = (),
                        gallery: dict | None = None) -> ReportInputs:
        """Read a run folder written by `api.unlearn` (metrics, config, history, embeddings when present)."""
        run = RunFolder(Path(root))
        config = json.loads(run.config.read_text()) if run.config.is_file() else {}
        history = json.loads(run.history.read_text()) if run.history.is_file() else []
        emb = [np.load(path, allow_pickle=False) if path.is_file() else None
               for path in (run.embeddings_original, run.embeddings_unlearned)]
        return cls(run.read_metrics(), config, manifest, *emb, history, audits, list(points), gallery=gallery)

    @property
    def thresholds(self) -> VerdictConfig:
        """The verdict's bars as the run's config recorded them (defaults when it has none)."""
        return thresholds_of(self.config)


def _split(manifest: SplitManifest | None, split_hash: str | None) -> dict:
    if manifest is None:
        return {"hash": split_hash, "counts": {}, "forget_identities": []}
    if split_hash is not None and manifest.hash != split_hash:
        raise ValueError(f"the manifest (hash {manifest.hash[:12]}) is not the run's ({split_hash[:12]})")
    counts = {role: {"images": len(recs), "identities": len({r.identity for r in recs})}
              for role in ROLES if (recs := manifest.by_role(role))}
    return {"hash": manifest.hash, "counts": counts, "forget_identities": manifest.forget_identities}


def _figures(inputs: ReportInputs, points: list[dict], seed: int) -> dict[str, bytes]:
    figures = {}
    if len(points) > 1:
        figures["tradeoff"] = plots.tradeoff_scatter(points)
    have_emb = inputs.embeddings_original is not None and inputs.embeddings_unlearned is not None
    if inputs.manifest is not None and have_emb:
        records = inputs.manifest.records
        for emb in (inputs.embeddings_original, inputs.embeddings_unlearned):
            if len(emb) != len(records):
                raise ValueError(f"{len(emb)} embeddings for {len(records)} manifest records")
        held_out = np.array([r.role in HELD_OUT for r in records])
        labels = np.array([r.identity for r in records])[held_out]
        forget = np.array([r.role == "forget_test" for r in records])[held_out]
        before, after = inputs.embeddings_original[held_out], inputs.embeddings_unlearned[held_out]
        figures["similarity"] = plots.similarity_histograms(before, after, labels, forget, seed=seed)
        figures["projection"] = plots.projection_2d(before, after, labels, forget, seed=seed)
    if inputs.history:
        figures["loss"] = plots.loss_curves(inputs.history)
    return {name: plots.figure_to_png_bytes(fig) for name, fig in figures.items()}


def report_data(inputs: ReportInputs, seed: int = 0) -> dict:
    """The report dict (layout in the module docstring); `seed` drives the plots' subsampling."""
    m, resolved = inputs.metrics, inputs.config.get("config", {})
    points = [plots.tradeoff_point(m), *inputs.points]
    split_seed = inputs.manifest.params.get("seed") if inputs.manifest is not None else None
    return {
        "title": inputs.title,
        "run": {"method": m.get("method"), "model": inputs.config.get("model"), "model_sha256": m.get("model_sha256"),
                "config_hash": sha256_bytes(canonical_json(resolved).encode())[:16] if resolved else None,
                "signature": m.get("signature"), "seed": m.get("seed"), "split_seed": split_seed},
        "params": flatten(resolved),
        "split": _split(inputs.manifest, m.get("split_hash")),
        "metrics": {"original": m["original"], "unlearned": m["unlearned"]},
        "summary": m["summary"],
        "verdict": judge(m, inputs.audits, inputs.gallery, inputs.thresholds).as_dict(),
        "audits": dict(inputs.audits or {}),
        "gallery": inputs.gallery,
        "glossary": glossary_rows(inputs.audits or {}, dict.fromkeys(k for r in inputs.history for k in r)),
        "points": points,
        "timings": m.get("timings", {}),
        "environment": inputs.config.get("environment", {}),
        "figures": _figures(inputs, points, seed),
    }
