"""
`faceforget benchmark`: every method x seed on one protocol, on equal terms, resumable cell by cell.

Equal terms: one split per seed shared by every method, the same trainable blocks, the same cached
views (augmentation), the same step budget (`steps_policy: shared`) and the same optimiser, learning
rate, schedule and clipping (`optimizer_policy: shared`) unless a method's entry says otherwise; each
baseline keeps its reference batch composition (docs/methods.md, rules C6-C9). A finished cell is reused only
when its stored signature (config, split, model) matches.
Reference rows: Original (no unlearning) and Gallery delete (the model is unchanged, so once the forget
identities' photos are re-enrolled from held-out images the metrics are the original's).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from faceforget.config import EngineConfig, EvalConfig, UnlearnConfig, _Strict, load_yaml, validate_config
from faceforget.data.records import SplitManifest
from faceforget.data.split import load_split
from faceforget.fileio import write_json_atomic, write_text_atomic
from faceforget.models.registry import load_model
from faceforget.models.spec import FaceModel
from faceforget.report.tables import result_row, write_csv
from faceforget.runs import RunFolder
from faceforget.unlearn.registry import available_methods, method_class
from faceforget.unlearn.trainable import first_trainable_block
from faceforget.workspace import Workspace, cell_signature, prepare, run_in_workspace

REFERENCE_ROWS = ("original", "gallery_delete")
OPTIMISER_KEYS = {"optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_steps", "grad_clip"}


class SplitSpec(_Strict):
    """The protocol every seed's split is made with (paths may use ${ENV} variables)."""

    data: str
    distractors: str | None = None
    forget: int = Field(10, ge=1)
    min_images: int = Field(5, ge=3)
    test_fraction: float = Field(0.5, gt=0, lt=1)


class MethodEntry(_Strict):
    """One benchmarked row: the registered method (default: the row's name), params, engine overrides."""

    method: str | None = Field(None, description="registered method name; lets one method appear as variants")
    params: dict = Field(default_factory=dict)
    engine: dict = Field(default_factory=dict)


class BenchmarkConfig(_Strict):
    """methods x seeds on one protocol."""

    name: str = "benchmark"
    model: str = "dlib"
    split: SplitSpec
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    out: str = "runs/benchmark"
    engine: EngineConfig = Field(default_factory=EngineConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    steps_policy: Literal["shared", "match_reference", "epochs"] = Field(
        "shared", description="shared: every method gets engine.steps; else the baselines' reference budgets")
    max_steps: int | None = Field(None, ge=1, description="cap on any method's steps")
    optimizer_policy: Literal["shared", "reference"] = Field(
        "shared", description="shared: every method uses the engine's optimiser, lr, schedule and clipping; "
        "reference: each baseline keeps its reference optimiser and lr (docs/methods.md, rule C6)")
    methods: dict[str, MethodEntry]


def load_benchmark_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a benchmark YAML; unknown method names are errors that list the valid ones."""
    cfg = load_yaml(path, BenchmarkConfig)
    unknown = sorted({e.method or name for name, e in cfg.methods.items()} - set(available_methods()))
    if unknown:
        raise ValueError(f"{path}: unknown methods {unknown}; valid: {', '.join(available_methods())}")
    return cfg


def method_config(cfg: BenchmarkConfig, name: str, seed: int, n_forget: int, n_retain: int) -> UnlearnConfig:
    """The resolved UnlearnConfig of one cell: base engine, the method's reference recipe, its overrides."""
    entry = cfg.methods[name]
    method = entry.method or name
    engine = cfg.engine.model_dump() | {"seed": seed}
    recipe = getattr(method_class(method), "recipe", None)
    if recipe is not None:
        policy = "match_reference" if cfg.steps_policy == "shared" else cfg.steps_policy
        ref = recipe.engine(n_forget, n_retain, policy)
        shared = {"forget_views", "retain_views", "augment"} | ({"steps"} if cfg.steps_policy == "shared" else set())
        if cfg.optimizer_policy == "shared":
            shared |= OPTIMISER_KEYS
        engine |= {k: v for k, v in ref.items() if k not in shared}
    engine |= entry.engine
    if cfg.max_steps is not None:
        engine["steps"] = min(engine["steps"], cfg.max_steps)
    return validate_config(UnlearnConfig, {"method": method, "params": entry.params, "engine": engine,
                                           "eval": cfg.eval.model_dump()}, f"benchmark cell {name}/seed {seed}")


def _split(cfg: BenchmarkConfig, seed: int, path: Path, progress: bool) -> SplitManifest:
    from faceforget import api

    s = cfg.split
    data, distractors = os.path.expandvars(s.data), s.distractors and os.path.expandvars(s.distractors)
    if path.is_file():
        return load_split(path, progress=progress)
    return api.make_split(data, forget=s.forget, seed=seed, distractors=distractors, min_images=s.min_images,
                          test_fraction=s.test_fraction, out=path, progress=progress)


def _start_of(model: FaceModel) -> Callable[[str], int]:
    """Key function: the first trainable block of a `trainable` selection on `model`."""
    return lambda trainable: first_trainable_block(model, trainable)


def _audits_after(run: RunFolder, model: Literal["before", "after"] = "after") -> dict:
    """{audit: {after, chance}} of a finished cell, for its unlearned model or (before) the original."""
    if not run.audits.is_file():
        return {}
    return {name: {"after": a[model], "chance": a["chance"]}
            for name, a in json.loads(run.audits.read_text())["audits"].items()}


def _reference_rows(metrics: dict, seed: int, split_hash: str, audits: dict) -> list[dict]:
    """Original and Gallery delete rows (unchanged model: before == after, audits of the original)."""
    return [{"method": name, "row": name, "seed": seed, "split_hash": split_hash, "original": metrics,
             "unlearned": metrics, "summary": {"E": 0.0, "U": 1.0, "H": 0.0}, "timings": {"total_s": 0.0},
             "audits": audits} for name in REFERENCE_ROWS]


def run_benchmark(cfg: BenchmarkConfig, progress: bool = True) -> list[dict]:
    """Run every missing (method, seed) cell, then write results.json/.csv/.md and plots into `cfg.out`."""
    out = Path(os.path.expandvars(cfg.out))
    results: list[dict] = []
    for seed in cfg.seeds:
        seed_dir = out / f"seed{seed}"
        manifest = _split(cfg, seed, seed_dir / "split.json", progress)
        n_f, n_r = len(manifest.by_role("forget_train")), len(manifest.by_role("retain_train"))
        cells = {m: method_config(cfg, m, seed, n_f, n_r) for m in cfg.methods}
        ws: Workspace | None = None
        original = load_model(cfg.model)
        order = sorted(cells, key=lambda m: cells[m].engine.model_dump_json(include={"forget_views", "retain_views",
                                                                                     "augment"}))
        for name in order:
            run = RunFolder(seed_dir / name)
            signature, _ = cell_signature(cells[name], manifest, cfg.model, original)
            if not (run.is_complete() and run.read_metrics().get("signature") == signature):
                if ws is None:
                    earliest = min((c.engine.trainable for c in cells.values()), key=_start_of(original))
                    ws = prepare(original, cfg.model, manifest, earliest, cfg.eval, progress)
                run_in_workspace(ws, cells[name], run.root, progress, overwrite=True)  # stale or unfinished
            results.append(run.read_metrics() | {"row": name, "audits": _audits_after(run)})
        original = ws.metrics if ws is not None else results[-1]["original"]
        results += _reference_rows(original, seed, manifest.hash, _audits_after(run, "before"))
    write_results(results, out)
    return results


def write_results(results: list[dict], out: Path) -> None:
    """results.json (every cell), results.csv (flat rows), results.md (mean +- std over seeds), plots."""
    from faceforget.report.benchmark_tables import benchmark_markdown
    from faceforget.report.plots import save_figure, tradeoff_point, tradeoff_scatter

    write_json_atomic(out / "results.json", results)
    write_csv(out / "results.csv", [result_row(r) for r in results])
    write_text_atomic(out / "results.md", benchmark_markdown(results))
    points = [tradeoff_point(r | {"method": r["row"]}) for r in results if r["row"] not in REFERENCE_ROWS]
    save_figure(tradeoff_scatter(points), out / "tradeoff.png")
    _histograms(results, out)


def _histograms(results: list[dict], out: Path) -> None:
    """Genuine/impostor histograms before/after for each method on the first seed."""
    from faceforget.report.plots import save_figure, similarity_histograms

    seed = min(r["seed"] for r in results)
    manifest = load_split(out / f"seed{seed}" / "split.json", verify=False, progress=False)
    test = np.array([r.role in ("forget_test", "retain_test") for r in manifest.records])
    labels = np.array([r.identity for r in manifest.records])[test]
    forget = np.array([r.role == "forget_test" for r in manifest.records])[test]
    for r in results:
        run = RunFolder(out / f"seed{seed}" / r["row"])
        if r["seed"] != seed or not run.embeddings_unlearned.is_file():
            continue
        before = np.load(run.embeddings_original)[test]
        after = np.load(run.embeddings_unlearned)[test]
        save_figure(similarity_histograms(before, after, labels, forget, seed=seed), out / f"hist_{r['row']}.png")
