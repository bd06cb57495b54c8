"""The Python API behind the CLI: protocol, evaluate, unlearn, audit, index, report, demo (composition only)."""
from __future__ import annotations

import contextlib
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
from faceforget.eval.embed import EmbedBackend, embed_paths, embed_records, record_paths
from faceforget.eval.protocol import evaluate_embeddings
from faceforget.fileio import sha256_file, write_json_atomic
from faceforget.models.checkpoint import model_fingerprint
from faceforget.models.registry import load_model
from faceforget.models.spec import FaceModel
from faceforget.runs import RunFolder
from faceforget.timings import Stopwatch
from faceforget.unlearn.recipe import resolve_recipe
from faceforget.unlearn.registry import get_method
from faceforget.workspace import cell_signature, prepare, run_in_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from faceforget.eval.embed import Embedded
    from faceforget.eval.verdict import Verdict
    from faceforget.index.gallery import Gallery
    from faceforget.index.query_quality import QueryResult


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


def _as_model(model: str | FaceModel, verify: bool = True) -> FaceModel:
    return model if isinstance(model, FaceModel) else load_model(str(model), verify=verify)


def _file_sha256(model: str | FaceModel) -> str | None:
    """sha256 of a model given as a file (None for a registered name or an in-memory model)."""
    return sha256_file(model) if not isinstance(model, FaceModel) and Path(model).is_file() else None


def _spec_of(model: str | FaceModel) -> str:
    """How a model was asked for (registered name or model.pt path) as results record it."""
    return model.name if isinstance(model, FaceModel) else str(model)


def _embed_manifest(model: FaceModel, manifest: SplitManifest, cfg: EvalConfig, progress: bool = True) -> "Embedded":
    return embed_records(model, list(manifest.records), manifest.data_root, manifest.distractor_root,
                         batch_size=cfg.batch_size, progress=progress,
                         description=f"embedding {len(manifest.records)} images")


def evaluate(model: str | FaceModel, data: str | Path | None, split: str | Path | SplitManifest, *,
             cfg: EvalConfig | None = None, out: str | Path | None = None, progress: bool = True,
             verify: bool = True) -> dict:
    """Embed every image of the split with `model` and compute the protocol's metrics (JSON-ready dict)."""
    cfg = cfg or EvalConfig()
    manifest = _as_manifest(split, data, progress)
    face_model = _as_model(model, verify)
    emb = _embed_manifest(face_model, manifest, cfg, progress=progress).embeddings
    result = {"model": str(model) if not isinstance(model, FaceModel) else face_model.name,
              "model_sha256": _file_sha256(model), "split_hash": manifest.hash,
              "metrics": evaluate_embeddings(emb, manifest, cfg)}
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
            out: str | Path, progress: bool = True, watch: Stopwatch | None = None, overwrite: bool = False,
            verify: bool = True, device: str | None = None, amp: bool | None = None) -> UnlearnResult:
    """
    Unlearn the split's forget identities from `model` and evaluate before/after into run folder `out`.

    The method's reference recipe is merged in as for a benchmark cell (`unlearn.recipe.resolve_recipe`).
    The original model is never modified. A killed run resumes from `out/checkpoint.pt` when the config,
    split and model are the same (checkpoints every `engine.checkpoint_every` steps). A folder holding a
    finished run, or another job's unfinished one, is refused unless `overwrite` (checked before embedding;
    docs/safety.md). metrics.json's timings are the stages of this call, or of `watch` (a longer job's
    stopwatch, e.g. the demo's). `device` / `amp` override the config's `runtime`; under torchrun only rank 0
    writes `out` (docs/scale.md).
    """
    watch = Stopwatch() if watch is None else watch
    cfg = load_config(config, method)
    overrides = {k: v for k, v in (("device", device), ("amp", amp)) if v is not None}
    cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update=overrides)})
    get_method(cfg.method, cfg.params)  # fail fast on a bad method or params, before any embedding
    manifest = _as_manifest(split, data, progress)
    cfg = resolve_recipe(cfg, len(manifest.by_role("forget_train")), len(manifest.by_role("retain_train")))
    watch.lap("load_split")
    original_model = _as_model(model, verify)
    watch.lap("load_model")
    RunFolder(Path(out)).check_reuse(cell_signature(cfg, manifest, _spec_of(model), original_model)[0], overwrite)
    source = str(split) if not isinstance(split, SplitManifest) else "the split"
    ws = prepare(original_model, _spec_of(model), manifest, cfg.engine.trainable, cfg.eval, progress, watch,
                 source=source, device=cfg.runtime.device, backend=cfg.runtime.embed_backend)
    run, unlearned, metrics = run_in_workspace(ws, cfg, out, progress, watch, overwrite=overwrite)
    return UnlearnResult(run, unlearned, metrics)


def audit(unlearned: str | FaceModel | None, data: str | Path | None, split: str | Path | SplitManifest, *,
          original_model: str | FaceModel = "dlib", run: str | Path | None = None, seed: int = 0,
          cfg: EvalConfig | None = None, out: str | Path | None = None, progress: bool = True,
          verify: bool = True) -> dict:
    """
    Attack the forgetting (re-enrolment, linear probe, threshold, membership inference), before/after.

    With `run` (a run folder from `unlearn`), its stored embeddings of both models are audited and
    nothing is re-embedded; otherwise both models embed the split's images. The result records the
    unlearned model's sha256 (None for an in-memory model), which `report` checks.
    """
    from faceforget.eval.audits import audit_embeddings

    cfg = cfg or EvalConfig()
    manifest = _as_manifest(split, data, progress)
    features: tuple[dict, dict] = ({}, {})
    folder = None if run is None else RunFolder(Path(run))
    with folder.writing() if folder is not None else contextlib.nullcontext():  # no unlearn may replace it meanwhile
        if folder is not None:
            metrics = folder.read_metrics()
            if metrics.get("split_hash") != manifest.hash:
                raise ValueError(f"run folder {run} was made with another split (hash mismatch)")
            model_sha256 = folder.check_model(metrics, folder.metrics)
            before, after, *features = folder.stored_outputs()
        else:
            if unlearned is None:
                raise ValueError("give the unlearned model or a run folder")
            model_sha256 = _file_sha256(unlearned)
            before = _embed_manifest(_as_model(original_model, verify), manifest, cfg, progress=progress).embeddings
            after = _embed_manifest(_as_model(unlearned, verify), manifest, cfg, progress=progress).embeddings
        result = audit_embeddings(manifest, before, after, seed, *features) | {"model_sha256": model_sha256}
        if out is not None:
            write_json_atomic(out, result)
    return result


def _embed_fn(model: FaceModel, batch_size: int = 64) -> "Callable[[list[Path]], np.ndarray]":
    def embed(paths: list[Path]) -> np.ndarray:
        return embed_paths(model, paths, batch_size=batch_size, progress=False).embeddings
    return embed


def _null_embeddings(model: FaceModel) -> np.ndarray:
    """The model's embeddings of images without a face (`query_quality.null_images`): the non-face check."""
    from faceforget.eval.embed import embed_pixels
    from faceforget.index.query_quality import null_images

    return embed_pixels(model, null_images(model.preprocess.input_size))


def index_build(model: str | FaceModel, data: str | Path, out: str | Path, *,
                split: str | Path | None = None, roles: tuple[str, ...] = ("forget_test", "retain_test", "distractor"),
                kind: str = "auto", batch_size: int = 64, progress: bool = True, verify: bool = True,
                backend: EmbedBackend = "torch") -> "Gallery":
    """
    Build and save a FAISS gallery of a folder/CSV dataset, or of the split's `roles` when `split` is given.

    `backend` runs the embedding on torch or on onnxruntime (eval/embed.py).
    """
    from faceforget.index.gallery import Gallery
    from faceforget.index.split_gallery import labelled_paths

    face_model = _as_model(model, verify)
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
                      description=f"indexing {len(paths)} images", backend=backend).embeddings
    gallery = Gallery.build(emb, labelled_paths(records, paths), model_fingerprint=model_fingerprint(face_model),
                            kind=kind, model=_spec_of(model), null_embeddings=_null_embeddings(face_model))
    gallery.save(out)
    return gallery


def index_search(gallery_dir: str | Path, model: str | FaceModel, queries: list[str | Path], *, k: int = 5,
                 progress: bool = False, verify: bool = True) -> list["QueryResult"]:
    """
    Top-k gallery hits for each query image, with a flag when the query is probably not a face.

    The model must be the one the gallery was built with. The flag combines the gallery's non-face score
    (`index/query_quality.py`) and, when dlib is installed, dlib's face detector (docs/safety.md).
    """
    from faceforget.index.gallery import Gallery
    from faceforget.index.query_quality import search_checked

    face_model = _as_model(model, verify)
    gallery = Gallery.load(gallery_dir, model_fingerprint=model_fingerprint(face_model))
    paths = [Path(q) for q in queries]
    return search_checked(gallery, embed_paths(face_model, paths, progress=progress).embeddings, paths, k)


def index_delete(gallery_dir: str | Path, identities: list[str]) -> int:
    """Remove every row of the named identities and save (locked: no concurrent change is lost); rows removed."""
    from faceforget.index.gallery import delete_saved

    return delete_saved(gallery_dir, identities)


def index_rebuild(gallery_dir: str | Path, model: str | FaceModel, *, progress: bool = True,
                  verify: bool = True) -> "Gallery":
    """Re-embed every gallery image with `model`; atomic swap that keeps deletes made meanwhile."""
    from faceforget.index.rebuild import rebuild

    face_model = _as_model(model, verify)
    return rebuild(gallery_dir, _embed_fn(face_model), model_fingerprint=model_fingerprint(face_model),
                   progress=progress, model=_spec_of(model), null_embeddings=_null_embeddings(face_model))


def _read_audits(folder: RunFolder) -> dict | None:
    """The run folder's audits.json table (refused if made from another model), or None when there is none."""
    if not folder.audits.is_file():
        return None
    return folder.read_audits(folder.check_model(folder.read_metrics(), folder.metrics))


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
    Refused when metrics.json or audits.json were made from another model than the folder's model.pt.
    """
    from faceforget.report.html import write_report
    from faceforget.report.inputs import ReportInputs

    manifest = _as_manifest(split, data, progress)
    folder = RunFolder(Path(run))
    with folder.writing():
        folder.check_model(folder.read_metrics(), folder.metrics)
        inputs = ReportInputs.from_run_folder(folder.root, manifest, audits=_read_audits(folder),
                                              points=points or (), gallery=_gallery_check_dict(gallery))
        return write_report(inputs, out or folder.root)


def verdict(run: str | Path | None, *, audits: dict | None = None,
            gallery: dict | str | Path | None = None) -> "Verdict":
    """
    The acceptance checks (docs/report.md) of a run folder's metrics, held to the bars its config recorded.

    `audits` (`audit`'s table; default: the run's own audits.json) and `gallery` (the gallery check) are what
    was measured besides; without them those checks are "not measured".
    """
    from faceforget.config import VerdictConfig
    from faceforget.eval.verdict import judge, thresholds_of

    metrics, thresholds = None, VerdictConfig()
    if run is not None:
        folder = RunFolder(Path(run))
        metrics = folder.read_metrics()
        if folder.config.is_file():
            thresholds = thresholds_of(json.loads(folder.config.read_text()))
        audits = _read_audits(folder) if audits is None else audits
    return judge(metrics, audits, _gallery_check_dict(gallery), thresholds)


def align(data: str | Path, out: str | Path, *, template: str = "arcface112", landmarks: str | Path | None = None,
          detect: bool = False, skip_bad: bool = False, progress: bool = True) -> dict:
    """Align a dataset's images to the ArcFace-112 or dlib-150 template into a folder per identity."""
    from faceforget.data.align_dataset import align_dataset

    return align_dataset(data, out, template, landmarks=landmarks, detect=detect, skip_bad=skip_bad,
                         progress=progress).to_dict()


def export(model: str | FaceModel, out: str | Path, *, opset: int = 17) -> float:
    """Write `model` (run/model.pt, a registered name or a model file) as ONNX; returns the onnxruntime error."""
    from faceforget.models.onnx_export import export_onnx

    return export_onnx(_as_model(model), out, opset=opset)


def demo(data: str | Path | None = None, out: str | Path = "demo", *, forget: int = 10, seed: int = 0,
         config: UnlearnConfig | dict | str | Path | None = None, download: bool = False,
         progress: bool = True, overwrite: bool = False) -> dict:
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
    manifest = make_split(root / "dlib150", forget=forget, seed=seed, distractors=root / "distractors_dlib150",
                          out=out / "split.json", progress=progress)
    watch.lap("protocol")
    cfg = load_config(config, None)
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"seed": seed})})
    original_model = load_model("dlib")
    watch.lap("load_model")  # loaded once here: the gallery's fingerprint and the unlearning's start
    result = unlearn(original_model, None, manifest, config=cfg, out=out / "run", progress=progress, watch=watch,
                     overwrite=overwrite)
    audits = json.loads(result.run.audits.read_text())  # written (and timed) by the run itself
    before = np.load(result.run.embeddings_original)
    after = np.load(result.run.embeddings_unlearned)
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
