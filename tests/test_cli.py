"""The CLI end to end on generated images with a tiny registered model; errors exit 2 with a message."""
import json

import pytest
import yaml
from typer.testing import CliRunner

from faceforget.cli import app
from faceforget.models import registry

runner = CliRunner()
ENGINE = {"engine": {"steps": 2, "forget_views": 2, "retain_views": 1, "retain_batch": 8, "trainable": "last:2"}}


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch, make_tiny_model):
    monkeypatch.setitem(registry.MODEL_REGISTRY, "tiny", make_tiny_model)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_protocol_unlearn_evaluate_audit_report(toy_dataset, toy_distractors, tmp_path):
    split, cfg, run = tmp_path / "split.json", tmp_path / "cfg.yaml", tmp_path / "run"
    code, out = invoke("protocol", "--data", toy_dataset, "--forget", 2, "--distractors", toy_distractors, "-o", split)
    assert code == 0 and "forget_train" in out
    cfg.write_text(yaml.safe_dump(ENGINE))
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", run)
    assert code == 0, out
    assert "forget (held-out)" in out and "E=" in out and (run / "model.pt").is_file()
    code, out = invoke("evaluate", "--model", "tiny", "--split", split, "-o", tmp_path / "eval")
    assert code == 0 and "retain (held-out)" in out and "(chance level in brackets)" in out
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["split_hash"]
    code, out = invoke("audit", "--split", split, "--run", run, "-o", run / "audits.json")
    assert code == 0 and "reenrol" in out and "probe" in out
    code, out = invoke("report", "--run", run, "--split", split)
    assert code == 0 and (run / "report.html").is_file()


def test_index_build_search_delete_rebuild(toy_dataset, tmp_path):
    gallery = tmp_path / "gallery"
    code, out = invoke("index", "build", "--data", toy_dataset, "--model", "tiny", "-o", gallery)
    assert code == 0 and "rows" in out, out
    query = next((toy_dataset / "alice").glob("*.jpg"))
    code, out = invoke("index", "search", "--gallery", gallery, "--model", "tiny", "--k", 3, query)
    assert code == 0 and out.count("cos=") == 3
    code, out = invoke("index", "delete", "--gallery", gallery, "alice")
    assert code == 0 and "removed 12 rows" in out
    code, out = invoke("index", "delete", "--gallery", gallery, "nobody")
    assert code == 2 and "nobody" in out
    code, out = invoke("index", "search", "--gallery", gallery, "--model", "dlib", query)
    assert code == 2 and "search it with --model tiny, or rebuild" in out  # another model's gallery is refused
    code, out = invoke("index", "rebuild", "--gallery", gallery, "--model", "tiny")
    assert code == 0 and "rebuilt" in out


def test_errors_are_one_clear_line(toy_dataset, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("alice\nNobody_Here\n")
    code, out = invoke("protocol", "--data", toy_dataset, "--forget-list", names, "-o", tmp_path / "s.json")
    assert code == 2 and "Nobody_Here" in out
    code, out = invoke("protocol", "--data", tmp_path / "missing", "--forget", 1, "-o", tmp_path / "s.json")
    assert code == 2 and "missing" in out
    code, out = invoke("protocol", "--data", toy_dataset, "-o", tmp_path / "s.json")
    assert code == 2 and "exactly one of" in out
    code, out = invoke("unlearn", "--split", tmp_path / "nope.json", "-o", tmp_path / "r")
    assert code == 2 and "nope.json" in out


def test_demo_without_data_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEFORGET_DATA", raising=False)
    monkeypatch.setenv("FACEFORGET_CACHE", str(tmp_path / "cache"))
    code, out = invoke("demo", "-o", tmp_path / "demo")
    assert code == 2 and "FACEFORGET_DATA" in out and "--data" in out


PERMISSIVE = {"forget_r1_max": 1, "forget_map_max": 1, "seen_forget_r1_max": 1, "reenrol_top1_max": 1,
              "probe_chance_factor_max": 1000, "threshold_accept_max": 1, "mia_distinguishability_max": 0.5,
              "retain_map_ratio_min": 0, "retain_r1_drop_max": 1, "gallery_top1_max": 1}


def test_verdict_after_unlearn_and_audit_and_strict_exit_codes(toy_dataset, tmp_path):
    split, cfg = tmp_path / "split.json", tmp_path / "cfg.yaml"
    assert invoke("protocol", "--data", toy_dataset, "--forget", 2, "-o", split)[0] == 0
    cfg.write_text(yaml.safe_dump(ENGINE | {"verdict": PERMISSIVE}))
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", tmp_path / "run",
                       "--strict")
    # every measured bar is met; audits and gallery are not measured, which --strict does not count as failing
    assert code == 0, out
    assert "| re-enrolment top-1 | not measured | ≤ 1.000 | not measured |" in out
    assert "| held-out forget R@1 |" in out and "| PASS |" in out and "FAIL" not in out
    assert "verdict: NOT COMPLETE: the 5 measured checks pass; 5 not measured" in out
    code, out = invoke("audit", "--split", split, "--run", tmp_path / "run", "--strict")
    assert code == 0, out
    assert "verdict: NOT COMPLETE: the 9 measured checks pass; 1 not measured" in out  # only the gallery left
    cfg.write_text(yaml.safe_dump(ENGINE | {"verdict": PERMISSIVE | {"forget_map_max": 0}}))  # AP > 0 always
    args = ("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", tmp_path / "run2")
    code, out = invoke(*args)
    assert code == 0 and "| held-out forget mAP |" in out and "| ≤ 0.000 | FAIL |" in out
    assert "verdict: FAIL: 1 of 5 measured checks fail (held-out forget mAP); 5 not measured." in out
    code, out = invoke(*args, "--strict")
    assert code == 1 and "verdict: FAIL" in out
    code, out = invoke("audit", "--split", split, "--run", tmp_path / "run2", "--strict")
    assert code == 1 and "verdict: FAIL: 1 of 9 measured checks fail" in out


def test_search_with_the_wrong_model_names_the_right_one(toy_dataset, tmp_path):
    split, cfg, run, gallery = tmp_path / "split.json", tmp_path / "cfg.yaml", tmp_path / "run", tmp_path / "g"
    assert invoke("protocol", "--data", toy_dataset, "--forget", 2, "-o", split)[0] == 0
    cfg.write_text(yaml.safe_dump(ENGINE))
    assert invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", run)[0] == 0
    assert invoke("index", "build", "--data", toy_dataset, "--model", "tiny", "-o", gallery)[0] == 0
    assert invoke("index", "rebuild", "--gallery", gallery, "--model", run / "model.pt")[0] == 0
    query = next((toy_dataset / "alice").glob("*.jpg"))
    code, out = invoke("index", "search", "--gallery", gallery, "--model", "tiny", query)
    assert code == 2 and f"search it with --model {run / 'model.pt'}, or rebuild" in out
    code, out = invoke("index", "search", "--gallery", gallery, "--model", run / "model.pt", query)
    assert code == 0 and out.count("cos=") == 5


def test_demo_verdict_timings_and_the_search_example(tmp_path, monkeypatch, make_tree, make_tiny_model, toy_counts):
    from faceforget.timings import STAGES

    monkeypatch.setitem(registry.MODEL_REGISTRY, "dlib", make_tiny_model)  # the demo's model, made tiny
    make_tree(tmp_path / "lfw" / "dlib150", toy_counts)
    make_tree(tmp_path / "lfw" / "distractors_dlib150", {"zack": 1, "yves": 3}, seed=7)
    cfg, demo = tmp_path / "cfg.yaml", tmp_path / "demo"
    cfg.write_text(yaml.safe_dump(ENGINE | {"verdict": PERMISSIVE}))
    code, out = invoke("demo", "--data", tmp_path / "lfw", "-o", demo, "--forget", 2, "--config", cfg, "--strict")
    assert code == 0, out
    assert "verdict: PASS: all 10 checks pass." in out  # audits and the gallery check measured too
    model = demo / "run" / "model.pt"
    assert f"faceforget index search --gallery {demo / 'gallery'} --model {model} FACE.jpg" in out
    timings = json.loads((demo / "run" / "metrics.json").read_text())["timings"]
    stages = [s for s in STAGES if f"{s}_s" in timings]
    assert stages == list(STAGES)  # every stage, protocol to report, booked
    assert timings["total_s"] == pytest.approx(sum(timings[f"{s}_s"] for s in stages), abs=1e-9)
    shown = json.loads((demo / "report.json").read_text())
    assert "report_s" not in shown["timings"] and shown["timings"]["gallery_s"] == timings["gallery_s"]
    assert shown["verdict"]["status"] == "pass" and shown["gallery"]["after"]["forget_queries"] > 0
    query = next((tmp_path / "lfw" / "dlib150" / "alice").glob("*.jpg"))
    code, out = invoke("index", "search", "--gallery", demo / "gallery", query)
    assert code == 2 and f"search it with --model {model}, or rebuild" in out
    code, out = invoke("index", "search", "--gallery", demo / "gallery", "--model", model, query)
    assert code == 0 and out.count("cos=") == 5
