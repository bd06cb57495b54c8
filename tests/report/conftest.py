"""A generated run for the report tests: clustered identities before, dispersed forget identities after."""
from __future__ import annotations

import numpy as np
import pytest

from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.audits import audit_inputs, run_audits, summarise_audits
from faceforget.eval.protocol import evaluate_embeddings, summary_scores
from faceforget.report.inputs import ReportInputs, report_data

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
    inputs = ReportInputs(metrics, config, manifest, *emb, history, summarise_audits(raw_audits), [other],
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
