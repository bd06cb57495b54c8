"""Benchmark runner on generated images with a tiny model: equal-terms configs, resume, result files."""
import json

import pytest

from faceforget.benchmark import BenchmarkConfig, load_benchmark_config, method_config, run_benchmark
from faceforget.models import registry


@pytest.fixture
def tiny_registered(monkeypatch, make_tiny_model):
    monkeypatch.setitem(registry.MODEL_REGISTRY, "tiny", make_tiny_model)


def _config(toy_dataset, toy_distractors, out, methods=("dispersion", "gradient_ascent", "finetune"), extra=None):
    return BenchmarkConfig.model_validate({
        "model": "tiny", "seeds": [0, 1], "out": str(out),
        "split": {"data": str(toy_dataset), "distractors": str(toy_distractors), "forget": 2},
        "engine": {"steps": 2, "forget_views": 2, "retain_views": 1, "retain_batch": 8, "trainable": "last:2"},
        "methods": {m: {} for m in methods} | (extra or {}),
    })


def test_cells_share_trainable_views_and_steps(toy_dataset, toy_distractors, tmp_path):
    cfg = _config(toy_dataset, toy_distractors, tmp_path)
    ga = method_config(cfg, "gradient_ascent", 1, 10, 100)
    disp = method_config(cfg, "dispersion", 1, 10, 100)
    assert ga.engine.steps == disp.engine.steps == 2 and ga.engine.seed == disp.engine.seed == 1
    assert ga.engine.trainable == disp.engine.trainable and ga.engine.forget_views == disp.engine.forget_views
    assert ga.engine.optimizer == disp.engine.optimizer and ga.engine.lr == disp.engine.lr  # shared optimiser
    assert ga.engine.forget_batch != disp.engine.forget_batch or ga.engine.sampler == "uniform"  # reference batches
    faithful = method_config(cfg.model_copy(update={"optimizer_policy": "reference"}), "gradient_ascent", 1, 10, 100)
    assert faithful.engine.optimizer == "sgd" and faithful.engine.lr == pytest.approx(1e-4)


def test_benchmark_runs_resumes_and_writes_results(toy_dataset, toy_distractors, tmp_path, tiny_registered):
    cfg = _config(toy_dataset, toy_distractors, tmp_path / "bench")
    results = run_benchmark(cfg, progress=False)
    methods = {r["row"] for r in results}
    assert methods == {"dispersion", "gradient_ascent", "finetune", "original", "gallery_delete"}
    assert len(results) == 2 * 5
    out = tmp_path / "bench"
    for name in ("results.json", "results.csv", "results.md", "tradeoff.png", "hist_dispersion.png"):
        assert (out / name).is_file(), name
    assert "± " in (out / "results.md").read_text()
    stamp = (out / "seed0" / "dispersion" / "metrics.json").stat().st_mtime_ns
    (out / "seed1" / "finetune" / "metrics.json").unlink()
    again = run_benchmark(cfg, progress=False)
    assert (out / "seed0" / "dispersion" / "metrics.json").stat().st_mtime_ns == stamp  # finished cell kept
    assert (out / "seed1" / "finetune" / "metrics.json").is_file()  # the missing cell was redone
    assert len(again) == len(results)
    changed = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"lr": 5e-4})})
    run_benchmark(changed, progress=False)  # another config: no finished cell may be reused
    assert (out / "seed0" / "dispersion" / "metrics.json").stat().st_mtime_ns != stamp
    assert json.loads((out / "results.json").read_text())[0]["split_hash"]


def test_unknown_method_in_config_lists_valid_ones(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("split: {data: x}\nmethods: {dispersion: {}, nope: {}}\n")
    with pytest.raises(ValueError, match="unknown methods \\['nope'\\].*random_labeling"):
        load_benchmark_config(path)
    path.write_text("split: {data: x}\nmethods: {}\nengine: {lr: 0}\n")
    with pytest.raises(ValueError, match="engine.lr"):
        load_benchmark_config(path)


def test_variants_of_one_method_are_separate_rows(toy_dataset, toy_distractors, tmp_path, tiny_registered):
    variant = {"dispersion_no_keep": {"method": "dispersion", "params": {"w_keep": 0}},
               "dispersion_last1": {"method": "dispersion", "engine": {"trainable": "last:1"}}}
    cfg = _config(toy_dataset, toy_distractors, tmp_path / "b", methods=("dispersion",), extra=variant)
    cfg = cfg.model_copy(update={"seeds": [0]})
    results = run_benchmark(cfg, progress=False)
    rows = {r["row"]: r for r in results}
    assert rows["dispersion_no_keep"]["method"] == "dispersion"
    last1 = json.loads((tmp_path / "b" / "seed0" / "dispersion_last1" / "config.json").read_text())
    assert last1["config"]["engine"]["trainable"] == "last:1"  # fewer blocks: the cached prefix is advanced
    assert rows["dispersion_last1"]["unlearned"]["forget"]["n_queries"] > 0
    assert "dispersion_no_keep" in (tmp_path / "b" / "results.md").read_text()
    assert json.loads((tmp_path / "b" / "seed0" / "dispersion_no_keep" / "config.json").read_text())[
        "config"]["params"]["w_keep"] == 0


@pytest.mark.parametrize("name", ["lfw_sface", "vggface2", "celeba"])
def test_shipped_model_and_data_configs_validate(name):
    from pathlib import Path

    cfg = load_benchmark_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    assert cfg.model == "sface" and cfg.engine.trainable == "last:4" and "dispersion" in cfg.methods
    assert len(cfg.methods) == 10 and cfg.seeds == [0, 1, 2]
