"""The verdict: each check against its bar on hand-made inputs; missing or NaN inputs are never a pass."""
import pytest

from faceforget.config import VerdictConfig, validate_config
from faceforget.eval.verdict import FAIL, NOT_MEASURED, PASS, judge


def group(r1, mAP, chance_r1=0.05, chance_map=0.04, n=40):
    return {"R@1": r1, "mAP": mAP, "n_queries": n, "chance": {"R@1": chance_r1, "mAP": chance_map}}


def metrics(forget=(0.10, 0.05), seen=(0.05, 0.02), retain=(0.95, 0.90), lookalike=None):
    out = {"original": {"forget": group(0.98, 0.91), "forget_seen": group(1.0, 0.99), "retain": group(0.96, 0.92)},
           "unlearned": {"forget": group(*forget), "forget_seen": group(*seen), "retain": group(*retain)}}
    if lookalike is not None:
        out["original"]["lookalike"] = group(0.90, 0.80)
        out["unlearned"]["lookalike"] = group(*lookalike)
    return out


def audit(after, before, chance):
    return {"after": after, "before": before, "chance": chance, "details_before": {}, "details_after": {}}


AUDITS = {"reenrol": audit(0.10, 0.95, 0.02), "probe": audit(0.30, 1.0, 0.15),
          "threshold": audit(0.05, 0.97, 0.001), "mia": audit(0.40, 0.51, 0.5)}
GALLERY = {"before": {"forget_top1_same_identity": 0.986}, "after": {"forget_top1_same_identity": 0.10}}


def by_key(verdict):
    return {c.key: c for c in verdict.checks}


def test_values_on_the_bar_pass_and_every_row_is_there():
    v = judge(metrics(), AUDITS, GALLERY)
    checks = by_key(v)
    assert list(checks) == ["forget_r1", "forget_map", "seen_forget_r1", "reenrol", "probe", "threshold", "mia",
                            "retain_map", "retain_r1_drop", "gallery_top1"]
    # retain mAP 0.90 / 0.92 = 0.978 >= 0.97; R@1 drop 0.96 - 0.95 = 0.01 <= 0.01; probe 0.30 = 2 x 0.15
    assert all(c.status == PASS for c in v.checks), [(c.key, c.status) for c in v.checks]
    assert v.status == "pass" and v.headline == "PASS: all 10 checks pass." and v.failed == []
    assert checks["retain_map"].value == pytest.approx(0.90 / 0.92)
    assert checks["retain_map"].shown == "0.978 × (0.900 vs 0.920)"
    assert checks["retain_r1_drop"].shown == "0.010 (0.960 → 0.950)"
    assert checks["probe"].bar == "≤ 2 × chance = 0.300"
    assert checks["mia"].shown == "0.100 (AUC 0.400)" and checks["mia"].original == "0.010 (AUC 0.510)"
    assert checks["forget_r1"].original == "0.980" and checks["gallery_top1"].original == "0.986"


def test_failing_values_and_their_sentences():
    audits = {**AUDITS, "probe": audit(0.714, 1.0, 0.171), "mia": audit(0.157, 0.564, 0.5),
              "reenrol": audit(0.25, 0.95, 0.02)}
    v = judge(metrics(forget=(0.557, 0.261), seen=(0.337, 0.2), retain=(0.945, 0.85)), audits,
              {"after": {"forget_top1_same_identity": 0.557}})
    checks = by_key(v)
    failing = {"forget_r1", "forget_map", "seen_forget_r1", "reenrol", "probe", "mia", "retain_map",
               "retain_r1_drop", "gallery_top1"}
    assert {c.key for c in v.failed} == failing and checks["threshold"].status == PASS
    assert v.status == "fail" and v.headline.startswith("FAIL: 9 of 10 measured checks fail (held-out forget R@1, ")
    assert checks["forget_r1"].meaning == ("55.7 % of new photos of a forgotten person (never shown to the "
                                           "unlearning) still find that person first in a search; chance is 5.0 %.")
    assert "71.4 % of their new photos; guessing gives 17.1 %" in checks["probe"].meaning
    # an AUC far below 0.5 leaks membership as much as one far above
    assert checks["mia"].value == pytest.approx(0.343) and checks["mia"].shown == "0.343 (AUC 0.157)"
    assert "far below 0.5" in checks["mia"].meaning
    assert checks["retain_map"].value == pytest.approx(0.85 / 0.92) and checks["retain_map"].status == FAIL
    assert checks["gallery_top1"].meaning.endswith("55.7 % of a forgotten person's photos find that person first "
                                                   "in it.")


def test_mia_far_above_half_fails_too():
    v = judge(metrics(), {**AUDITS, "mia": audit(0.61, 0.5, 0.5)}, GALLERY)
    assert by_key(v)["mia"].status == FAIL and by_key(v)["mia"].value == pytest.approx(0.11)


def test_missing_inputs_are_not_measured_never_pass():
    v = judge(metrics(), None, None)  # what `faceforget unlearn` alone has
    checks = by_key(v)
    for key in ("reenrol", "probe", "threshold", "mia", "gallery_top1"):
        assert checks[key].status == NOT_MEASURED and checks[key].value is None
        assert checks[key].shown == "not measured" and checks[key].meaning.startswith("Not measured: ")
    assert "faceforget audit" in checks["probe"].meaning
    assert v.status == "incomplete" and v.failed == []
    assert v.headline == ("NOT COMPLETE: the 5 measured checks pass; 5 not measured, so the request cannot be "
                          "closed yet.")
    nothing = judge(None)
    assert all(c.status == NOT_MEASURED for c in nothing.checks) and len(nothing.checks) == 10


def test_nan_and_empty_groups_are_not_measured():
    m = metrics()
    m["unlearned"]["forget"]["R@1"] = float("nan")
    m["unlearned"]["forget_seen"] = {"n_queries": 0}
    audits = {**AUDITS, "probe": audit(float("nan"), float("nan"), 1.0)}  # fewer than two forget identities
    checks = by_key(judge(m, audits, GALLERY))
    assert [checks[k].status for k in ("forget_r1", "forget_map", "seen_forget_r1", "probe")] == [
        NOT_MEASURED, PASS, NOT_MEASURED, NOT_MEASURED]


def test_every_probe_audit_is_held_to_the_probe_bar():
    audits = {**AUDITS, "probe_penultimate": audit(0.914, 1.0, 0.171), "probe_suffix_input": audit(0.2, 1.0, 0.171)}
    checks = by_key(judge(metrics(), audits, GALLERY))
    assert checks["probe_penultimate"].name == "linear probe (penultimate)"
    assert checks["probe_penultimate"].status == FAIL
    assert "probe_suffix_input" not in checks  # the frozen prefix's features: reported in the audits, not judged
    assert checks["probe"].name == "linear probe (output embedding)"


def test_lookalike_group_gets_the_retain_bars_when_present():
    assert "lookalike_map" not in by_key(judge(metrics(), AUDITS, GALLERY))
    checks = by_key(judge(metrics(lookalike=(0.85, 0.70)), AUDITS, GALLERY))
    # 0.70 / 0.80 = 0.875 < 0.97; R@1 drop 0.05 > 0.01
    assert checks["lookalike_map"].status == FAIL and checks["lookalike_map"].value == pytest.approx(0.875)
    assert checks["lookalike_r1_drop"].status == FAIL and checks["lookalike_r1_drop"].value == pytest.approx(0.05)
    assert checks["lookalike_map"].meaning.startswith("The people who look most like a forgotten person")


def test_thresholds_are_configuration():
    strict = VerdictConfig(forget_r1_max=0.05, probe_chance_factor_max=1.5)
    v = judge(metrics(), AUDITS, GALLERY, strict)
    assert {c.key for c in v.failed} == {"forget_r1", "probe"}
    assert v.thresholds["forget_r1_max"] == 0.05 and v.as_dict()["thresholds"] == strict.model_dump()
    assert by_key(v)["forget_r1"].bar == "≤ 0.050"
    with pytest.raises(ValueError, match="verdict.forget_r1_max"):
        from faceforget.config import UnlearnConfig
        validate_config(UnlearnConfig, {"verdict": {"forget_r1_max": 2}})
    with pytest.raises(ValueError, match="verdict.forget_r1_mx"):
        validate_config(UnlearnConfig, {"verdict": {"forget_r1_mx": 0.1}})


def test_as_dict_is_plain_data():
    d = judge(metrics(), AUDITS, None).as_dict()
    assert d["status"] == "incomplete" and d["checks"][0] == {
        "key": "forget_r1", "name": "held-out forget R@1", "value": 0.10, "shown": "0.100", "original": "0.980",
        "bar": "≤ 0.100", "status": "pass",
        "meaning": "10.0 % of new photos of a forgotten person (never shown to the unlearning) still find that "
                   "person first in a search; chance is 5.0 %."}
