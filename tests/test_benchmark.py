"""Benchmark runner on generated images with a tiny model: equal-terms configs, resume, result files."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from faceforget.benchmark import BenchmarkConfig, load_benchmark_config, method_config, run_benchmark
from faceforget.data.split import load_split
from faceforget.eval.protocol import evaluate_embeddings, lookalike_identities
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
    cells = {(r["row"], r["seed"]): r for r in results}
    stored = json.loads((out / "seed1" / "finetune" / "metrics.json").read_text())
    assert cells[("finetune", 1)]["signature"] == stored["signature"]
    assert cells[("original", 0)]["unlearned"] == cells[("dispersion", 0)]["original"]  # the unchanged model
    assert [(r["row"], r["seed"]) for r in json.loads((out / "results.json").read_text())] == list(cells)
    with (out / "results.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["method"], int(r["seed"])) for r in csv_rows] == [(r["method"], r["seed"]) for r in results]
    assert float(csv_rows[0]["unlearned.retain.mAP"]) == results[0]["unlearned"]["retain"]["mAP"]
    r1 = [cells[("dispersion", seed)]["unlearned"]["forget"]["R@1"] for seed in (0, 1)]
    row = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| dispersion |"))
    assert row.split(" | ")[1:3] == ["2", f"{np.mean(r1):.3f} ± {np.std(r1):.3f}"]  # seeds, forget R@1
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == {"tradeoff.png", "hist_dispersion.png", "hist_gradient_ascent.png", "hist_finetune.png"}
    assert all((out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for name in pngs)
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


PINNED = Path(__file__).parent / "pinned" / "benchmark_cells.json"
RENAMED = {"rl_schedule": "loader", "rl_exclude_true": "exclude_true_label", "bs_eps_pixels": "eps_pixels",
           "bs_neighbour_pool": "neighbour_pool", "be_shadow_rows": "shadow_rows", "ratio": "mask_ratio"}


PINNED_STEPS = 200  # the shared step budget of the configs when the cells were pinned (400 since issue 12)


def test_resolved_cells_of_the_shipped_configs_are_pinned():
    """
    Every cell of configs/*.yaml resolves as before issue 8 (the file was written by the old method_config).

    The resolver is checked at the step budget the pins were written with: the budget itself is a config
    value, raised since (test below).
    """
    from faceforget.config import EngineConfig
    from faceforget.unlearn.registry import get_method

    pinned = json.loads(PINNED.read_text())
    defaults = EngineConfig(steps=PINNED_STEPS).model_dump(mode="json")
    root = Path(__file__).parent.parent
    checked = 0
    for cell in pinned["cells"]:
        cfg = load_benchmark_config(root / cell["config"])
        cfg = cfg.model_copy(update={"steps_policy": cell["steps_policy"], "optimizer_policy": cell["optimizer_policy"],
                                     "engine": cfg.engine.model_copy(update={"steps": PINNED_STEPS})})
        if cell["row"] not in cfg.methods:  # an ablation row rewritten since (issue 12: dispersion's new knobs)
            continue
        n_forget, n_retain = pinned["sizes"][str(cell["seed"])]
        resolved = method_config(cfg, cell["row"], cell["seed"], n_forget, n_retain).run_settings()
        changes = {k: v for k, v in resolved["engine"].items() if v != defaults[k]}
        assert (resolved["method"], changes) == (cell["method"], cell["engine_changes"]), cell
        if cell["method"] != "dispersion":  # dispersion's params are issue 12's
            assert resolved["params"] == cell["params"], cell
        assert resolved["eval"] == cfg.eval.model_dump(mode="json")
        checked += 1
    assert checked == 83  # configs/lfw.yaml: 10 rows x (3 seeds + 5 other policy pairs); the ablation's default row
    for method, params in pinned["method_params"].items():  # the same defaults under the new knob names
        if method != "dispersion":  # rewritten since (issue 12: target-map forgetting, new knobs and defaults)
            assert get_method(method).params.model_dump(mode="json") == {RENAMED.get(k, k): v
                                                                         for k, v in params.items()}


def test_the_k10_benchmark_runs_the_engine_default_budget():
    """`faceforget unlearn` with no config trains as the benchmark's default row does: 400 steps (issue 12)."""
    from faceforget.config import EngineConfig

    root = Path(__file__).parent.parent / "configs"
    assert EngineConfig().steps == 400
    for name in ("lfw", "lfw_k1", "lfw_sequential"):
        assert load_benchmark_config(root / f"{name}.yaml").engine.steps == EngineConfig().steps, name


@pytest.mark.parametrize("name", ["lfw_sface", "vggface2", "celeba"])
def test_shipped_model_and_data_configs_validate(name):
    from pathlib import Path

    cfg = load_benchmark_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    assert cfg.model == "sface" and cfg.engine.trainable == "last:4" and "dispersion" in cfg.methods
    assert len(cfg.methods) == 10 and cfg.seeds == [0, 1, 2]


def test_sequential_requests_start_each_from_the_previous_model(toy_dataset, toy_distractors, tmp_path,
                                                                  tiny_registered, monkeypatch):
    import faceforget.benchmark
    import faceforget.workspace

    cfg = _config(toy_dataset, toy_distractors, tmp_path / "seq", methods=("dispersion",))
    cfg = cfg.model_copy(update={"seeds": [0], "requests": 2})
    prepared = []
    real_prepare = faceforget.workspace.prepare

    def counting_prepare(*args, **kwargs):
        prepared.append(args[1])
        return real_prepare(*args, **kwargs)

    for module in (faceforget.benchmark, faceforget.workspace):
        monkeypatch.setattr(module, "prepare", counting_prepare)
    results = run_benchmark(cfg, progress=False)
    assert prepared == ["tiny"]  # request 2 reused request 1's cached prefix (its model left it untouched)
    row = next(r for r in results if r["row"] == "dispersion")
    method_dir = tmp_path / "seq" / "seed0" / "dispersion"
    first = json.loads((method_dir / "request1" / "config.json").read_text())
    second = json.loads((method_dir / "request2" / "config.json").read_text())
    assert first["model"] == "tiny" and second["model"] == str(method_dir / "request1" / "model.pt")
    manifest = load_split(tmp_path / "seq" / "seed0" / "split.json", progress=False)
    names = manifest.forget_identities
    request1 = json.loads((method_dir / "request1" / "metrics.json").read_text())
    assert request1["original"]["forget"]["n_queries"] == sum(
        r.identity == names[0] for r in manifest.by_role("forget_test"))  # request 1 forgets names[0] only
    # the row compares the last model with the untouched original on the whole split, request by request
    original = np.load(method_dir / "request1" / "embeddings_original.npy")
    assert np.array_equal(np.load(method_dir / "request2" / "embeddings_original.npy"),
                          np.load(method_dir / "request1" / "embeddings_unlearned.npy"))
    expected = evaluate_embeddings(original, manifest, cfg.eval, lookalike_identities(original, manifest),
                                   requests=[[names[0]], [names[1]]])
    assert row["original"] == expected
    assert row["unlearned"]["forget_request2"]["n_queries"] == sum(
        r.identity == names[1] for r in manifest.by_role("forget_test"))
    request2 = json.loads((method_dir / "request2" / "metrics.json").read_text())
    for stage in ("total_s", "train_s", "cache_views_s"):  # each stage summed over the requests
        assert row["timings"][stage] == pytest.approx(request1["timings"][stage] + request2["timings"][stage])
    stamp = (method_dir / "request2" / "metrics.json").stat().st_mtime_ns
    again = run_benchmark(cfg, progress=False)[0]  # both requests reused (NaN != NaN: compared as JSON)
    assert json.dumps(again, sort_keys=True) == json.dumps(row, sort_keys=True)
    assert (method_dir / "request2" / "metrics.json").stat().st_mtime_ns == stamp
    assert prepared == ["tiny"]  # nothing was embedded again: the finished sequence is read from its run folders
    (method_dir / "request2" / "metrics.json").unlink()  # request 2 unfinished: the chain is rebuilt for it only
    assert run_benchmark(cfg, progress=False)[0]["unlearned"] == row["unlearned"]
    assert prepared == ["tiny", "tiny"] and (method_dir / "request1" / "metrics.json").stat().st_mtime_ns < stamp
    table = (tmp_path / "seq" / "results.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| method | seeds | request 1 R@1 |"))
    assert header.split(" | ")[2:6] == ["request 1 R@1", "request 1 mAP", "request 2 R@1", "request 2 mAP |"]
    line = [ln for ln in table if ln.startswith("| dispersion |")][-1]  # the request table comes last
    assert line.split(" | ")[4] == f"{row['unlearned']['forget_request2']['R@1']:.3f}"
