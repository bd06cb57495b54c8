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
    assert code == 2 and "rebuild" in out.lower()  # a gallery built with another model is refused
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


def test_export_writes_an_onnx_file_and_bad_models_exit_2(tmp_path):
    pytest.importorskip("onnxruntime")
    code, out = invoke("export", "--model", "tiny", "-o", tmp_path / "tiny.onnx")
    assert code == 0 and "onnxruntime matches torch" in out and (tmp_path / "tiny.onnx").stat().st_size > 1000
    code, out = invoke("export", "--model", "no-such-model", "-o", tmp_path / "x.onnx")
    assert code == 2 and "unknown model 'no-such-model'" in out and not (tmp_path / "x.onnx").exists()


def test_align_from_a_landmark_csv_and_missing_landmarks_exit_2(tmp_path, make_tree):
    from faceforget.data.align import ARCFACE_112, LANDMARKS

    root = make_tree(tmp_path / "raw", {"ann": 2})
    table = tmp_path / "marks.csv"
    header = "identity,file," + ",".join(f"{k}_{c}" for k in LANDMARKS for c in "xy")
    row = ",".join(f"{v / 5:.3f}" for v in ARCFACE_112.ravel())
    table.write_text(f"{header}\nann,ann_0000.jpg,{row}\nann,ann_0001.jpg,{row}\n")
    code, out = invoke("align", "--data", root, "--landmarks", table, "-o", tmp_path / "out")
    assert code == 0 and "2 crops written" in out and len(list((tmp_path / "out" / "ann").glob("*.jpg"))) == 2
    code, out = invoke("align", "--data", root, "-o", tmp_path / "out2")
    assert code == 2 and "no landmarks" in out
