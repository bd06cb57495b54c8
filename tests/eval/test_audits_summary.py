"""audits.json from a split's before/after embeddings: role grouping, the values of each audit, strict JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.audits import (
    LinearProbeAudit,
    MembershipInferenceAudit,
    ReEnrolAudit,
    ThresholdAudit,
    WhitenedProbeAudit,
    audit_embeddings,
    audit_inputs,
)

D = 8


def _split(rng: np.random.Generator) -> tuple[SplitManifest, np.ndarray]:
    """3 forget ids (photos 0-7: even train, odd test), 6 retain ids (0-1 train, 2-4 test), 5 distractors."""
    centres = {name: rng.standard_normal(D) for name in [f"f{i}" for i in range(3)] + [f"r{i}" for i in range(6)]}
    records, emb = [], []
    for j in range(8):  # photo j of every identity in turn, so the roles alternate through the manifest
        for name, centre in centres.items():
            if name.startswith("f"):
                role = "forget_train" if j % 2 == 0 else "forget_test"
            elif j < 5:
                role = "retain_train" if j < 2 else "retain_test"
            else:
                continue
            records.append(FaceRecord(f"{name}/{j}.jpg", name, role, f"{len(records):064x}"))
            emb.append(centre + 0.1 * rng.standard_normal(D))
    for i in range(5):
        records.append(FaceRecord(f"d{i}/0.jpg", f"d{i}", "distractor", f"{len(records):064x}", "distractors"))
        emb.append(rng.standard_normal(D))
    return SplitManifest.from_records(records, {"seed": 0}, "/data", "/distractors"), np.array(emb, np.float32)


@pytest.fixture(scope="module")
def split() -> tuple[SplitManifest, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    manifest, before = _split(rng)
    forget = np.array([r.role.startswith("forget") for r in manifest.records])
    after = before.copy()
    after[forget] = rng.standard_normal((forget.sum(), D))  # forget photos scattered, the rest unchanged
    return manifest, before, after


def test_audit_inputs_group_rows_by_role_in_manifest_order(split) -> None:
    manifest, before, _ = split
    inputs = audit_inputs(before, manifest)
    for name, role in (("forget_train", "forget_train"), ("forget_test", "forget_test"),
                       ("retain_test", "retain_test"), ("distractors", "distractor")):
        rows = [i for i, r in enumerate(manifest.records) if r.role == role]
        got = inputs.sets()[name]
        assert list(got.labels) == [manifest.records[i].identity for i in rows]
        assert got.paths == tuple(manifest.records[i].path for i in rows)
        expected = before[rows] / np.linalg.norm(before[rows], axis=1, keepdims=True)
        np.testing.assert_allclose(got.emb, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="embeddings for"):
        audit_inputs(before[:-1], manifest)


def test_audit_embeddings_holds_each_audit_run_on_both_models(split) -> None:
    manifest, before, after = split
    doc = audit_embeddings(manifest, before, after, seed=3)
    assert (doc["split_hash"], doc["seed"]) == (manifest.hash, 3)
    inputs_before, inputs_after = audit_inputs(before, manifest), audit_inputs(after, manifest)
    audits = {"reenrol": ReEnrolAudit(seed=3), "probe": LinearProbeAudit(seed=3),
              "probe_whitened": WhitenedProbeAudit(seed=3), "threshold": ThresholdAudit(),
              "mia": MembershipInferenceAudit()}
    assert set(doc["audits"]) == set(audits)
    for name, audit in audits.items():
        entry, b = doc["audits"][name], audit.run(inputs_before)
        a = audit.run(inputs_after, reference=inputs_before)
        assert (entry["before"], entry["after"], entry["chance"]) == (b.value, a.value, a.chance), name
        assert entry["details_before"] == b.details and entry["details_after"] == a.details
    assert doc["audits"]["reenrol"]["before"] == 1.0  # tight clusters: every held-out photo finds its enrolment
    assert doc["audits"]["threshold"]["chance"] == pytest.approx(1e-3)
    json.dumps(doc, allow_nan=False)  # plain floats only
