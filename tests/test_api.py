"""End to end on generated images with a tiny model: protocol -> unlearn -> evaluate -> audit -> report."""
import json
import re

import numpy as np
import pytest
import torch

from faceforget import api
from faceforget.data.errors import DataError
from faceforget.data.split import load_split
from faceforget.eval.embed import embed_records
from faceforget.eval.protocol import evaluate_embeddings, lookalike_identities, summary_scores
from faceforget.fileio import json_ready, sha256_file
from faceforget.models.checkpoint import load_checkpoint, save_checkpoint
from faceforget.models.registry import load_model
from faceforget.report.tables import fmt
from faceforget.runs import RunFolderError
from faceforget.unlearn.registry import get_method

SMALL = {"engine": {"steps": 3, "forget_views": 2, "retain_views": 1, "retain_batch": 8, "forget_per_identity": 2,
                    "trainable": "last:2"}}


def assert_close(got, want, tol=1e-5, where="") -> None:
    """Nested dicts equal in keys, numbers equal within `tol` (NaN equals NaN), everything else exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], tol, f"{where}.{key}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=tol, nan_ok=True), where
    else:
        assert got == want, where


@pytest.fixture
def tiny_registered(monkeypatch, make_tiny_model):
    """model.pt files of the tiny model name their base "tiny": loading them needs it registered."""
    from faceforget.models import registry

    monkeypatch.setitem(registry.MODEL_REGISTRY, "tiny", make_tiny_model)


@pytest.fixture
def split(toy_dataset, toy_distractors, tmp_path):
    path = tmp_path / "split.json"
    api.make_split(toy_dataset, forget=2, seed=0, distractors=toy_distractors, min_images=5, out=path,
                   progress=False)
    return path


def test_unlearn_writes_a_complete_run_folder(split, tmp_path, make_tiny_model, tiny_registered):
    model = make_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = api.unlearn(model, None, split, config=SMALL, out=tmp_path / "run", progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    run = result.run
    assert run.is_complete() and not run.checkpoint.exists()
    metrics = run.read_metrics()  # NaN, stored as null, read back as NaN
    assert set(metrics["original"]) == {"forget", "retain", "forget_seen", "retain_seen", "lookalike"}
    assert metrics["split_hash"] == json.loads(split.read_text())["hash"]
    assert {"E", "U", "H"} <= set(metrics["summary"])
    config = json.loads(run.config.read_text())
    assert config["config"]["params"] == get_method("dispersion").params.model_dump(mode="json")
    assert config["split_hash"] == metrics["split_hash"] and config["signature"] == metrics["signature"]
    # the stored embeddings are the two models' embeddings of every record, and the metrics are theirs
    manifest = load_split(split, progress=False)
    records = (list(manifest.records), manifest.data_root, manifest.distractor_root)
    lookalikes = lookalike_identities(np.load(run.root / "embeddings_original.npy"), manifest)
    for name, net in (("original", make_tiny_model()), ("unlearned", load_model(str(run.model)))):
        stored = np.load(run.root / f"embeddings_{name}.npy")
        np.testing.assert_allclose(stored, embed_records(net, *records, progress=False).embeddings, atol=1e-5)
        assert_close(metrics[name], evaluate_embeddings(stored, manifest, lookalikes=lookalikes), 1e-9, name)
    assert_close(metrics["summary"], summary_scores(metrics["original"], metrics["unlearned"]), 1e-12)


UNLEARN_STAGES = ["load_split", "load_model", "embed_original", "load_train_images", "evaluate_original",
                  "cache_views", "method_setup", "train", "finalize", "save_model", "embed_unlearned",
                  "evaluate_unlearned", "audits", "write_outputs"]


def test_unlearn_timings_are_each_stage_once_summing_to_the_total(split, tmp_path, make_tiny_model):
    from faceforget.timings import Stopwatch

    ticks = iter(range(1000))
    watch = Stopwatch(lambda: float(next(ticks)))  # every clock read is one second later
    result = api.unlearn(make_tiny_model(), None, split, config=SMALL, out=tmp_path / "run", progress=False,
                         watch=watch)
    timings = json.loads(result.run.metrics.read_text())["timings"]
    assert sorted(timings) == sorted([f"{s}_s" for s in UNLEARN_STAGES] + ["total_s"])
    assert all(timings[f"{s}_s"] == 1.0 for s in UNLEARN_STAGES)  # one lap each: no stage measured twice
    assert timings["total_s"] == len(UNLEARN_STAGES)
    real = api.unlearn(make_tiny_model(), None, split, config=SMALL, out=tmp_path / "run2", progress=False)
    t = real.metrics["timings"]
    assert t["total_s"] == pytest.approx(sum(v for k, v in t.items() if k != "total_s"), abs=1e-9)


def test_verdict_bars_are_recorded_but_not_part_of_the_job_signature(split, make_tiny_model):
    from faceforget.data.split import load_split
    from faceforget.workspace import cell_signature

    manifest, model = load_split(split, progress=False), make_tiny_model()
    base = api.load_config(SMALL, None)
    stricter = api.load_config(SMALL | {"verdict": {"forget_r1_max": 0.01}}, None)
    (sig_a, resolved_a), (sig_b, resolved_b) = (cell_signature(c, manifest, "tiny", model) for c in (base, stricter))
    assert sig_a == sig_b  # a new bar re-judges a finished run; it does not retrain it
    assert resolved_a["verdict"]["forget_r1_max"] == 0.10 and resolved_b["verdict"]["forget_r1_max"] == 0.01
    other = api.load_config(SMALL | {"engine": SMALL["engine"] | {"steps": 4}}, None)
    assert cell_signature(other, manifest, "tiny", model)[0] != sig_a


def test_evaluate_and_audit_and_report(split, tmp_path, make_tiny_model, tiny_registered):
    run = api.unlearn(make_tiny_model(), None, split, config=SMALL, out=tmp_path / "run", progress=False).run
    result = api.evaluate(make_tiny_model(), None, split, progress=False)
    original = json.loads(run.metrics.read_text())["original"]
    assert result["metrics"]["forget"]["mAP"] == pytest.approx(original["forget"]["mAP"], abs=1e-6)
    audits = api.audit(None, None, split, run=run.root, progress=False)
    assert audits == json.loads((run.root / "audits.json").read_text())  # the run audited itself the same way
    # the run folder's stored embeddings give the same audits as embedding the split with both models again
    again = api.audit(str(run.model), None, split, original_model=make_tiny_model(), progress=False)
    five = {"reenrol", "probe", "probe_whitened", "threshold", "mia"}  # the run folder also probes deeper features
    assert set(again["audits"]) == five and set(audits["audits"]) == five | {"probe_penultimate", "probe_suffix_input"}
    assert_close(again["audits"], {name: audits["audits"][name] for name in five}, 1e-4)
    report = api.report(run.root, split, progress=False)
    metrics = run.read_metrics()
    assert_close(report["summary"], metrics["summary"], 0.0)  # E, H NaN: the tiny model starts at chance
    assert report["audits"] == audits["audits"]
    html = (run.root / "report.html").read_text()
    section = re.search(r'<section id="audits">(.*?)</section>', html, flags=re.S).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)]
    assert sorted(r for r in rows if r) == sorted([name, fmt(a["before"]), fmt(a["after"]), fmt(a["chance"])]
                                                  for name, a in audits["audits"].items())
    save_checkpoint(make_tiny_model(5), run.model, base="tiny")  # another model put into the folder
    for stage in (lambda: api.report(run.root, split, progress=False),
                  lambda: api.audit(None, None, split, run=run.root, progress=False)):
        with pytest.raises(RunFolderError, match="metrics.json was made from model .* belong to different runs"):
            stage()


def test_metrics_json_is_strict_json_and_records_the_model(split, tmp_path, make_tiny_model):
    result = api.unlearn(make_tiny_model(), None, split, config=SMALL, out=tmp_path / "run", progress=False)
    text = result.run.metrics.read_text()

    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    stored = json.loads(text, parse_constant=refuse)
    assert stored == json_ready(result.metrics)  # NaN (e.g. an undefined score) stored as null
    assert stored["model_sha256"] == sha256_file(result.run.model) == result.run.model_checksum.read_text().strip()


def test_bad_inputs_fail_clearly(split, tmp_path, toy_dataset, make_tiny_model):
    with pytest.raises(ValueError, match="unknown method 'nope'.*dispersion"):
        api.unlearn(make_tiny_model(), None, split, method="nope", out=tmp_path / "r1", progress=False)
    with pytest.raises(ValueError, match="engine.lr"):
        api.unlearn(make_tiny_model(), None, split, config={"engine": {"lr": -1}}, out=tmp_path / "r2")
    with pytest.raises(ValueError, match="engine.stepz"):
        api.unlearn(make_tiny_model(), None, split, config={"engine": {"stepz": 3}}, out=tmp_path / "r3")
    (toy_dataset / "alice" / "alice_0000.jpg").write_bytes(b"changed")
    with pytest.raises(DataError, match="another dataset"):
        api.unlearn(make_tiny_model(), None, split, config=SMALL, out=tmp_path / "r4", progress=False)


def test_split_without_forget_train_is_an_error(toy_dataset, tmp_path, make_tiny_model):
    from dataclasses import replace

    manifest = api.make_split(toy_dataset, forget=1, seed=0, progress=False)
    stripped = replace(manifest, records=tuple(r for r in manifest.records if r.role != "forget_train"))
    with pytest.raises(DataError, match="0 identities with forget_train images"):
        api.unlearn(make_tiny_model(), None, stripped, config=SMALL, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_saved_dlib_checkpoint_round_trips(tmp_path):
    from faceforget.models.checkpoint import save_checkpoint
    from faceforget.models.registry import load_model

    model = load_model("dlib")
    with torch.no_grad():
        model.blocks[-1].fc.weight.mul_(1.5)
    save_checkpoint(model, tmp_path / "m.pt", base="dlib")
    again = load_model(str(tmp_path / "m.pt"))
    assert torch.equal(again.blocks[-1].fc.weight, model.blocks[-1].fc.weight)
    (tmp_path / "m.pt").write_bytes((tmp_path / "m.pt").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        load_checkpoint(tmp_path / "m.pt")


def test_workspace_prefix_moves_forward_exactly(split, make_tiny_model):
    from faceforget.config import EngineConfig, EvalConfig
    from faceforget.data.split import load_split
    from faceforget.eval.embed import embed_from_prefix
    from faceforget.workspace import prepare

    model = make_tiny_model()
    manifest = load_split(split, progress=False)
    engine = EngineConfig(trainable="last:2", forget_views=1, retain_views=1)
    for first in ("all", "last:3"):
        ws = prepare(model, "tiny", manifest, first, EvalConfig(), progress=False)
        banks = ws.banks(engine, progress=False)
        later = ws.at(2)
        assert later.start_block == 2 and later.prefix.shape[0] == len(ws.embeddings_before)
        np.testing.assert_allclose(embed_from_prefix(model, later.prefix, 2), ws.embeddings_before, atol=1e-5)
        assert later.banks(engine, progress=False) is banks  # the view banks are not rebuilt
    with pytest.raises(ValueError, match="back"):
        later.at(1)


def test_onnxruntime_embedding_backend_gives_the_torch_run(split, tmp_path, make_tiny_model, tiny_registered):
    """runtime.embed_backend: onnxruntime embeds the split (and the prefix) on the exported graph: same run."""
    pytest.importorskip("onnxruntime")
    runs = {backend: api.unlearn(make_tiny_model(), None, split, progress=False, out=tmp_path / backend,
                                 config=SMALL | {"runtime": {"embed_backend": backend}}).run
            for backend in ("torch", "onnxruntime")}
    assert runs["torch"].read_metrics()["signature"] == runs["onnxruntime"].read_metrics()["signature"]
    for name in ("original", "unlearned"):
        np.testing.assert_allclose(np.load(runs["onnxruntime"].root / f"embeddings_{name}.npy"),
                                   np.load(runs["torch"].root / f"embeddings_{name}.npy"), atol=1e-5)
    assert_close(runs["onnxruntime"].read_metrics()["unlearned"], runs["torch"].read_metrics()["unlearned"], 1e-4)


def test_a_knob_added_off_leaves_the_signature_of_runs_without_it_unchanged(split, make_tiny_model):
    from faceforget.models.checkpoint import model_fingerprint
    from faceforget.runs import job_signature
    from faceforget.workspace import cell_signature

    manifest, model = load_split(split, progress=False), make_tiny_model()
    cfg = api.load_config(SMALL | {"method": "dispersion"}, None)
    signature, resolved = cell_signature(cfg, manifest, "tiny", model)
    assert resolved["params"]["borrowed_variation"] == 0.0  # recorded in config.json ...
    # ... but signed as a run from before the knob existed: the params without it
    before = {k: v for k, v in resolved.items() if k not in ("verdict", "runtime")}
    before["params"] = {k: v for k, v in resolved["params"].items() if k != "borrowed_variation"}
    assert signature == job_signature(before, manifest.hash, "tiny:" + model_fingerprint(model))
    used = api.load_config(SMALL | {"method": "dispersion", "params": {"borrowed_variation": 0.5}}, None)
    assert cell_signature(used, manifest, "tiny", model)[0] != signature
