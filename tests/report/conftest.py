"""A generated run for the report tests: clustered identities before, dispersed forget identities after."""
from __future__ import annotations

import numpy as np
import pytest

from faceforget.api import audit_inputs
from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.audits import run_audits
from faceforget.eval.protocol import evaluate_embeddings, summary_scores
from faceforget.report.inputs import ReportInputs, report_data
from faceforget.report.tables import audit_summary

FORGET = ("amy", "<script>alert('x')</script>", "cost $5 | a_b")
RETAIN = tuple(f"r{i}" for i in range(8))
DISTRACTORS = tuple(f"d{i}" for i in range(5))
D = 16


def _manifest() -> SplitManifest:
    """3 train + 3 test photos per forget and retain identity, one photo per distractor."""
    records = []
    for kind, names in (("forget", FORGET), ("retain", RETAIN)):
        for name in names:
            for j in range(6):
                role = f"{kind}_{'train' if j < 3 else 'test'}"
                records.append(FaceRecord(f"{name}/{j}.jpg", name, role, f"{len(records):064x}"))
    records += [FaceRecord(f"{n}/0.jpg", n, "distractor", f"{len(records) + i:064x}", "distractors")
                for i, n in enumerate(DISTRACTORS)]
    return SplitManifest.from_records(records, {"seed": 3, "forget": len(FORGET)}, "/data", "/distractors")


@pytest.fixture(scope="session")
def report_fixture() -> tuple:
    """ReportInputs of a fake dispersion run with a malicious identity name among the forget identities."""
    rng = np.random.default_rng(0)
    manifest = _manifest()
    labels = [r.identity for r in manifest.records]
    centres = {n: rng.standard_normal(D) for n in dict.fromkeys(labels)}
    before = np.stack([centres[n] for n in labels]) + 0.4 * rng.standard_normal((len(labels), D))
    forget = np.array([r.role.startswith("forget") for r in manifest.records])
    after = before + 0.05 * rng.standard_normal(before.shape)
    after[forget] = rng.standard_normal((forget.sum(), D))
    original, unlearned = evaluate_embeddings(before, manifest), evaluate_embeddings(after, manifest)
    metrics = {"method": "dispersion", "split_hash": manifest.hash, "signature": "0123abcd", "seed": 0,
               "original": original, "unlearned": unlearned, "summary": summary_scores(original, unlearned),
               "timings": {"embed_original_s": 1.25, "train_s": 12.5, "total_s": 15.0}}
    config = {"config": {"method": "dispersion", "params": {"a": 1.0, "b": 0.5, "t": 2.0},
                         "engine": {"steps": 20, "lr": 1e-4}}, "model": "dlib", "signature": "0123abcd",
              "environment": {"python": "3.11", "torch": "2.x <cpu>"}}
    history = [{"unif": 1.0 / (s + 1), "hard": 0.5 - 0.01 * s, "keep": 0.01 * s, "total": 1.5 - 0.02 * s}
               for s in range(20)]
    raw_audits = run_audits(audit_inputs(before, manifest), audit_inputs(after, manifest), seed=0)
    other = {"label": "neggrad_plus (seed 0)", "method": "neggrad_plus", "forget_mAP": 0.3, "retain_mAP": 0.7,
             "original": (original["forget"]["mAP"], original["retain"]["mAP"]), "chance": 0.2}
    emb = before.astype(np.float32), after.astype(np.float32)
    inputs = ReportInputs(metrics, config, manifest, *emb, history, audit_summary(raw_audits), [other],
                          title="report <test>")
    return inputs, raw_audits


@pytest.fixture(scope="session")
def report_inputs(report_fixture: tuple) -> ReportInputs:
    """ReportInputs of a fake dispersion run (audits summarised as the run folder stores them)."""
    return report_fixture[0]


@pytest.fixture(scope="session")
def raw_audits(report_fixture: tuple) -> dict:
    """`run_audits`' output (AuditResult objects) behind `report_inputs.audits`."""
    return report_fixture[1]


@pytest.fixture(scope="session")
def report_run(report_inputs: ReportInputs) -> dict:
    """The report dict of `report_inputs` (figures rendered once per session)."""
    return report_data(report_inputs)


def _group(r1: float, mAP: float, n: int = 30) -> dict:
    return {"R@1": r1, "R@5": min(1.0, 2 * r1), "R@10": min(1.0, 3 * r1), "mAP": mAP, "mAP@R": mAP, "CS": 0.5,
            "n_queries": n, "chance": {"R@1": 0.05, "mAP": 0.04}}


def _audit(after: float, before: float, chance: float) -> dict:
    return {"before": before, "after": after, "chance": chance, "details_before": {}, "details_after": {}}


VERDICT_CASES = {
    # every value inside its bar (the bars' defaults: docs/report.md)
    "pass": {"forget": _group(0.08, 0.05), "forget_seen": _group(0.03, 0.02), "retain": _group(0.955, 0.91),
             "audits": {"reenrol": _audit(0.06, 0.95, 0.02), "probe": _audit(0.25, 1.0, 0.15),
                        "threshold": _audit(0.01, 0.97, 0.001), "mia": _audit(0.55, 0.50, 0.5)},
             "gallery_after": 0.07},
    # the demo report of issue 9: forgetting half done, the identity still recoverable
    "fail": {"forget": _group(0.557, 0.261), "forget_seen": _group(0.337, 0.2), "retain": _group(0.945, 0.894),
             "audits": {"reenrol": _audit(0.25, 0.95, 0.02), "probe": _audit(0.714, 1.0, 0.171),
                        "threshold": _audit(0.02, 0.97, 0.001), "mia": _audit(0.157, 0.564, 0.5)},
             "gallery_after": 0.557},
}


@pytest.fixture
def verdict_inputs() -> callable:
    """Factory: ReportInputs of a run whose checks all pass ("pass") or mostly fail ("fail"), hand-made numbers."""
    def make(case: str, *, audits: bool = True, gallery: bool = True, history: tuple = ()) -> ReportInputs:
        c = VERDICT_CASES[case]
        original = {"forget": _group(0.977, 0.909), "forget_seen": _group(1.0, 0.99), "retain": _group(0.961, 0.930)}
        unlearned = {g: c[g] for g in ("forget", "forget_seen", "retain")}
        metrics = {"method": "dispersion", "split_hash": "ab" * 32, "signature": "0123abcd", "seed": 0,
                   "original": original, "unlearned": unlearned, "summary": summary_scores(original, unlearned),
                   "timings": {"embed_original_s": 2.0, "train_s": 5.5, "total_s": 7.5}}
        check = {"before": {"forget_top1_same_identity": 0.986},
                 "after": {"forget_top1_same_identity": c["gallery_after"]}}
        return ReportInputs(metrics, history=list(history), audits=c["audits"] if audits else None,
                            gallery=check if gallery else None, title=f"{case} case")
    return make
