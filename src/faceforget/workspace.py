"""
What every run on one (model, split) shares, computed once: the original model's outputs and the view banks.

It holds the original model's embeddings and metrics of every record, the activations entering the
first trainable block, the train images' pixels and the latest view banks.

`api.unlearn` runs one method in a workspace; `benchmark` runs every (method, seed) cell in one
workspace per seed, so the original model embeds each image once (keeping its prefix activations) and
the train pixels are decoded once more for the view banks. The banks of one setting (views,
augmentation, seed, trainable blocks) are kept until a run asks for another, and the benchmark orders
its cells by views and augmentation so that runs sharing banks follow each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceforget.config import EngineConfig, EvalConfig, UnlearnConfig
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
    original_model: FaceModel
    model_spec: str
    start_block: int
    embeddings_before: np.ndarray  # the original model's raw embedding of every manifest record
    prefix: torch.Tensor  # the input of block `start_block` for every manifest record
    data: UnlearnData
    metrics_before: dict  # `evaluate_embeddings` of embeddings_before
    eval_cfg: EvalConfig
    lookalikes: list[str] = field(default_factory=list)
    _banks: dict = field(default_factory=dict)
    _features: np.ndarray | None = None

    def at(self, start_block: int) -> Workspace:
        """The same workspace with the prefix cached at a later block (for a run that trains fewer blocks)."""
        if start_block == self.start_block:
            return self
        if start_block < self.start_block:
            raise ValueError(f"cannot move the cached prefix back from block {self.start_block} to {start_block}")
        if self.start_block == 0:  # nothing cached at the pixels: embed the images again, keeping the prefix
            h = embed_records(self.original_model, list(self.manifest.records), self.manifest.data_root,
                              self.manifest.distractor_root, batch_size=self.eval_cfg.batch_size,
                              start_block=start_block, progress=False).prefix
        else:
            with torch.no_grad():
                h = torch.cat([self._advance(chunk, start_block) for chunk in self.prefix.split(256)])
        return Workspace(self.manifest, self.original_model, self.model_spec, start_block, self.embeddings_before, h,
                         self.data, self.metrics_before, self.eval_cfg, self.lookalikes)

    def _advance(self, x: torch.Tensor, start_block: int) -> torch.Tensor:
        for block in list(self.original_model.blocks)[self.start_block:start_block]:
            x = block(x)
        return x

    def probe_features(self, model: FaceModel) -> dict[str, np.ndarray]:
        """
        Features of every split image below the output, for the deeper linear probes (docs/audits.md).

        "penultimate": the input of `model`'s final linear layer; "suffix_input": the frozen prefix's output
        (spatially averaged), the same for every model trained from this workspace. Empty when nothing is
        cached (training from the pixels).
        """
        if self.start_block == 0:
            return {}
        if self._features is None:
            self._features = penultimate_features(self.original_model, self.prefix, self.start_block).numpy()
        pooled = self.prefix.mean(dim=tuple(range(2, self.prefix.dim()))) if self.prefix.dim() > 2 else self.prefix
        own = (self._features if model is self.original_model
               else penultimate_features(model, self.prefix, self.start_block).numpy())
        return {"penultimate": own, "suffix_input": pooled.numpy()}

    def banks(self, cfg: EngineConfig, progress: bool) -> tuple[ViewBank, ViewBank]:
        """View banks for `cfg` (cached by views, augmentation and seed: methods of one seed share them)."""
        key = (cfg.forget_views, cfg.retain_views, cfg.augment.model_dump_json(), cfg.seed, cfg.trainable)
        if key not in self._banks:
            self._banks.clear()
            self._banks[key] = build_banks(self.original_model, self.data, cfg, progress)
        return self._banks[key]


def prepare(original_model: FaceModel, model_spec: str, manifest: SplitManifest, trainable: str,
            eval_cfg: EvalConfig, progress: bool = True, watch: Stopwatch | None = None) -> Workspace:
    """
    Embed every split image with the original model, keeping the activations where training starts.

    Books embed_original, load_train_images and evaluate_original on `watch` when one is given.
    """
    watch = Stopwatch() if watch is None else watch
    start_block = first_trainable_block(original_model, trainable)
    emb = embed_records(original_model, list(manifest.records), manifest.data_root, manifest.distractor_root,
                        batch_size=eval_cfg.batch_size, start_block=start_block, progress=progress,
                        description=f"embedding {len(manifest.records)} images")
    prefix = emb.prefix if emb.prefix is not None else torch.empty(0)
    watch.lap("embed_original")
    data = unlearn_data(manifest, original_model.preprocess.input_size)
    watch.lap("load_train_images")
    lookalikes = lookalike_identities(emb.embeddings, manifest)
    metrics_before = evaluate_embeddings(emb.embeddings, manifest, eval_cfg, lookalikes)
    watch.lap("evaluate_original")
    return Workspace(manifest, original_model, model_spec, start_block, emb.embeddings, prefix, data, metrics_before,
                     eval_cfg, lookalikes)


def _embed_unlearned(ws: Workspace, model: FaceModel, progress: bool) -> np.ndarray:
    if ws.start_block == 0:
        return embed_records(model, list(ws.manifest.records), ws.manifest.data_root, ws.manifest.distractor_root,
                             batch_size=ws.eval_cfg.batch_size, progress=progress).embeddings
    return embed_from_prefix(model, ws.prefix, ws.start_block)


def cell_signature(cfg: UnlearnConfig, manifest: SplitManifest, model_spec: str, original_model: FaceModel) -> tuple[
        str, dict]:
    """(signature, resolved config) of a run: what decides whether a finished run folder can be reused."""
    method = get_method(cfg.method, cfg.params)
    resolved = cfg.run_settings() | {"params": method.params.model_dump(mode="json")}
    trained = {k: v for k, v in resolved.items() if k != "verdict"}  # thresholds judge a run, not change it
    return job_signature(trained, manifest.hash, model_spec + ":" + model_fingerprint(original_model)), resolved


def run_in_workspace(ws: Workspace, cfg: UnlearnConfig, out: str | Path, progress: bool = True,
                     watch: Stopwatch | None = None) -> tuple[RunFolder, FaceModel, dict]:
    """
    Unlearn with `cfg` in `ws`, evaluate before/after, write the run folder; returns (run, model, metrics).

    A run that trains fewer blocks than `ws` caches reuses it (`Workspace.at`); one that trains more cannot.
    metrics.json's timings are `watch`'s stages (a new stopwatch started here when None), up to writing it.
    """
    watch = Stopwatch() if watch is None else watch
    method = get_method(cfg.method, cfg.params)
    ws = ws.at(first_trainable_block(ws.original_model, cfg.engine.trainable))
    signature, resolved = cell_signature(cfg, ws.manifest, ws.model_spec, ws.original_model)
    run = RunFolder(Path(out))
    write_config_snapshot(run, resolved, ws.manifest.hash, ws.model_spec, signature)
    banks = ws.banks(cfg.engine, progress)
    result = run_engine(method, ws.original_model, ws.data, cfg.engine, checkpoint_path=run.checkpoint,
                        signature=signature, progress=progress, banks=banks, watch=watch)
    save_checkpoint(result.model, run.model, base=ws.original_model.name,
                    extra={"signature": signature, "method": cfg.method, "split_hash": ws.manifest.hash})
    watch.lap("save_model")
    after = _embed_unlearned(ws, result.model, progress)
    watch.lap("embed_unlearned")
    metrics_after = evaluate_embeddings(after, ws.manifest, ws.eval_cfg, ws.lookalikes)
    watch.lap("evaluate_unlearned")
    audits = audit_run(ws, result.model, after, cfg.engine.seed, run)
    watch.lap("audits")
    write_json_atomic(run.history, result.history)
    np.save(run.root / "embeddings_unlearned.npy", after)
    np.save(run.root / "embeddings_original.npy", ws.embeddings_before)
    watch.lap("write_outputs")
    metrics = {"method": cfg.method, "split_hash": ws.manifest.hash, "signature": signature,
               "seed": cfg.engine.seed, "original": ws.metrics_before, "unlearned": metrics_after,
               "summary": summary_scores(ws.metrics_before, metrics_after), "timings": watch.timings(),
               "method_state": _plain(result.method_state)}
    write_json_atomic(run.metrics, metrics)
    write_json_atomic(run.root / "audits.json", audits)
    if run.checkpoint.is_file():
        run.checkpoint.unlink()
    return run, result.model, metrics


def audit_run(ws: Workspace, model: FaceModel, after: np.ndarray, seed: int, run: RunFolder) -> dict:
    """Audit one unlearned model against the workspace's original; keep the probe features in `run`."""
    before_f, after_f = ws.probe_features(ws.original_model), ws.probe_features(model)
    for space in before_f:
        np.save(run.root / f"features_{space}_original.npy", before_f[space])
        np.save(run.root / f"features_{space}_unlearned.npy", after_f[space])
    return audit_embeddings(ws.manifest, ws.embeddings_before, after, seed, before_f, after_f)


def _plain(state: dict) -> dict:
    """The JSON-friendly values a method logged: scalars and dicts of scalars (tensors are left out)."""
    def scalar(v: object) -> bool:
        return isinstance(v, (int, float, str, bool))

    return {k: v for k, v in state.items()
            if scalar(v) or (isinstance(v, dict) and all(scalar(x) for x in v.values()))}
