"""The CLI end to end on generated images with a tiny registered model; errors exit 2 with a message."""
import json
import os
import stat

import pytest
import torch
import yaml
from typer.testing import CliRunner

from faceforget.cli import app
from faceforget.data.records import ROLES
from faceforget.models import registry
from faceforget.report.tables import audit_rows, metrics_rows
from faceforget.runs import RunFolder

runner = CliRunner()
ENGINE = {"engine": {"steps": 2, "forget_views": 2, "retain_views": 1, "retain_batch": 8, "trainable": "last:2"}}


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch, make_tiny_model):
    monkeypatch.setitem(registry.MODEL_REGISTRY, "tiny", make_tiny_model)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_error_line(code, out, *needles):
    """Exit code 2, one "error:" line (the rest is progress output) containing every needle, no traceback."""
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and out.endswith(errors[0] + "\n"), out
    assert "Traceback" not in out and all(n in errors[0] for n in needles), out


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_protocol_unlearn_evaluate_audit_report(toy_dataset, toy_distractors, tmp_path, umask_022):
    split, cfg, run = tmp_path / "split.json", tmp_path / "cfg.yaml", tmp_path / "run"
    code, out = invoke("protocol", "--data", toy_dataset, "--forget", 2, "--distractors", toy_distractors, "-o", split)
    written = json.loads(split.read_text())
    counts = {role: sum(r["role"] == role for r in written["records"]) for role in ROLES}
    assert code == 0 and f"{len(written['records'])} images, hash {written['hash'][:16]}, roles {counts}" in out
    cfg.write_text(yaml.safe_dump(ENGINE))
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", run)
    assert code == 0, out
    metrics = RunFolder(run).read_metrics()  # NaN, stored as null, read back as NaN
    s = metrics["summary"]
    assert f"E={s['E']:.3f} U={s['U']:.3f} H={s['H']:.3f}" in out
    _, rows, notes = metrics_rows({"original": metrics["original"], "unlearned": metrics["unlearned"]})
    assert len(rows) == 8 and all("| " + " | ".join(row) + " |" in out for row in rows)  # 2 models x 4 groups
    assert all(f"- {note}" in out for note in notes)
    code, out = invoke("evaluate", "--model", "tiny", "--split", split, "-o", tmp_path / "eval")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert code == 0 and evaluated["split_hash"] == written["hash"]
    assert evaluated["metrics"]["retain"]["mAP"] == pytest.approx(metrics["original"]["retain"]["mAP"], abs=1e-6)
    assert (tmp_path / "eval" / "metrics.md").read_text() in out
    code, out = invoke("audit", "--split", split, "--run", run, "-o", run / "audits.json")
    audits = json.loads((run / "audits.json").read_text())["audits"]
    header, rows = audit_rows(audits)  # audits.json (sorted keys): the printed table holds the same rows
    assert code == 0 and "| " + " | ".join(header) + " |" in out and len(rows) == len(audits) >= 4
    assert all("| " + " | ".join(row) + " |" in out for row in rows)
    code, out = invoke("report", "--run", run, "--split", split)
    report = json.loads((run / "report.json").read_text())
    as_json = {k: None if v != v else v for k, v in s.items()}  # report.json writes NaN as null
    assert code == 0 and report["summary"] == as_json and report["audits"] == audits
    sha = (run / "model.pt.sha256").read_text().strip()
    assert json.loads((run / "report.json").read_text())["run"]["model_sha256"] == sha
    assert json.loads((run / "audits.json").read_text())["model_sha256"] == sha
    assert json.loads((run / "metrics.json").read_text())["model_sha256"] == sha
    made = [p for p in tmp_path.rglob("*") if not (p.is_relative_to(toy_dataset) or p.is_relative_to(toy_distractors))]
    assert {p.name for p in made} >= {"split.json", "model.pt", "embeddings_unlearned.npy", "embeddings_original.npy",
                                      "metrics.json", "audits.json", "report.html", "report.json", "figures", "eval"}
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in made if p.name != "cfg.yaml"}
    assert modes == {name: 0o700 if (tmp_path / name).is_dir() else 0o600 for name in modes}  # face data: owner only

    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", run)
    one_error_line(code, out, f"{run} already holds a finished run", "--overwrite")
    assert (run / "audits.json").is_file() and (run / "report.html").is_file()  # refused: nothing touched
    old_audits = (run / "audits.json").read_text()
    cfg.write_text(yaml.safe_dump({"engine": ENGINE["engine"] | {"steps": 3}}))
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", run, "--overwrite")
    assert code == 0, out
    assert not any((run / n).exists() for n in ("report.html", "report.md", "report.json", "figures"))
    new_sha = (run / "model.pt.sha256").read_text().strip()
    assert new_sha != sha and json.loads((run / "audits.json").read_text())["model_sha256"] == new_sha  # the run's own
    (run / "audits.json").write_text(old_audits)  # the previous model's audits put back by hand
    code, out = invoke("report", "--run", run, "--split", split)
    one_error_line(code, out, "audits.json was made from model", "re-run `faceforget audit --run")
    assert not (run / "report.html").exists()


def test_index_build_search_delete_rebuild(toy_dataset, tmp_path, umask_022):
    gallery = tmp_path / "gallery"
    code, out = invoke("index", "build", "--data", toy_dataset, "--model", "tiny", "-o", gallery)
    assert code == 0 and "rows" in out, out
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (gallery, *gallery.rglob("*"))}
    assert modes == {"gallery": 0o700, ".lock": 0o600, "CURRENT": 0o600, "v000001": 0o700, "index.faiss": 0o600,
                     "metadata.json": 0o600}
    query = next((toy_dataset / "alice").glob("*.jpg"))
    code, out = invoke("index", "search", "--gallery", gallery, "--model", "tiny", "--k", 3, query)
    assert code == 0 and out.count("cos=") == 3
    assert "warning: probably not a face: dlib's face detector finds no face" in out  # the toy images are noise
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


@pytest.mark.parametrize("method", ["scrub", "dispersion"])
def test_cli_run_resolves_the_same_config_as_the_benchmark_cell(method, toy_dataset, toy_distractors, tmp_path,
                                                                 make_tiny_model):
    from faceforget.benchmark import BenchmarkConfig, method_config
    from faceforget.data.split import load_split
    from faceforget.workspace import cell_signature

    engine = {"steps": 2, "forget_views": 2, "retain_views": 1, "retain_batch": 8, "trainable": "last:2"}
    policies = {"steps_policy": "match_reference", "optimizer_policy": "reference", "max_steps": 3}
    overrides = {"forget_batch": 4}
    bench = BenchmarkConfig.model_validate({
        "model": "tiny", "seeds": [0], "split": {"data": str(toy_dataset), "distractors": str(toy_distractors),
                                                 "forget": 2},
        "engine": engine, **policies, "methods": {method: {"engine": overrides}}})
    split, cfg, run = tmp_path / "split.json", tmp_path / "cfg.yaml", tmp_path / "run"
    code, out = invoke("protocol", "--data", toy_dataset, "--forget", 2, "--distractors", toy_distractors, "-o", split)
    assert code == 0, out
    manifest = load_split(split, progress=False)
    n_forget, n_retain = len(manifest.by_role("forget_train")), len(manifest.by_role("retain_train"))
    cell = method_config(bench, method, 0, n_forget, n_retain)
    signature, resolved = cell_signature(cell, manifest, "tiny", make_tiny_model())

    cfg.write_text(yaml.safe_dump({"engine": engine, **policies, "engine_overrides": overrides}))
    code, out = invoke("unlearn", "--model", "tiny", "--method", method, "--split", split, "--config", cfg, "-o", run)
    assert code == 0, out
    written = json.loads((run / "config.json").read_text())
    assert written["signature"] == signature and written["config"] == resolved
    assert resolved["engine"]["steps"] == (3 if method == "scrub" else 2)  # reference budget capped by max_steps
    assert resolved["engine"]["optimizer"] == ("sgd" if method == "scrub" else "adam")


@pytest.fixture
def split_file(toy_dataset, tmp_path):
    path = tmp_path / "split.json"
    assert invoke("protocol", "--data", toy_dataset, "--forget", 2, "-o", path)[0] == 0
    return path


def test_split_with_one_identity_fails_before_anything_is_written(make_tree, tmp_path):
    data, split = make_tree(tmp_path / "one", {"alice": 12}), tmp_path / "one.json"
    assert invoke("protocol", "--data", data, "--forget", 1, "-o", split)[0] == 0
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "-o", tmp_path / "run")
    one_error_line(code, out, f"{split} cannot be unlearned", "0 identities with retain_train images",
                   "0 identities with retain identities with held-out images")
    assert not (tmp_path / "run").exists()


def test_malformed_yaml_names_the_file_and_line(split_file, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("engine:\n  steps: 3\n  lr: [1e-4\n")
    code, out = invoke("unlearn", "--model", "tiny", "--split", split_file, "--config", cfg, "-o", tmp_path / "run")
    one_error_line(code, out, f"{cfg} is not valid YAML at line 4")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.pop("records"), "field 'records' is missing or not a list"),
    (lambda b: b["records"][3].pop("identity"), "record 3 is malformed: 'identity' missing or of the wrong type"),
    (lambda b: b["records"][0].update(role="teacher"), "record 0 is malformed: role 'teacher'"),
    (lambda b: b.update(params=[1]), "field 'params' is missing or of the wrong type"),
])
def test_structurally_edited_split_is_named(split_file, tmp_path, edit, message):
    body = json.loads(split_file.read_text())
    edit(body)
    split_file.write_text(json.dumps(body))
    code, out = invoke("evaluate", "--model", "tiny", "--split", split_file, "-o", tmp_path / "eval")
    one_error_line(code, out, f"{split_file}: {message}")
    assert not (tmp_path / "eval").exists()


def test_gallery_row_missing_a_field_is_named_and_the_gallery_is_unchanged(toy_dataset, tmp_path):
    gallery = tmp_path / "gallery"
    assert invoke("index", "build", "--data", toy_dataset, "--model", "tiny", "-o", gallery)[0] == 0
    meta_path = next(gallery.glob("v*/metadata.json"))
    meta = json.loads(meta_path.read_text())
    del meta["rows"][0]["path"]
    meta_path.write_text(json.dumps(meta))
    before = listing(gallery)
    code, out = invoke("index", "delete", "--gallery", gallery, "alice")
    one_error_line(code, out, f"{meta_path}: row 0 is malformed: 'path' missing or not str")
    assert listing(gallery) == before and json.loads(meta_path.read_text()) == meta


def test_model_files_checksums_shapes_and_pickles(split_file, tmp_path, make_tiny_model):
    from faceforget.models.checkpoint import save_checkpoint

    good = tmp_path / "good.pt"
    save_checkpoint(make_tiny_model(1), good, base="tiny")
    assert invoke("evaluate", "--model", good, "--split", split_file)[0] == 0
    (tmp_path / "good.pt.sha256").unlink()
    code, out = invoke("evaluate", "--model", good, "--split", split_file, "-o", tmp_path / "eval")
    one_error_line(code, out, f"{good} has no checksum file good.pt.sha256", "--no-verify")
    assert not (tmp_path / "eval").exists()
    assert invoke("evaluate", "--model", good, "--split", split_file, "--no-verify")[0] == 0

    wide = make_tiny_model()
    wide.blocks.head.fc = torch.nn.Linear(16, 4, bias=False)
    save_checkpoint(wide, tmp_path / "wide.pt", base="tiny")
    code, out = invoke("evaluate", "--model", tmp_path / "wide.pt", "--split", split_file)
    one_error_line(code, out, "wide.pt: weights do not fit base model 'tiny'; shapes differ: ",
                   "fc.weight (4, 16) (base has (8, 16))")

    (tmp_path / "notes.txt").write_text("not a model")
    code, out = invoke("index", "build", "--data", tmp_path, "--model", tmp_path / "notes.txt", "--no-verify",
                       "-o", tmp_path / "g")
    one_error_line(code, out, "notes.txt is not a faceforget/torch weights file: it is not a file torch.save writes")
    torch.save({"format": "faceforget-model-v1", "obj": ValueError("pickled")}, tmp_path / "code.pt")
    code, out = invoke("evaluate", "--model", tmp_path / "code.pt", "--split", split_file, "--no-verify")
    one_error_line(code, out, "code.pt is not a faceforget/torch weights file: it holds objects other than tensors")
    assert "weights_only" not in out and not (tmp_path / "g").exists()


PERMISSIVE = {"forget_r1_max": 1, "forget_map_max": 1, "seen_forget_r1_max": 1, "reenrol_top1_max": 1,
              "probe_chance_factor_max": 1000, "threshold_accept_max": 1, "mia_distinguishability_max": 0.5,
              "retain_map_ratio_min": 0, "retain_r1_drop_max": 1, "gallery_top1_max": 1}


def test_verdict_after_unlearn_and_audit_and_strict_exit_codes(toy_dataset, tmp_path):
    split, cfg = tmp_path / "split.json", tmp_path / "cfg.yaml"
    assert invoke("protocol", "--data", toy_dataset, "--forget", 2, "-o", split)[0] == 0
    cfg.write_text(yaml.safe_dump(ENGINE | {"verdict": PERMISSIVE}))
    code, out = invoke("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", tmp_path / "run",
                       "--strict")
    # every measured bar is met (the run audits itself); the gallery is not measured, which --strict does not
    # count as failing
    assert code == 0, out
    assert "| gallery top-1 after the rebuild | not measured |" in out
    assert "| held-out forget R@1 |" in out and "| PASS |" in out and "FAIL" not in out
    assert "verdict: NOT COMPLETE: the 13 measured checks pass; 1 not measured" in out
    code, out = invoke("audit", "--split", split, "--run", tmp_path / "run", "--strict")
    assert code == 0, out
    assert "verdict: NOT COMPLETE: the 13 measured checks pass; 1 not measured" in out  # only the gallery left
    cfg.write_text(yaml.safe_dump(ENGINE | {"verdict": PERMISSIVE | {"forget_map_max": 0}}))  # AP > 0 always
    args = ("unlearn", "--model", "tiny", "--split", split, "--config", cfg, "-o", tmp_path / "run2")
    code, out = invoke(*args)
    assert code == 0 and "| held-out forget mAP |" in out and "| ≤ 0.000 | FAIL |" in out
    assert "verdict: FAIL: 1 of 13 measured checks fail (held-out forget mAP); 1 not measured." in out
    code, out = invoke(*args, "--strict", "--overwrite")  # the same run again: a finished folder needs --overwrite
    assert code == 1 and "verdict: FAIL" in out
    code, out = invoke("audit", "--split", split, "--run", tmp_path / "run2", "--strict")
    assert code == 1 and "verdict: FAIL: 1 of 13 measured checks fail" in out


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
    assert "verdict: PASS: all 14 checks pass." in out  # audits and the gallery check measured too
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
