"""
Everything runs on one (model, split) share: original embeddings, the frozen prefix, the view banks.

`api.unlearn` runs one method in a workspace; `benchmark` runs every (method, seed) cell in one
workspace per seed, so the images are decoded and pushed through the frozen prefix once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceforget.config import EngineConfig, EvalConfig, RuntimeConfig, UnlearnConfig
from faceforget.data.errors import DataError
from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.embed import embed_from_prefix, embed_records, load_pixels, record_paths
from faceforget.eval.protocol import evaluate_embeddings, summary_scores
from faceforget.fileio import write_json_atomic
from faceforget.models.checkpoint import model_fingerprint, save_checkpoint
from faceforget.models.spec import FaceModel
from faceforget.runs import RunFolder, job_signature, write_config_snapshot
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
    embed_s: float
    _banks: dict = field(default_factory=dict)

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
                         self.metrics, self.eval_cfg, self.embed_s)

    def _advance(self, x: torch.Tensor, start: int) -> torch.Tensor:
        for block in list(self.original.blocks)[self.start:start]:
            x = block(x)
        return x

    def banks(self, cfg: EngineConfig, progress: bool,
              runtime: RuntimeConfig | None = None) -> tuple[ViewBank, ViewBank]:
        """View banks for `cfg` (cached by views, augmentation and seed: methods of one seed share them)."""
        key = (cfg.forget_views, cfg.retain_views, cfg.augment.model_dump_json(), cfg.seed, cfg.trainable)
        if key not in self._banks:
            self._banks.clear()
            self._banks[key] = build_banks(self.original, self.data, cfg, progress, runtime)
        return self._banks[key]


def prepare(original: FaceModel, model_spec: str, manifest: SplitManifest, trainable: str,
            eval_cfg: EvalConfig, progress: bool = True, device: str = "cpu") -> Workspace:
    """Embed every split image with the original model, keeping the activations where training starts."""
    t0 = time.perf_counter()
    start = first_trainable_block(original, trainable)
    emb = embed_records(original, list(manifest.records), manifest.data_root, manifest.distractor_root,
                        batch_size=eval_cfg.batch_size, capture_at=start, progress=progress,
                        description=f"embedding {len(manifest.records)} images", device=device)
    prefix = emb.prefix if emb.prefix is not None else torch.empty(0)
    data = unlearn_data(manifest, original.preprocess.input_size)
    metrics = evaluate_embeddings(emb.embeddings, manifest, eval_cfg)
    return Workspace(manifest, original, model_spec, start, emb.embeddings, prefix, data, metrics, eval_cfg,
                     time.perf_counter() - t0)


def _embed_unlearned(ws: Workspace, model: FaceModel, progress: bool, device: str = "cpu") -> np.ndarray:
    if ws.start == 0:
        return embed_records(model, list(ws.manifest.records), ws.manifest.data_root, ws.manifest.distractor_root,
                             batch_size=ws.eval_cfg.batch_size, progress=progress, device=device).embeddings
    return embed_from_prefix(model, ws.prefix, ws.start, device=device)


def cell_signature(cfg: UnlearnConfig, manifest: SplitManifest, model_spec: str, original: FaceModel) -> tuple[
        str, dict]:
    """(signature, resolved config) of a run: what decides whether a finished run folder can be reused."""
    method = get_method(cfg.method, cfg.params)
    resolved = cfg.model_dump(mode="json", exclude={"runtime"}) | {"params": method.params.model_dump(mode="json")}
    return job_signature(resolved, manifest.hash, model_spec + ":" + model_fingerprint(original)), resolved


def run_in_workspace(ws: Workspace, cfg: UnlearnConfig, out: str | Path, progress: bool = True) -> tuple[
        RunFolder, FaceModel, dict]:
    """
    Unlearn with `cfg` in `ws`, evaluate before/after, write the run folder; returns (run, model, metrics).

    A run that trains fewer blocks than `ws` caches reuses it (`Workspace.at`); one that trains more cannot.
    Under torchrun every rank trains; only rank 0 writes the folder and evaluates (others return {}).
    """
    method = get_method(cfg.method, cfg.params)
    ws = ws.at(first_trainable_block(ws.original, cfg.engine.trainable))
    signature, resolved = cell_signature(cfg, ws.manifest, ws.model_spec, ws.original)
    run = RunFolder(Path(out))
    main = current(cfg.runtime.device).is_main
    if main:
        write_config_snapshot(run, resolved, ws.manifest.hash, ws.model_spec, signature)
    t0 = time.perf_counter()
    banks = ws.banks(cfg.engine, progress, cfg.runtime)
    result = run_engine(method, ws.original, ws.data, cfg.engine, checkpoint_path=run.checkpoint,
                        signature=signature, progress=progress, banks=banks, runtime=cfg.runtime)
    if not main:
        return run, result.model, {}
    t_train = time.perf_counter()
    save_checkpoint(result.model, run.model, base=ws.original.name,
                    extra={"signature": signature, "method": cfg.method, "split_hash": ws.manifest.hash})
    after = _embed_unlearned(ws, result.model, progress, cfg.runtime.device)
    metrics_after = evaluate_embeddings(after, ws.manifest, ws.eval_cfg)
    t_end = time.perf_counter()
    timings = {"embed_original_s": ws.embed_s, **result.timings, "unlearn_wall_s": t_train - t0,
               "evaluate_s": t_end - t_train}
    metrics = {"method": cfg.method, "split_hash": ws.manifest.hash, "signature": signature,
               "seed": cfg.engine.seed, "original": ws.metrics, "unlearned": metrics_after,
               "summary": summary_scores(ws.metrics, metrics_after), "timings": timings,
               "method_state": _plain(result.method_state)}
    write_json_atomic(run.history, result.history)
    np.save(run.root / "embeddings_unlearned.npy", after)
    np.save(run.root / "embeddings_original.npy", ws.embeddings)
    write_json_atomic(run.metrics, metrics)
    if run.checkpoint.is_file():
        run.checkpoint.unlink()
    return run, result.model, metrics


def _plain(state: dict) -> dict:
    """The JSON-friendly values a method logged: scalars and dicts of scalars (tensors are left out)."""
    def scalar(v: object) -> bool:
        return isinstance(v, (int, float, str, bool))

    return {k: v for k, v in state.items()
            if scalar(v) or (isinstance(v, dict) and all(scalar(x) for x in v.values()))}
