"""
`faceforget benchmark`: every method x seed on one protocol, on equal terms, resumable cell by cell.

Equal terms: one split per seed shared by every method, the same trainable blocks, the same cached
views (augmentation), the same step budget (`steps_policy: shared`) and the same optimiser, learning
rate, schedule and clipping (`optimizer_policy: shared`) unless a method's entry says otherwise; each
baseline keeps its reference batch composition (docs/methods.md, rules C6-C9). A cell's config is what
`faceforget unlearn` resolves for the same method and settings (`unlearn.recipe.resolve_recipe`). A
finished cell is reused only when its stored signature (config, split, model) matches.
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

from faceforget.config import (
    EngineConfig,
    EvalConfig,
    RecipePolicy,
    UnlearnConfig,
    _Strict,
    load_yaml,
    validate_config,
)
from faceforget.data.records import SplitManifest
from faceforget.data.requests import request_identities, request_manifests
from faceforget.data.split import load_split
from faceforget.eval.protocol import evaluate_embeddings, lookalike_identities, summary_scores
from faceforget.fileio import write_json_atomic, write_text_atomic
from faceforget.models.registry import load_model
from faceforget.models.spec import FaceModel
from faceforget.report.tables import result_row, write_csv
from faceforget.runs import RunFolder
from faceforget.unlearn.recipe import resolve_recipe
from faceforget.unlearn.registry import available_methods
from faceforget.unlearn.trainable import first_trainable_block
from faceforget.workspace import Workspace, cell_signature, next_request, prepare, run_in_workspace

REFERENCE_ROWS = ("original", "gallery_delete")


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
    engine: dict = Field(default_factory=dict, description="engine keys that win over the method's recipe")


class BenchmarkConfig(RecipePolicy):
    """methods x seeds on one protocol; the recipe policies apply to every method."""

    name: str = "benchmark"
    model: str = "dlib"
    split: SplitSpec
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    out: str = "runs/benchmark"
    engine: EngineConfig = Field(default_factory=EngineConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    methods: dict[str, MethodEntry]
    requests: int = Field(1, ge=1, description="deletion requests the split's forget identities arrive in, each "
                          "method unlearning them one after the other from its previous model (data/requests.py)")


def load_benchmark_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a benchmark YAML; unknown method names are errors that list the valid ones."""
    cfg = load_yaml(path, BenchmarkConfig)
    unknown = sorted({e.method or name for name, e in cfg.methods.items()} - set(available_methods()))
    if unknown:
        raise ValueError(f"{path}: unknown methods {unknown}; valid: {', '.join(available_methods())}")
    return cfg


def cell_request(cfg: BenchmarkConfig, name: str, seed: int) -> UnlearnConfig:
    """The UnlearnConfig one cell asks for, as `faceforget unlearn --config` would read it (before the recipe)."""
    entry = cfg.methods[name]
    request = {"method": entry.method or name, "params": entry.params, "eval": cfg.eval.model_dump(),
               "engine": cfg.engine.model_dump() | {"seed": seed}, "engine_overrides": entry.engine}
    policies = cfg.model_dump(include=set(RecipePolicy.model_fields))
    return validate_config(UnlearnConfig, request | policies, f"benchmark cell {name}/seed {seed}")


def method_config(cfg: BenchmarkConfig, name: str, seed: int, n_forget: int, n_retain: int) -> UnlearnConfig:
    """The resolved UnlearnConfig of one cell: base engine, the method's reference recipe, its overrides."""
    return resolve_recipe(cell_request(cfg, name, seed), n_forget, n_retain, f"benchmark cell {name}/seed {seed}")


def _cell_config(cfg: BenchmarkConfig, name: str, seed: int, manifest: SplitManifest) -> UnlearnConfig:
    """`method_config` of one cell on `manifest` (its recipe sized by the manifest's train photos)."""
    return method_config(cfg, name, seed, len(manifest.by_role("forget_train")), len(manifest.by_role("retain_train")))


def _split(cfg: BenchmarkConfig, seed: int, path: Path, progress: bool) -> SplitManifest:
    from faceforget import api

    s = cfg.split
    data, distractors = os.path.expandvars(s.data), s.distractors and os.path.expandvars(s.distractors)
    if path.is_file():
        return load_split(path, progress=progress)
    return api.make_split(data, forget=s.forget, seed=seed, distractors=distractors, min_images=s.min_images,
                          test_fraction=s.test_fraction, out=path, progress=progress)


def _start_block_of(model: FaceModel) -> Callable[[str], int]:
    """Key function: the first trainable block of a `trainable` selection on `model`."""
    return lambda trainable: first_trainable_block(model, trainable)


def _audits_after(run: RunFolder, model: Literal["before", "after"] = "after") -> dict:
    """{audit: {after, chance}} of a finished cell, for its unlearned model or (before) the original."""
    if not run.audits.is_file():
        return {}
    return {name: {"after": a[model], "chance": a["chance"]}
            for name, a in json.loads(run.audits.read_text())["audits"].items()}


def _reference_rows(metrics_before: dict, seed: int, split_hash: str, audits: dict) -> list[dict]:
    """Original and Gallery delete rows (unchanged model: before == after, audits of the original)."""
    return [{"method": name, "row": name, "seed": seed, "split_hash": split_hash, "original": metrics_before,
             "unlearned": metrics_before, "summary": {"E": 0.0, "U": 1.0, "H": 0.0}, "timings": {"total_s": 0.0},
             "audits": audits} for name in REFERENCE_ROWS]


def run_benchmark(cfg: BenchmarkConfig, progress: bool = True) -> list[dict]:
    """Run every missing (method, seed) cell, then write results.json/.csv/.md and plots into `cfg.out`."""
    out = Path(os.path.expandvars(cfg.out))
    results: list[dict] = []
    original_model = load_model(cfg.model)
    for seed in cfg.seeds:
        seed_dir = out / f"seed{seed}"
        manifest = _split(cfg, seed, seed_dir / "split.json", progress)
        stages = request_manifests(manifest, cfg.requests)
        first = {m: seed_dir / m / "request1" if cfg.requests > 1 else seed_dir / m for m in cfg.methods}
        rows, ws = _run_cells(cfg, seed, stages[0], original_model, cfg.model, first, None, progress)
        if cfg.requests > 1:
            rows = [_follow_requests(cfg, seed, stages, ws, seed_dir / name, progress) for name in cfg.methods]
        results += rows
        # the original's audits are those of a single request (after a sequence, rows carry the last request's)
        audits = {} if cfg.requests > 1 else _audits_after(RunFolder(first[rows[-1]["row"]]), "before")
        results += _reference_rows(rows[-1]["original"], seed, manifest.hash, audits)
    write_results(results, out)
    return results


def _run_cells(cfg: BenchmarkConfig, seed: int, manifest: SplitManifest, original_model: FaceModel, model_spec: str,
               folders: dict[str, Path], ws: Workspace | None, progress: bool) -> tuple[list[dict], Workspace | None]:
    """Each method's cell on `manifest` from `original_model`, in `folders[method]`; (rows, workspace if built)."""
    cells = {m: _cell_config(cfg, m, seed, manifest) for m in folders}
    order = sorted(cells, key=lambda m: cells[m].engine.model_dump_json(include={"forget_views", "retain_views",
                                                                                 "augment"}))
    rows = []
    for name in order:
        run = RunFolder(folders[name])
        if not _is_finished(run, cells[name], manifest, model_spec, original_model):
            if ws is None:
                earliest = min((c.engine.trainable for c in cells.values()), key=_start_block_of(original_model))
                ws = prepare(original_model, model_spec, manifest, earliest, cfg.eval, progress)
            run_in_workspace(ws, cells[name], run.root, progress, overwrite=True)  # stale or unfinished
        rows.append(run.read_metrics() | {"row": name, "audits": _audits_after(run)})
    return rows, ws


def _follow_requests(cfg: BenchmarkConfig, seed: int, stages: list[SplitManifest], ws: Workspace | None,
                     method_dir: Path, progress: bool) -> dict:
    """
    Requests 2..n of one method, each from the previous request's unlearned model (docs/protocol.md).

    The row is the last request's run measured against the original model on the whole split, with a
    "forget_request<k>" group per request; `ws` is request 1's workspace (None when its cell was reused: built
    here only if a later request still has to run; a sequence whose cells are all finished embeds nothing).
    """
    name = method_dir.name
    if not _requests_finished(cfg, seed, stages, method_dir):
        if ws is None:
            trainable = _cell_config(cfg, name, seed, stages[0]).engine.trainable
            ws = prepare(load_model(cfg.model), cfg.model, stages[0], trainable, cfg.eval, progress)
        for k in range(2, len(stages) + 1):
            previous = RunFolder(method_dir / f"request{k - 1}")
            model = load_model(str(previous.model))
            ws = next_request(ws, model, str(previous.model), stages[k - 1], progress)
            _run_cells(cfg, seed, stages[k - 1], model, str(previous.model), {name: method_dir / f"request{k}"}, ws,
                       progress)
    last = RunFolder(method_dir / f"request{len(stages)}")
    groups = request_identities(stages[-1], len(stages))
    original = np.load(RunFolder(method_dir / "request1").embeddings_original)
    look = lookalike_identities(original, stages[-1])
    before = evaluate_embeddings(original, stages[-1], cfg.eval, look, requests=groups)
    after = evaluate_embeddings(np.load(last.embeddings_unlearned), stages[-1], cfg.eval, look, requests=groups)
    timings = [RunFolder(method_dir / f"request{k}").read_metrics()["timings"] for k in range(1, len(stages) + 1)]
    summed = {stage: sum(t.get(stage, 0.0) for t in timings) for stage in timings[-1]}  # every request's stages
    return last.read_metrics() | {"row": name, "original": before, "unlearned": after, "split_hash": stages[-1].hash,
                                  "summary": summary_scores(before, after), "timings": summed,
                                  "audits": _audits_after(last)}


def _is_finished(run: RunFolder, cell: UnlearnConfig, manifest: SplitManifest, model_spec: str,
                 original_model: FaceModel) -> bool:
    """True when `run` holds a finished run of exactly this cell (same signature): it is reused, not rerun."""
    signature, _ = cell_signature(cell, manifest, model_spec, original_model)
    return run.is_complete() and run.read_metrics().get("signature") == signature


def _requests_finished(cfg: BenchmarkConfig, seed: int, stages: list[SplitManifest], method_dir: Path) -> bool:
    """True when requests 2..n of one method are all finished runs of their cells (nothing to embed or train)."""
    for k in range(2, len(stages) + 1):
        previous, stage = RunFolder(method_dir / f"request{k - 1}"), stages[k - 1]
        if not previous.is_complete():
            return False
        if not _is_finished(RunFolder(method_dir / f"request{k}"), _cell_config(cfg, method_dir.name, seed, stage),
                            stage, str(previous.model), load_model(str(previous.model))):
            return False
    return True


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
