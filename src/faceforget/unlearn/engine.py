"""
The one training loop every unlearning method plugs into.

Owns: trainable-layer selection, the cached frozen prefix (view banks), batch sampling, optimiser and
LR schedule, gradient masks, progress with live losses, atomic checkpoints and exact resume, the
device and bfloat16 autocast (`RuntimeConfig`), and data parallelism under torchrun
(`unlearn/distributed.py`: same global batch per step, rank 0 writes the checkpoints; docs/scale.md).
Methods only turn a batch into loss terms (`UnlearningMethod.loss`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from faceforget.config import EngineConfig, RuntimeConfig
from faceforget.fileio import load_state, save_state_atomic
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar
from faceforget.seeding import seed_everything
from faceforget.timings import Stopwatch
from faceforget.unlearn.distributed import Ranks, average_gradients, barrier, current, embed_sharded
from faceforget.unlearn.method import Batch, MethodContext, UnlearningMethod, ViewBank
from faceforget.unlearn.sampling_plan import draw_indices
from faceforget.unlearn.trainable import apply_trainable, first_trainable_block
from faceforget.unlearn.views import build_view_bank

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class UnlearnData:
    """Training images of both streams as uint8 NHWC tensors, with train-identity labels."""

    forget_pixels: torch.Tensor
    forget_labels: torch.Tensor
    retain_pixels: torch.Tensor
    retain_labels: torch.Tensor
    identity_names: list[str]
    forget_label_ids: list[int]


@dataclass
class EngineResult:
    """The unlearned model plus per-step loss history and the stopwatch's timings (seconds)."""

    model: FaceModel
    history: list[dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    method_state: dict[str, object] = field(default_factory=dict)


def _lr_factor(cfg: EngineConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        frac = min(1.0, (step - cfg.warmup_steps) / span)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        if cfg.schedule == "linear":
            return 1 - frac
        return 1.0
    return factor


def _optimizer(cfg: EngineConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def _apply_mask_to_grads(ctx: MethodContext) -> None:
    for name, p in ctx.model.named_parameters():
        if ctx.param_mask is not None and name in ctx.param_mask and p.grad is not None:
            p.grad.mul_(ctx.param_mask[name])


@torch.no_grad()
def _restore_masked(ctx: MethodContext, optimizer: torch.optim.Optimizer) -> None:
    """Reset weights outside the mask to the original and clear their optimiser state (SalUn's rule)."""
    if ctx.param_mask is None:
        return
    original = dict(ctx.original.named_parameters())
    for name, p in ctx.model.named_parameters():
        mask = ctx.param_mask.get(name)
        if mask is None:
            continue
        keep = mask.bool()
        p.copy_(torch.where(keep, p, original[name]))
        for buf in optimizer.state.get(p, {}).values():
            if torch.is_tensor(buf) and buf.shape == p.shape:
                buf.mul_(keep)


def resolve_steps(cfg: EngineConfig, data: UnlearnData) -> EngineConfig:
    """`cfg` with `steps` computed from `epochs` (one epoch = one pass over the retain or forget images)."""
    if cfg.epochs is None:
        return cfg
    if cfg.retain_batch:
        per_epoch = math.ceil(len(data.retain_pixels) / cfg.retain_batch)
    else:
        per_epoch = math.ceil(len(data.forget_pixels) / cfg.forget_batch)
    return cfg.model_copy(update={"steps": max(1, cfg.epochs * per_epoch)})


def _on(model: FaceModel, device: str) -> FaceModel:
    """`model` itself on the CPU, else a copy on `device` (the caller's model stays where it is)."""
    return model if torch.device(device).type == "cpu" else copy.deepcopy(model).to(device)


def build_banks(original: FaceModel, data: UnlearnData, cfg: EngineConfig, progress: bool = True,
                runtime: RuntimeConfig | None = None) -> tuple[ViewBank, ViewBank]:
    """The forget and retain view banks for `cfg` (views, augmentation, seed, trainable start block)."""
    device = (runtime or RuntimeConfig()).device
    ranks = current(device)
    kw = dict(augment_cfg=cfg.augment, start=first_trainable_block(original, cfg.trainable), seed=cfg.seed,
              batch_size=cfg.batch_size_embed, progress=progress and ranks.is_main, ranks=ranks, device=device)
    original = _on(original, device)
    return (build_view_bank(original, data.forget_pixels, data.forget_labels, views=cfg.forget_views,
                            stream="forget", **kw),
            build_view_bank(original, data.retain_pixels, data.retain_labels, views=cfg.retain_views,
                            stream="retain", **kw))


def run_engine(
    method: UnlearningMethod, original: FaceModel, data: UnlearnData, cfg: EngineConfig, *,
    checkpoint_path: str | Path | None = None, signature: str = "", progress: bool = True,
    on_step: StepCallback | None = None, banks: tuple[ViewBank, ViewBank] | None = None,
    watch: Stopwatch | None = None, runtime: RuntimeConfig | None = None,
) -> EngineResult:
    """
    Unlearn: copy `original`, train its selected blocks with `method`'s losses, return the copy.

    `original` is never modified. With `checkpoint_path` and `cfg.checkpoint_every`, a run that is
    killed resumes from its last checkpoint (whose `signature` must match) to identical weights.
    `banks` (forget, retain) built by `build_view_bank` for the same start block can be shared
    between runs (a benchmark's methods and seeds) instead of being rebuilt. The stages cache_views,
    method_setup, train and finalize are booked on `watch` (the run's stopwatch; a new one if None).
    Under torchrun every rank runs this with the same arguments; the returned model (on the CPU) is the
    same on every rank.
    """
    watch = Stopwatch() if watch is None else watch
    runtime = runtime or RuntimeConfig()
    ranks = current(runtime.device)
    progress = progress and ranks.is_main
    cfg = resolve_steps(cfg, data)
    seed_everything(cfg.seed)
    original = original.eval()
    for p in original.parameters():
        p.requires_grad_(False)
    start = first_trainable_block(original, cfg.trainable)
    forget, retain = banks if banks is not None else build_banks(original, data, cfg, progress, runtime)
    forget, retain = forget.to(runtime.device), retain.to(runtime.device)
    original = _on(original, runtime.device)
    watch.lap("cache_views")

    model = copy.deepcopy(original)
    params = apply_trainable(model, start)
    model.train_batchnorm = cfg.train_batchnorm
    model.train()
    ctx = MethodContext(model=model, original=original, start=start, forget=forget, retain=retain,
                        identity_names=list(data.identity_names), forget_label_ids=list(data.forget_label_ids),
                        total_steps=cfg.steps, forget_pixels=data.forget_pixels, config=cfg)
    method.setup(ctx)
    watch.lap("method_setup")
    optimizer = _optimizer(cfg, params + ctx.extra_params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
    history: list[dict[str, float]] = []
    first = _resume(checkpoint_path, signature, ctx, optimizer, scheduler, history)

    with progress_bar(f"unlearning ({method.name})", cfg.steps, progress) as bar:
        bar.advance(first)
        for step in range(first, cfg.steps):
            use_f, use_r = method.streams(step, ctx)
            f_idx, r_idx = draw_indices(cfg, forget, retain, step, use_f, use_r)
            batch = Batch(forget=None if f_idx is None else forget.take(f_idx),
                          retain=None if r_idx is None else retain.take(r_idx), step=step)
            terms, total = _losses(method, batch, ctx, ranks, runtime)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            average_gradients(params + ctx.extra_params, ranks)
            _apply_mask_to_grads(ctx)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params + ctx.extra_params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            _restore_masked(ctx, optimizer)
            record = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
            history.append(record)
            bar.advance()
            bar.note(" ".join(f"{k}={v:.4f}" for k, v in record.items()))
            done = step + 1
            if checkpoint_path and cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                if ranks.is_main:
                    _save(checkpoint_path, signature, done, ctx, optimizer, scheduler, history)
                barrier(ranks)
            if on_step is not None:
                on_step(step, record)
    watch.lap("train")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        method.finalize(ctx)
    model = model.cpu()
    watch.lap("finalize")
    return EngineResult(model=model, history=history, timings=watch.timings(), method_state=dict(ctx.state))


def _losses(method: UnlearningMethod, batch: Batch, ctx: MethodContext, ranks: Ranks,
            runtime: RuntimeConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The method's loss terms and their sum for one step (sharded embedding under DDP, optional autocast)."""
    ctx.spread = None if ranks.world == 1 else (lambda forward, x: embed_sharded(forward, x, ranks))
    try:
        with torch.autocast(torch.device(runtime.device).type, dtype=torch.bfloat16, enabled=runtime.amp):
            terms = method.loss(batch, ctx)
    finally:
        ctx.spread = None
    terms = {k: v.float() for k, v in terms.items()}
    return terms, sum(terms.values())


def _save(path: str | Path, signature: str, step: int, ctx: MethodContext, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, history: list[dict[str, float]]) -> None:
    save_state_atomic(path, {
        "signature": signature, "step": step, "model": ctx.model.state_dict(),
        "extra_params": [p.detach().clone() for p in ctx.extra_params],
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
    })


def _resume(path: str | Path | None, signature: str, ctx: MethodContext, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, history: list[dict[str, float]]) -> int:
    """Load a matching checkpoint if there is one; return the step to continue from."""
    if path is None or not Path(path).is_file():
        return 0
    state = load_state(path)
    if state.get("signature") != signature:
        raise ValueError(f"checkpoint {path} belongs to a different job (config, data or method changed); "
                         "delete it or use a new run folder")
    ctx.model.load_state_dict(state["model"])
    with torch.no_grad():
        for p, saved in zip(ctx.extra_params, state["extra_params"], strict=True):
            p.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    history.extend(state["history"])
    return int(state["step"])
