"""
Everything runs on one (model, split) share: original embeddings, the frozen prefix, the view banks.

`api.unlearn` runs one method in a workspace; `benchmark` runs every (method, seed) cell in one
workspace per seed, so the images are decoded and pushed through the frozen prefix once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceforget.config import EngineConfig, EvalConfig, RuntimeConfig, UnlearnConfig
from faceforget.data.errors import DataError
from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.audits import audit_embeddings
from faceforget.eval.embed import embed_from_prefix, embed_records, load_pixels, record_paths
from faceforget.eval.protocol import evaluate_embeddings, lookalike_identities, summary_scores
from faceforget.fileio import write_json_atomic
from faceforget.models.checkpoint import model_fingerprint, save_checkpoint
from faceforget.models.features import penultimate_features
from faceforget.models.spec import FaceModel
from faceforget.runs import RunFolder, job_signature, write_config_snapshot
from faceforget.timings import Stopwatch
from faceforget.unlearn.distributed import current
from faceforget.unlearn.engine import UnlearnData, build_banks, run_engine
from faceforget.unlearn.method import ViewBank
from faceforget.unlearn.registry import get_method
from faceforget.unlearn.trainable import first_trainable_block


def unlearn_data(manifest: SplitManifest, size: tuple[int, int]) -> UnlearnData:
    """The split's train images as tensors, labelled over the train identities (forget + retain)."""
    forget, retain = manifest.by_role("forget_train"), manifest.by_role("retain_train")
    if not forget:
        raise DataError("the split has no forget_train images: nothing to unlearn")
    names = sorted({r.identity for r in forget + retain})
    index = {n: i for i, n in enumerate(names)}

    def pixels(recs: list[FaceRecord]) -> torch.Tensor:
        return load_pixels(record_paths(recs, manifest.data_root, manifest.distractor_root), size)

    def labels(recs: list[FaceRecord]) -> torch.Tensor:
        return torch.tensor([index[r.identity] for r in recs], dtype=torch.long)

    return UnlearnData(pixels(forget), labels(forget), pixels(retain), labels(retain), names,
                       sorted({index[r.identity] for r in forget}))


@dataclass
class Workspace:
    """The original model's view of one split, computed once and shared by every run on it."""

    manifest: SplitManifest
    original: FaceModel
    model_spec: str
    start: int
    embeddings: np.ndarray
    prefix: torch.Tensor
    data: UnlearnData
    metrics: dict
    eval_cfg: EvalConfig
    lookalikes: list[str] = field(default_factory=list)
    _banks: dict = field(default_factory=dict)
    _features: np.ndarray | None = None

    def at(self, start: int) -> Workspace:
        """The same workspace with the prefix cached at a later block (for a run that trains fewer blocks)."""
        if start == self.start:
            return self
        if start < self.start:
            raise ValueError(f"cannot move the cached prefix back from block {self.start} to {start}")
        if self.start == 0:  # nothing cached at the pixels: embed the images again, keeping block `start`
            h = embed_records(self.original, list(self.manifest.records), self.manifest.data_root,
                              self.manifest.distractor_root, batch_size=self.eval_cfg.batch_size, capture_at=start,
                              progress=False).prefix
        else:
            with torch.no_grad():
                h = torch.cat([self._advance(chunk, start) for chunk in self.prefix.split(256)])
        return Workspace(self.manifest, self.original, self.model_spec, start, self.embeddings, h, self.data,
                         self.metrics, self.eval_cfg, self.lookalikes)

    def _advance(self, x: torch.Tensor, start: int) -> torch.Tensor:
        for block in list(self.original.blocks)[self.start:start]:
            x = block(x)
        return x

    def probe_features(self, model: FaceModel) -> dict[str, np.ndarray]:
        """
        Features of every split image below the output, for the deeper linear probes (docs/audits.md).

        "penultimate": the input of `model`'s final linear layer; "suffix_input": the frozen prefix's output
        (spatially averaged), the same for every model trained from this workspace. Empty when nothing is
        cached (training from the pixels).
        """
        if self.start == 0:
            return {}
        if self._features is None:
            self._features = penultimate_features(self.original, self.prefix, self.start).numpy()
        pooled = self.prefix.mean(dim=tuple(range(2, self.prefix.dim()))) if self.prefix.dim() > 2 else self.prefix
        own = self._features if model is self.original else penultimate_features(model, self.prefix, self.start).numpy()
        return {"penultimate": own, "suffix_input": pooled.numpy()}

    def banks(self, cfg: EngineConfig, progress: bool,
              runtime: RuntimeConfig | None = None) -> tuple[ViewBank, ViewBank]:
        """View banks for `cfg` (cached by views, augmentation and seed: methods of one seed share them)."""
        key = (cfg.forget_views, cfg.retain_views, cfg.augment.model_dump_json(), cfg.seed, cfg.trainable)
        if key not in self._banks:
            self._banks.clear()
            self._banks[key] = build_banks(self.original, self.data, cfg, progress, runtime)
        return self._banks[key]


def prepare(original: FaceModel, model_spec: str, manifest: SplitManifest, trainable: str,
            eval_cfg: EvalConfig, progress: bool = True, watch: Stopwatch | None = None,
            device: str = "cpu") -> Workspace:
    """
    Embed every split image with the original model, keeping the activations where training starts.

    Books embed_original, load_train_images and evaluate_original on `watch` when one is given.
    """
    watch = Stopwatch() if watch is None else watch
    start = first_trainable_block(original, trainable)
    emb = embed_records(original, list(manifest.records), manifest.data_root, manifest.distractor_root,
                        batch_size=eval_cfg.batch_size, capture_at=start, progress=progress,
                        description=f"embedding {len(manifest.records)} images", device=device)
    prefix = emb.prefix if emb.prefix is not None else torch.empty(0)
    watch.lap("embed_original")
    data = unlearn_data(manifest, original.preprocess.input_size)
    watch.lap("load_train_images")
    lookalikes = lookalike_identities(emb.embeddings, manifest)
    metrics = evaluate_embeddings(emb.embeddings, manifest, eval_cfg, lookalikes)
    watch.lap("evaluate_original")
    return Workspace(manifest, original, model_spec, start, emb.embeddings, prefix, data, metrics, eval_cfg,
                     lookalikes)


def _embed_unlearned(ws: Workspace, model: FaceModel, progress: bool, device: str = "cpu") -> np.ndarray:
    if ws.start == 0:
        return embed_records(model, list(ws.manifest.records), ws.manifest.data_root, ws.manifest.distractor_root,
                             batch_size=ws.eval_cfg.batch_size, progress=progress, device=device).embeddings
    return embed_from_prefix(model, ws.prefix, ws.start, device=device)


def cell_signature(cfg: UnlearnConfig, manifest: SplitManifest, model_spec: str, original: FaceModel) -> tuple[
        str, dict]:
    """(signature, resolved config) of a run: what decides whether a finished run folder can be reused."""
    method = get_method(cfg.method, cfg.params)
    resolved = cfg.model_dump(mode="json") | {"params": method.params.model_dump(mode="json")}
    # thresholds judge a run, not change it; the runtime (device, autocast) says where it ran
    trained = {k: v for k, v in resolved.items() if k not in ("verdict", "runtime")}
    return job_signature(trained, manifest.hash, model_spec + ":" + model_fingerprint(original)), resolved


def run_in_workspace(ws: Workspace, cfg: UnlearnConfig, out: str | Path, progress: bool = True,
                     watch: Stopwatch | None = None) -> tuple[RunFolder, FaceModel, dict]:
    """
    Unlearn with `cfg` in `ws`, evaluate before/after, write the run folder; returns (run, model, metrics).

    A run that trains fewer blocks than `ws` caches reuses it (`Workspace.at`); one that trains more cannot.
    metrics.json's timings are `watch`'s stages (a new stopwatch started here when None), up to writing it.
    Under torchrun every rank trains; only rank 0 writes the folder and evaluates (the others return {}).
    """
    watch = Stopwatch() if watch is None else watch
    method = get_method(cfg.method, cfg.params)
    ws = ws.at(first_trainable_block(ws.original, cfg.engine.trainable))
    signature, resolved = cell_signature(cfg, ws.manifest, ws.model_spec, ws.original)
    run = RunFolder(Path(out))
    main = current(cfg.runtime.device).is_main
    if main:
        write_config_snapshot(run, resolved, ws.manifest.hash, ws.model_spec, signature)
    banks = ws.banks(cfg.engine, progress, cfg.runtime)
    result = run_engine(method, ws.original, ws.data, cfg.engine, checkpoint_path=run.checkpoint,
                        signature=signature, progress=progress, banks=banks, watch=watch, runtime=cfg.runtime)
    if not main:
        return run, result.model, {}
    save_checkpoint(result.model, run.model, base=ws.original.name,
                    extra={"signature": signature, "method": cfg.method, "split_hash": ws.manifest.hash})
    watch.lap("save_model")
    after = _embed_unlearned(ws, result.model, progress, cfg.runtime.device)
    watch.lap("embed_unlearned")
    metrics_after = evaluate_embeddings(after, ws.manifest, ws.eval_cfg, ws.lookalikes)
    watch.lap("evaluate_unlearned")
    audits = audit_run(ws, result.model, after, cfg.engine.seed, run)
    watch.lap("audits")
    write_json_atomic(run.history, result.history)
    np.save(run.root / "embeddings_unlearned.npy", after)
    np.save(run.root / "embeddings_original.npy", ws.embeddings)
    watch.lap("write_outputs")
    metrics = {"method": cfg.method, "split_hash": ws.manifest.hash, "signature": signature,
               "seed": cfg.engine.seed, "original": ws.metrics, "unlearned": metrics_after,
               "summary": summary_scores(ws.metrics, metrics_after), "timings": watch.timings(),
               "method_state": _plain(result.method_state)}
    write_json_atomic(run.metrics, metrics)
    write_json_atomic(run.root / "audits.json", audits)
    if run.checkpoint.is_file():
        run.checkpoint.unlink()
    return run, result.model, metrics


def audit_run(ws: Workspace, model: FaceModel, after: np.ndarray, seed: int, run: RunFolder) -> dict:
    """Audit one unlearned model against the workspace's original; keep the probe features in `run`."""
    before_f, after_f = ws.probe_features(ws.original), ws.probe_features(model)
    for space in before_f:
        np.save(run.root / f"features_{space}_original.npy", before_f[space])
        np.save(run.root / f"features_{space}_unlearned.npy", after_f[space])
    return audit_embeddings(ws.manifest, ws.embeddings, after, seed, before_f, after_f)


def _plain(state: dict) -> dict:
    """The JSON-friendly values a method logged: scalars and dicts of scalars (tensors are left out)."""
    def scalar(v: object) -> bool:
        return isinstance(v, (int, float, str, bool))

    return {k: v for k, v in state.items()
            if scalar(v) or (isinstance(v, dict) and all(scalar(x) for x in v.values()))}
