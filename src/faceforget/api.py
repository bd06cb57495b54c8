"""The Python API behind the CLI: protocol, evaluate, unlearn, audit, index, report, demo (composition only)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceforget.config import EvalConfig, UnlearnConfig, load_yaml, validate_config
from faceforget.data.errors import DataError
from faceforget.data.records import SplitManifest
from faceforget.data.sources import read_records
from faceforget.data.split import load_split
from faceforget.data.split import make_split as _make_split
from faceforget.eval.embed import embed_paths, embed_records, record_paths
from faceforget.eval.protocol import evaluate_embeddings
from faceforget.fileio import write_json_atomic
from faceforget.models.checkpoint import model_fingerprint
from faceforget.models.registry import load_model
from faceforget.models.spec import FaceModel
from faceforget.runs import RunFolder
from faceforget.timings import Stopwatch
from faceforget.unlearn.recipe import resolve_recipe
from faceforget.unlearn.registry import get_method
from faceforget.workspace import prepare, run_in_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from faceforget.eval.embed import Embedded
    from faceforget.eval.verdict import Verdict
    from faceforget.index.gallery import Gallery, Hit


def make_split(data: str | Path, *, forget: int | None = None, forget_list: list[str] | None = None,
               seed: int = 0, distractors: str | Path | None = None, min_images: int = 5,
               test_fraction: float = 0.5, skip_bad: bool = False, out: str | Path | None = None,
               progress: bool = True) -> SplitManifest:
    """Read a dataset (folder tree or CSV), assign protocol roles, optionally write the manifest."""
    root, records = read_records(data)
    d_root, d_records = (None, None) if distractors is None else read_records(distractors)
    manifest, _ = _make_split(records, data_root=root, forget=forget, forget_list=forget_list, seed=seed,
                              min_images=min_images, test_fraction=test_fraction, distractor_records=d_records,
                              distractor_root=d_root, skip_bad=skip_bad, progress=progress)
    if out is not None:
        manifest.save(out)
    return manifest


def _as_manifest(split: str | Path | SplitManifest, data: str | Path | None, progress: bool) -> SplitManifest:
    if isinstance(split, SplitManifest):
        return split
    return load_split(split, data_root=data, progress=progress)


def _as_model(model: str | FaceModel) -> FaceModel:
    return model if isinstance(model, FaceModel) else load_model(str(model))


def _spec_of(model: str | FaceModel) -> str:
    """How a model was asked for (registered name or model.pt path) as results record it."""
    return model.name if isinstance(model, FaceModel) else str(model)


def _embed_manifest(model: FaceModel, manifest: SplitManifest, cfg: EvalConfig, progress: bool = True) -> "Embedded":
    return embed_records(model, list(manifest.records), manifest.data_root, manifest.distractor_root,
                         batch_size=cfg.batch_size, progress=progress,
                         description=f"embedding {len(manifest.records)} images")


def evaluate(model: str | FaceModel, data: str | Path | None, split: str | Path | SplitManifest, *,
             cfg: EvalConfig | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """Embed every image of the split with `model` and compute the protocol's metrics (JSON-ready dict)."""
    cfg = cfg or EvalConfig()
    manifest = _as_manifest(split, data, progress)
    face_model = _as_model(model)
    emb = _embed_manifest(face_model, manifest, cfg, progress=progress).embeddings
    result = {"model": str(model) if not isinstance(model, FaceModel) else face_model.name,
              "split_hash": manifest.hash, "metrics": evaluate_embeddings(emb, manifest, cfg)}
    if out is not None:
        write_json_atomic(out, result)
    return result


@dataclass
class UnlearnResult:
    """What `unlearn` produced: the run folder, the model and the metrics dict written to metrics.json."""

    run: RunFolder
    model: FaceModel
    metrics: dict


def load_config(config: UnlearnConfig | dict | str | Path | None, method: str | None) -> UnlearnConfig:
    """An UnlearnConfig from a file, dict or object; `method` (if given) overrides the config's method."""
    if config is None:
        cfg = UnlearnConfig()
    elif isinstance(config, UnlearnConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = validate_config(UnlearnConfig, config)
    else:
        cfg = load_yaml(config, UnlearnConfig)
    return cfg.model_copy(update={"method": method}) if method else cfg


def unlearn(model: str | FaceModel, data: str | Path | None, split: str | Path | SplitManifest, *,
            method: str | None = None, config: UnlearnConfig | dict | str | Path | None = None,
            out: str | Path, progress: bool = True, watch: Stopwatch | None = None) -> UnlearnResult:
    """
    Unlearn the split's forget identities from `model` and evaluate before/after into run folder `out`.

    The method's reference recipe is merged in as for a benchmark cell (`unlearn.recipe.resolve_recipe`).
    The original model is never modified. A killed run resumes from `out/checkpoint.pt` when the config,
    split and model are the same (checkpoints every `engine.checkpoint_every` steps). metrics.json's
    timings are the stages of this call, or of `watch` (a longer job's stopwatch, e.g. the demo's).
    """
    watch = Stopwatch() if watch is None else watch
    cfg = load_config(config, method)
    get_method(cfg.method, cfg.params)  # fail fast on a bad method or params, before any embedding
    manifest = _as_manifest(split, data, progress)
    cfg = resolve_recipe(cfg, len(manifest.by_role("forget_train")), len(manifest.by_role("retain_train")))
    watch.lap("load_split")
    original_model = _as_model(model)
    watch.lap("load_model")
    ws = prepare(original_model, _spec_of(model), manifest, cfg.engine.trainable, cfg.eval, progress, watch)
    run, unlearned, metrics = run_in_workspace(ws, cfg, out, progress, watch)
    return UnlearnResult(run, unlearned, metrics)


def audit(unlearned: str | FaceModel | None, data: str | Path | None, split: str | Path | SplitManifest, *,
          original_model: str | FaceModel = "dlib", run: str | Path | None = None, seed: int = 0,
          cfg: EvalConfig | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """
    Attack the forgetting (re-enrolment, linear probe, threshold, membership inference), before/after.

    With `run` (a run folder from `unlearn`), its stored embeddings of both models are audited and
    nothing is re-embedded; otherwise both models embed the split's images.
    """
    from faceforget.eval.audits import audit_embeddings

    cfg = cfg or EvalConfig()
    manifest = _as_manifest(split, data, progress)
    features: tuple[dict, dict] = ({}, {})
    if run is not None:
        folder = RunFolder(Path(run))
        if folder.read_metrics()["split_hash"] != manifest.hash:
            raise ValueError(f"run folder {run} was made with another split (hash mismatch)")
        before = np.load(folder.root / "embeddings_original.npy", allow_pickle=False)
        after = np.load(folder.root / "embeddings_unlearned.npy", allow_pickle=False)
        for space in ("penultimate", "suffix_input"):
            files = [folder.root / f"features_{space}_{m}.npy" for m in ("original", "unlearned")]
            if all(f.is_file() for f in files):
                features[0][space], features[1][space] = (np.load(f, allow_pickle=False) for f in files)
    else:
        if unlearned is None:
            raise ValueError("give the unlearned model or a run folder")
        before = _embed_manifest(_as_model(original_model), manifest, cfg, progress=progress).embeddings
        after = _embed_manifest(_as_model(unlearned), manifest, cfg, progress=progress).embeddings
    result = audit_embeddings(manifest, before, after, seed, *features)
    if out is not None:
        write_json_atomic(out, result)
    return result


def _embed_fn(model: FaceModel, batch_size: int = 64) -> "Callable[[list[Path]], np.ndarray]":
    def embed(paths: list[Path]) -> np.ndarray:
        return embed_paths(model, paths, batch_size=batch_size, progress=False).embeddings
    return embed


def index_build(model: str | FaceModel, data: str | Path, out: str | Path, *,
                split: str | Path | None = None, roles: tuple[str, ...] = ("forget_test", "retain_test", "distractor"),
                kind: str = "auto", batch_size: int = 64, progress: bool = True) -> "Gallery":
    """Build and save a FAISS gallery of a folder/CSV dataset, or of the split's `roles` when `split` is given."""
    from faceforget.index.gallery import Gallery
    from faceforget.index.split_gallery import labelled_paths

    face_model = _as_model(model)
    if split is not None:
        manifest = _as_manifest(split, data, progress)
        records = manifest.by_role(*roles)
        paths = record_paths(records, manifest.data_root, manifest.distractor_root)
    else:
        root, records = read_records(data)
        paths = record_paths(records, root)
    if not records:
        raise DataError(f"no images to index in {data} (roles {roles})" if split else f"no images in {data}")
    emb = embed_paths(face_model, paths, batch_size=batch_size, progress=progress,
                      description=f"indexing {len(paths)} images").embeddings
    gallery = Gallery.build(emb, labelled_paths(records, paths), model_fingerprint=model_fingerprint(face_model),
                            kind=kind, model=_spec_of(model))
    gallery.save(out)
    return gallery


def index_search(gallery_dir: str | Path, model: str | FaceModel, queries: list[str | Path], *, k: int = 5,
                 progress: bool = False) -> list[list["Hit"]]:
    """Top-k gallery hits for each query image; the model must be the one the gallery was built with."""
    from faceforget.index.gallery import Gallery

    face_model = _as_model(model)
    gallery = Gallery.load(gallery_dir, model_fingerprint=model_fingerprint(face_model))
    emb = embed_paths(face_model, [Path(q) for q in queries], progress=progress).embeddings
    return gallery.search(emb, k)


def index_delete(gallery_dir: str | Path, identities: list[str]) -> int:
    """Remove every row of the named identities and save; returns the number of rows removed."""
    from faceforget.index.gallery import Gallery

    gallery = Gallery.load(gallery_dir)
    removed = gallery.delete_identities(identities)
    gallery.save(gallery_dir)
    return removed


def index_rebuild(gallery_dir: str | Path, model: str | FaceModel, *, progress: bool = True) -> "Gallery":
    """Re-embed every gallery image with `model`; the swap is atomic (a crash leaves the old gallery)."""
    from faceforget.index.rebuild import rebuild

    face_model = _as_model(model)
    return rebuild(gallery_dir, _embed_fn(face_model), model_fingerprint=model_fingerprint(face_model),
                   progress=progress, model=_spec_of(model))


def _read_audits(folder: RunFolder) -> dict | None:
    """The run folder's audits.json table, or None when `audit` has not written one."""
    path = folder.root / "audits.json"
    return json.loads(path.read_text())["audits"] if path.is_file() else None


def _gallery_check_dict(gallery: dict | str | Path | None) -> dict | None:
    """A gallery check given as its dict or as the path of the gallery.json holding it."""
    if gallery is None or isinstance(gallery, dict):
        return gallery
    path = Path(gallery)
    if not path.is_file():
        raise FileNotFoundError(f"gallery check not found: {path}")
    return json.loads(path.read_text())


def report(run: str | Path, split: str | Path | SplitManifest, *, data: str | Path | None = None,
           out: str | Path | None = None, points: list[dict] | None = None, progress: bool = True,
           gallery: dict | str | Path | None = None) -> dict:
    """
    Write report.html/.md/.json for a run folder (with its audits.json if `audit` wrote one).

    `gallery`: the gallery check ({"before", "after"}, or the gallery.json `demo` writes) for the verdict.
    """
    from faceforget.report.html import write_report
    from faceforget.report.inputs import ReportInputs

    manifest = _as_manifest(split, data, progress)
    folder = RunFolder(Path(run))
    inputs = ReportInputs.from_run_folder(folder.root, manifest, audits=_read_audits(folder), points=points or (),
                                          gallery=_gallery_check_dict(gallery))
    return write_report(inputs, out or folder.root)


def verdict(run: str | Path | None, *, audits: dict | None = None,
            gallery: dict | str | Path | None = None) -> "Verdict":
    """
    The acceptance checks (docs/report.md) of a run folder's metrics, held to the bars its config recorded.

    `audits` (`audit`'s table) and `gallery` (the gallery check) are what was measured besides; without
    them, and without a run, those checks are "not measured".
    """
    from faceforget.config import VerdictConfig
    from faceforget.eval.verdict import judge, thresholds_of

    metrics, thresholds = None, VerdictConfig()
    if run is not None:
        folder = RunFolder(Path(run))
        metrics = folder.read_metrics()
        if folder.config.is_file():
            thresholds = thresholds_of(json.loads(folder.config.read_text()))
    return judge(metrics, audits, _gallery_check_dict(gallery), thresholds)


def demo(data: str | Path | None = None, out: str | Path = "demo", *, forget: int = 10, seed: int = 0,
         config: UnlearnConfig | dict | str | Path | None = None, download: bool = False,
         progress: bool = True) -> dict:
    """
    The whole job on LFW: protocol -> evaluate -> unlearn (dispersion) -> audit -> gallery rebuild -> report.

    LFW is for research use only. The gallery is built from the split's held-out photos and distractors
    with the original model, then rebuilt with the unlearned one. One stopwatch times every stage; the
    run's metrics.json gets them (the report shows them up to the report itself).
    """
    from faceforget.data.lfw import locate_lfw
    from faceforget.index.gallery import Gallery
    from faceforget.index.split_gallery import forget_top1, rebuild_with, split_gallery

    watch = Stopwatch()
    root = locate_lfw(data, download=download)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = make_split(root / "dlib150", forget=forget, seed=seed, distractors=root / "distractors_dlib150",
                          out=out / "split.json", progress=progress)
    watch.lap("protocol")
    cfg = load_config(config, None)
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"seed": seed})})
    original_model = load_model("dlib")
    watch.lap("load_model")  # loaded once here: the gallery's fingerprint and the unlearning's start
    result = unlearn(original_model, None, manifest, config=cfg, out=out / "run", progress=progress, watch=watch)
    audits = json.loads((result.run.root / "audits.json").read_text())  # written (and timed) by the run itself
    before = np.load(result.run.root / "embeddings_original.npy")
    after = np.load(result.run.root / "embeddings_unlearned.npy")
    gallery_dir = out / "gallery"
    split_gallery(manifest, before, model_fingerprint(original_model), model="dlib").save(gallery_dir)
    gallery = {"before": forget_top1(Gallery.load(gallery_dir), manifest, before)}
    rebuilt = rebuild_with(gallery_dir, manifest, after, model_fingerprint(result.model), model=str(result.run.model))
    gallery["after"] = forget_top1(rebuilt, manifest, after)
    write_json_atomic(out / "gallery.json", gallery)
    watch.lap("gallery")
    _record_timings(result.run, watch)
    report(result.run.root, manifest, out=out, progress=progress, gallery=gallery)
    watch.lap("report")
    metrics = _record_timings(result.run, watch)
    return {"out": str(out), "metrics": metrics, "audits": audits["audits"], "gallery": gallery,
            "verdict": verdict(result.run.root, audits=audits["audits"], gallery=gallery).as_dict()}


def _record_timings(run: RunFolder, watch: Stopwatch) -> dict:
    """Replace the timings in the run's metrics.json with `watch`'s stages so far; returns the new metrics."""
    metrics = run.read_metrics() | {"timings": watch.timings()}
    write_json_atomic(run.metrics, metrics)
    return metrics
