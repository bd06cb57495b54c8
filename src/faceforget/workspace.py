"""
What every run on one (model, split) shares, computed once: the original model's outputs and the view banks.

It holds the original model's embeddings and metrics of every record, the activations entering the
first trainable block, the train images' pixels and the view banks.

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

from faceforget.config import EngineConfig, EvalConfig, RuntimeConfig, UnlearnConfig
from faceforget.data.errors import DataError
from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.audits import audit_embeddings
from faceforget.eval.embed import EmbedBackend, embed_from_prefix, embed_records, load_pixels, record_paths
from faceforget.eval.protocol import evaluate_embeddings, lookalike_identities, summary_scores
from faceforget.fileio import save_npy_atomic, write_json_atomic
from faceforget.models.checkpoint import model_fingerprint, save_checkpoint
from faceforget.models.features import penultimate_features
from faceforget.models.spec import FaceModel
from faceforget.runs import RunFolder, job_signature, write_config_snapshot
from faceforget.timings import Stopwatch
from faceforget.unlearn.distributed import current
from faceforget.unlearn.engine import EngineResult, UnlearnData, build_banks, run_engine
from faceforget.unlearn.method import UnlearningMethod, ViewBank
from faceforget.unlearn.registry import get_method
from faceforget.unlearn.trainable import first_trainable_block


def check_split(manifest: SplitManifest, source: str = "the split") -> None:
    """Refuse, before anything is embedded or written, a split the protocol cannot unlearn and evaluate."""
    def ids(*roles: str) -> int:
        return len({r.identity for r in manifest.by_role(*roles)})

    needs = {"forget_train images": (ids("forget_train"), 1), "forget_test images": (ids("forget_test"), 1),
             "retain_train images": (ids("retain_train"), 1),
             "retain identities with held-out images (retain metrics need impostor pairs)": (ids("retain_test"), 2)}
    short = [f"{have} identities with {what} (need >= {need})" for what, (have, need) in needs.items() if have < need]
    if short:
        raise DataError(f"{source} cannot be unlearned: it has " + "; ".join(short) + ". Make the split from a "
                        "dataset with more identities, or forget fewer of them")


def unlearn_data(manifest: SplitManifest, size: tuple[int, int]) -> UnlearnData:
    """The split's train images as tensors, labelled over the train identities (forget + retain; `check_split`)."""
    forget, retain = manifest.by_role("forget_train"), manifest.by_role("retain_train")
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
                         self.data, self.metrics_before, self.eval_cfg, self.lookalikes,
                         self._banks)  # banks are keyed by the trainable blocks

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

    def banks(self, cfg: EngineConfig, progress: bool,
              runtime: RuntimeConfig | None = None) -> tuple[ViewBank, ViewBank]:
        """View banks for `cfg` (cached by views, augmentation and seed: methods of one seed share them)."""
        key = (cfg.forget_views, cfg.retain_views, cfg.augment.model_dump_json(), cfg.seed, cfg.trainable)
        if key not in self._banks:
            self._banks.clear()
            self._banks[key] = build_banks(self.original_model, self.data, cfg, progress, runtime)
        return self._banks[key]


def prepare(original_model: FaceModel, model_spec: str, manifest: SplitManifest, trainable: str,
            eval_cfg: EvalConfig, progress: bool = True, watch: Stopwatch | None = None,
            source: str = "the split", device: str = "cpu", backend: EmbedBackend = "torch") -> Workspace:
    """
    Embed every split image with the original model, keeping the activations where training starts.

    Books embed_original, load_train_images and evaluate_original on `watch` when one is given. A split
    that cannot be unlearned is refused first (`check_split`; `source` names it in the error).
    """
    check_split(manifest, source)
    watch = Stopwatch() if watch is None else watch
    start_block = first_trainable_block(original_model, trainable)
    emb = embed_records(original_model, list(manifest.records), manifest.data_root, manifest.distractor_root,
                        batch_size=eval_cfg.batch_size, start_block=start_block, progress=progress,
                        description=f"embedding {len(manifest.records)} images", device=device, backend=backend)
    prefix = emb.prefix if emb.prefix is not None else torch.empty(0)
    watch.lap("embed_original")
    data = unlearn_data(manifest, original_model.preprocess.input_size)
    watch.lap("load_train_images")
    lookalikes = lookalike_identities(emb.embeddings, manifest)
    metrics_before = evaluate_embeddings(emb.embeddings, manifest, eval_cfg, lookalikes)
    watch.lap("evaluate_original")
    return Workspace(manifest, original_model, model_spec, start_block, emb.embeddings, prefix, data, metrics_before,
                     eval_cfg, lookalikes)


def shares_prefix(a: FaceModel, b: FaceModel, start_block: int) -> bool:
    """True when blocks[:start_block] of `a` and `b` hold identical parameters and buffers."""
    def tensors(model: FaceModel) -> list[torch.Tensor]:
        return [t for block in list(model.blocks)[:start_block]
                for t in (*block.parameters(), *block.buffers())]

    ta, tb = tensors(a), tensors(b)
    return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb, strict=True))


def next_request(ws: Workspace, model: FaceModel, model_spec: str, manifest: SplitManifest,
                 progress: bool = True) -> Workspace:
    """
    The workspace of a follow-up request: `model` (the previous request's unlearned model) on `manifest`.

    `manifest` has the same records as `ws.manifest` (roles may differ, data/requests.py). When `model` left
    the cached prefix untouched (it trained only blocks from `ws.start_block` on) the prefix is reused and only
    the suffix runs again; otherwise every image is embedded afresh (`prepare`).
    """
    if [r.path for r in manifest.records] != [r.path for r in ws.manifest.records]:
        raise ValueError("a follow-up request must keep the records of the split it continues")
    if ws.start_block == 0 or not shares_prefix(model, ws.original_model, ws.start_block):
        return prepare(model, model_spec, manifest, f"last:{len(model.blocks) - ws.start_block}", ws.eval_cfg, progress)
    check_split(manifest, "the request")
    emb = embed_from_prefix(model, ws.prefix, ws.start_block)
    lookalikes = lookalike_identities(emb, manifest)
    return Workspace(manifest, model, model_spec, ws.start_block, emb, ws.prefix,
                     unlearn_data(manifest, model.preprocess.input_size),
                     evaluate_embeddings(emb, manifest, ws.eval_cfg, lookalikes), ws.eval_cfg, lookalikes)


def _embed_unlearned(ws: Workspace, model: FaceModel, progress: bool, device: str = "cpu",
                     backend: EmbedBackend = "torch") -> np.ndarray:
    if ws.start_block == 0:
        return embed_records(model, list(ws.manifest.records), ws.manifest.data_root, ws.manifest.distractor_root,
                             batch_size=ws.eval_cfg.batch_size, progress=progress, device=device,
                             backend=backend).embeddings
    return embed_from_prefix(model, ws.prefix, ws.start_block, device=device)


def cell_signature(cfg: UnlearnConfig, manifest: SplitManifest, model_spec: str, original_model: FaceModel) -> tuple[
        str, dict]:
    """(signature, resolved config) of a run: what decides whether a finished run folder can be reused."""
    method = get_method(cfg.method, cfg.params)
    resolved = cfg.run_settings() | {"params": method.params.model_dump(mode="json")}
    # thresholds judge a run, not change it; the runtime (device, autocast) says where it ran
    trained = {k: v for k, v in resolved.items() if k not in ("verdict", "runtime")}
    trained["params"] = method.params.signed()  # knobs added later are signed once they are used
    return job_signature(trained, manifest.hash, model_spec + ":" + model_fingerprint(original_model)), resolved


def run_in_workspace(ws: Workspace, cfg: UnlearnConfig, out: str | Path, progress: bool = True,
                     watch: Stopwatch | None = None, overwrite: bool = False) -> tuple[RunFolder, FaceModel, dict]:
    """
    Unlearn with `cfg` in `ws`, evaluate and audit before/after, write the run folder; returns (run, model, metrics).

    A run that trains fewer blocks than `ws` caches reuses it (`Workspace.at`); one that trains more cannot.
    A finished run folder is replaced only with `overwrite` (`RunFolder.session`, docs/safety.md).
    metrics.json's timings are `watch`'s stages (a new stopwatch started here when None), up to writing it.
    Under torchrun every rank trains; only rank 0 writes the folder and evaluates (the others return {}).
    """
    watch = Stopwatch() if watch is None else watch
    method = get_method(cfg.method, cfg.params)
    ws = ws.at(first_trainable_block(ws.original_model, cfg.engine.trainable))
    signature, resolved = cell_signature(cfg, ws.manifest, ws.model_spec, ws.original_model)
    if not current(cfg.runtime.device).is_main:  # another torchrun rank: train with rank 0, write nothing
        run = RunFolder(Path(out))
        return run, _train(ws, method, cfg, run, signature, progress, watch).model, {}
    with RunFolder(Path(out)).session(signature, overwrite) as run:
        write_config_snapshot(run, resolved, ws.manifest.hash, ws.model_spec, signature)
        result = _train(ws, method, cfg, run, signature, progress, watch)
        model_sha256 = _save_model(ws, cfg, run, result, signature)
        watch.lap("save_model")
        after, metrics_after = _evaluate(ws, result.model, progress, watch, cfg.runtime)
        audits = audit_run(ws, result.model, after, cfg.engine.seed, run) | {"model_sha256": model_sha256}
        watch.lap("audits")
        metrics = _write_outputs(ws, run, result, after, audits, watch, {
            "method": cfg.method, "split_hash": ws.manifest.hash, "signature": signature,
            "model_sha256": model_sha256, "seed": cfg.engine.seed, "original": ws.metrics_before,
            "unlearned": metrics_after, "summary": summary_scores(ws.metrics_before, metrics_after)})
    return run, result.model, metrics


def _train(ws: Workspace, method: UnlearningMethod, cfg: UnlearnConfig, run: RunFolder, signature: str,
           progress: bool, watch: Stopwatch) -> EngineResult:
    """The engine run, resuming from the run folder's checkpoint of the same job."""
    return run_engine(method, ws.original_model, ws.data, cfg.engine, checkpoint_path=run.checkpoint,
                      signature=signature,
                      progress=progress, banks=ws.banks(cfg.engine, progress, cfg.runtime), watch=watch,
                      runtime=cfg.runtime)


def _save_model(ws: Workspace, cfg: UnlearnConfig, run: RunFolder, result: EngineResult, signature: str) -> str:
    """Write model.pt (+ sha256 sidecar); returns its sha256."""
    return save_checkpoint(result.model, run.model, base=ws.original_model.name,
                           extra={"signature": signature, "method": cfg.method, "split_hash": ws.manifest.hash})


def _evaluate(ws: Workspace, model: FaceModel, progress: bool, watch: Stopwatch,
              runtime: RuntimeConfig) -> tuple[np.ndarray, dict]:
    """The unlearned model's embeddings of the split and their retrieval metrics."""
    after = _embed_unlearned(ws, model, progress, runtime.device, runtime.embed_backend)
    watch.lap("embed_unlearned")
    metrics = evaluate_embeddings(after, ws.manifest, ws.eval_cfg, ws.lookalikes)
    watch.lap("evaluate_unlearned")
    return after, metrics


def _write_outputs(ws: Workspace, run: RunFolder, result: EngineResult, after: np.ndarray, audits: dict,
                   watch: Stopwatch, metrics: dict) -> dict:
    """History, embeddings, audits.json, then metrics.json (which marks the run finished); returns the metrics."""
    write_json_atomic(run.history, result.history)
    save_npy_atomic(run.embeddings_unlearned, after)
    save_npy_atomic(run.embeddings_original, ws.embeddings_before)
    write_json_atomic(run.audits, audits)
    watch.lap("write_outputs")
    metrics |= {"timings": watch.timings(), "method_state": _logged_scalars(result.method_state)}
    write_json_atomic(run.metrics, metrics)
    run.checkpoint.unlink(missing_ok=True)
    return metrics


def audit_run(ws: Workspace, model: FaceModel, after: np.ndarray, seed: int, run: RunFolder) -> dict:
    """Audit one unlearned model against the workspace's original; keep the probe features in `run`."""
    before_f, after_f = ws.probe_features(ws.original_model), ws.probe_features(model)
    for space in before_f:
        save_npy_atomic(run.features(space, "original"), before_f[space])
        save_npy_atomic(run.features(space, "unlearned"), after_f[space])
    return audit_embeddings(ws.manifest, ws.embeddings_before, after, seed, before_f, after_f)


def _logged_scalars(state: dict) -> dict:
    """The values a method logged that belong in metrics.json: scalars and dicts of scalars (not tensors)."""
    def scalar(v: object) -> bool:
        return isinstance(v, (int, float, str, bool))

    return {k: v for k, v in state.items()
            if scalar(v) or (isinstance(v, dict) and all(scalar(x) for x in v.values()))}
