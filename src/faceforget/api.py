"""The Python API behind the CLI: protocol, evaluate, unlearn (each stage composed from the packages)."""
from __future__ import annotations

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
from faceforget.unlearn.registry import get_method
from faceforget.workspace import prepare, run_in_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from faceforget.eval.audits import AuditInputs
    from faceforget.eval.embed import Embedded
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


def _embed_manifest(model: FaceModel, manifest: SplitManifest, cfg: EvalConfig, capture_at: int = 0,
                    progress: bool = True) -> "Embedded":
    return embed_records(model, list(manifest.records), manifest.data_root, manifest.distractor_root,
                         batch_size=cfg.batch_size, capture_at=capture_at, progress=progress,
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


def resolve_config(config: UnlearnConfig | dict | str | Path | None, method: str | None) -> UnlearnConfig:
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
            out: str | Path, progress: bool = True) -> UnlearnResult:
    """
    Unlearn the split's forget identities from `model` and evaluate before/after into run folder `out`.

    The original model is never modified. A killed run resumes from `out/checkpoint.pt` when the config,
    split and model are the same (checkpoints every `engine.checkpoint_every` steps).
    """
    cfg = resolve_config(config, method)
    get_method(cfg.method, cfg.params)  # fail fast on a bad method or params, before any embedding
    manifest = _as_manifest(split, data, progress)
    original = _as_model(model)
    spec = str(model) if not isinstance(model, FaceModel) else original.name
    ws = prepare(original, spec, manifest, cfg.engine.trainable, cfg.eval, progress)
    run, unlearned, metrics = run_in_workspace(ws, cfg, out, progress)
    return UnlearnResult(run, unlearned, metrics)


def audit_inputs(embeddings: np.ndarray, manifest: SplitManifest) -> "AuditInputs":
    """The audits' view of one model: embeddings (aligned with manifest.records) grouped by role."""
    from faceforget.eval.audits import AuditInputs, EmbeddingSet

    roles = np.array([r.role for r in manifest.records])
    labels = np.array([r.identity for r in manifest.records])
    paths = np.array([r.path for r in manifest.records])

    def role(name: str) -> EmbeddingSet:
        sel = roles == name
        return EmbeddingSet(embeddings[sel], labels[sel], tuple(paths[sel]))

    distractors = role("distractor") if (roles == "distractor").any() else None
    return AuditInputs(role("forget_train"), role("forget_test"), role("retain_test"), distractors)


def audit(unlearned: str | FaceModel | None, data: str | Path | None, split: str | Path | SplitManifest, *,
          original: str | FaceModel = "dlib", run: str | Path | None = None, seed: int = 0,
          cfg: EvalConfig | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """
    Attack the forgetting (re-enrolment, linear probe, threshold, membership inference), before/after.

    With `run` (a run folder from `unlearn`), its stored embeddings of both models are audited and
    nothing is re-embedded; otherwise both models embed the split's images.
    """
    from faceforget.eval.audits import run_audits
    from faceforget.report.tables import audit_summary

    cfg = cfg or EvalConfig()
    manifest = _as_manifest(split, data, progress)
    if run is not None:
        folder = RunFolder(Path(run))
        if folder.read_metrics()["split_hash"] != manifest.hash:
            raise ValueError(f"run folder {run} was made with another split (hash mismatch)")
        before = np.load(folder.root / "embeddings_original.npy", allow_pickle=False)
        after = np.load(folder.root / "embeddings_unlearned.npy", allow_pickle=False)
    else:
        if unlearned is None:
            raise ValueError("give the unlearned model or a run folder")
        before = _embed_manifest(_as_model(original), manifest, cfg, progress=progress).embeddings
        after = _embed_manifest(_as_model(unlearned), manifest, cfg, progress=progress).embeddings
    table = audit_summary(run_audits(audit_inputs(before, manifest), audit_inputs(after, manifest), seed))
    result = {"split_hash": manifest.hash, "seed": seed, "audits": table}
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
    rows = [_Labelled(str(p), r.identity) for p, r in zip(paths, records, strict=True)]
    gallery = Gallery.build(emb, rows, model_fingerprint=model_fingerprint(face_model), kind=kind)
    gallery.save(out)
    return gallery


@dataclass(frozen=True)
class _Labelled:
    path: str
    identity: str


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
                   progress=progress)


def report(run: str | Path, split: str | Path | SplitManifest, *, data: str | Path | None = None,
           out: str | Path | None = None, points: list[dict] | None = None, progress: bool = True) -> dict:
    """Write report.html/.md/.json for a run folder (with its audits.json if `audit` wrote one)."""
    import json

    from faceforget.report.html import write_report
    from faceforget.report.inputs import ReportInputs

    manifest = _as_manifest(split, data, progress)
    folder = RunFolder(Path(run))
    audits_path = folder.root / "audits.json"
    audits = json.loads(audits_path.read_text())["audits"] if audits_path.is_file() else None
    inputs = ReportInputs.from_run_folder(folder.root, manifest, audits=audits, points=points or ())
    return write_report(inputs, out or folder.root)


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


def gallery_check(gallery_dir: str | Path, manifest: SplitManifest, embeddings: np.ndarray,
                  model_fingerprint_: str, *, rebuild_from: np.ndarray | None = None) -> dict:
    """
    Search the gallery with every forget_test photo (leave-one-out): share whose top-1 is the same person.

    With `rebuild_from`, the gallery is first rebuilt (atomic swap) with those embeddings of the same images.
    """
    from faceforget.index.gallery import Gallery
    from faceforget.index.rebuild import rebuild

    if rebuild_from is not None:
        lookup = {str(p): i for i, p in enumerate(record_paths(manifest.records, manifest.data_root,
                                                               manifest.distractor_root))}
        rebuild(gallery_dir, lambda paths: rebuild_from[[lookup[str(p)] for p in paths]],
                model_fingerprint=model_fingerprint_, progress=False)
    gallery = Gallery.load(gallery_dir)
    queries = [i for i, r in enumerate(manifest.records) if r.role == "forget_test"]
    paths = record_paths([manifest.records[i] for i in queries], manifest.data_root, manifest.distractor_root)
    hits = gallery.search(embeddings[queries], 2)
    top1 = [next(h for h in row if h.path != str(p)) for row, p in zip(hits, paths, strict=True)]
    same = [h.identity == manifest.records[i].identity for h, i in zip(top1, queries, strict=True)]
    return {"gallery_rows": len(gallery), "forget_queries": len(queries),
            "forget_top1_same_identity": float(np.mean(same)) if same else float("nan")}


def demo(data: str | Path | None = None, out: str | Path = "demo", *, forget: int = 10, seed: int = 0,
         config: UnlearnConfig | dict | str | Path | None = None, download: bool = False,
         progress: bool = True) -> dict:
    """
    The whole job on LFW: protocol -> evaluate -> unlearn (dispersion) -> audit -> gallery rebuild -> report.

    LFW is for research use only. The gallery is built from the split's held-out photos and distractors
    with the original model, then rebuilt with the unlearned one.
    """
    from faceforget.data.lfw import locate_lfw
    from faceforget.index.gallery import Gallery

    root = locate_lfw(data, download=download)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = make_split(root / "dlib150", forget=forget, seed=seed, distractors=root / "distractors_dlib150",
                          out=out / "split.json", progress=progress)
    cfg = resolve_config(config, None)
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"seed": seed})})
    result = unlearn("dlib", None, manifest, config=cfg, out=out / "run", progress=progress)
    audits = audit(None, None, manifest, run=result.run.root, seed=seed, out=result.run.root / "audits.json",
                   progress=progress)
    before = np.load(result.run.root / "embeddings_original.npy")
    after = np.load(result.run.root / "embeddings_unlearned.npy")
    roles = ("forget_test", "retain_test", "distractor")
    idx = [i for i, r in enumerate(manifest.records) if r.role in roles]
    rows = [_Labelled(str(p), r.identity) for p, r in zip(
        record_paths([manifest.records[i] for i in idx], manifest.data_root, manifest.distractor_root),
        [manifest.records[i] for i in idx], strict=True)]
    gallery_dir = out / "gallery"
    Gallery.build(before[idx], rows, model_fingerprint=model_fingerprint(load_model("dlib"))).save(gallery_dir)
    gallery = {"before": gallery_check(gallery_dir, manifest, before, ""),
               "after": gallery_check(gallery_dir, manifest, after, model_fingerprint(result.model),
                                      rebuild_from=after)}
    write_json_atomic(out / "gallery.json", gallery)
    report(result.run.root, manifest, out=out, progress=progress)
    return {"out": str(out), "metrics": result.metrics, "audits": audits["audits"], "gallery": gallery}
