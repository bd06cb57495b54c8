"""
The one training loop every unlearning method plugs into.

Owns: trainable-layer selection, the cached frozen prefix (view banks), batch sampling, optimiser and
LR schedule, gradient masks, progress with live losses, atomic checkpoints and exact resume.
Methods only turn a batch into loss terms (`UnlearningMethod.loss`).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from faceforget.config import EngineConfig
from faceforget.fileio import load_state, save_state_atomic
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar
from faceforget.seeding import seed_everything
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
    """The unlearned model plus per-step loss history and timings (seconds)."""

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


def build_banks(original: FaceModel, data: UnlearnData, cfg: EngineConfig,
                progress: bool = True) -> tuple[ViewBank, ViewBank]:
    """The forget and retain view banks for `cfg` (views, augmentation, seed, trainable start block)."""
    kw = dict(augment_cfg=cfg.augment, start=first_trainable_block(original, cfg.trainable), seed=cfg.seed,
              batch_size=cfg.batch_size_embed, progress=progress)
    return (build_view_bank(original, data.forget_pixels, data.forget_labels, views=cfg.forget_views,
                            stream="forget", **kw),
            build_view_bank(original, data.retain_pixels, data.retain_labels, views=cfg.retain_views,
                            stream="retain", **kw))


def run_engine(
    method: UnlearningMethod, original: FaceModel, data: UnlearnData, cfg: EngineConfig, *,
    checkpoint_path: str | Path | None = None, signature: str = "", progress: bool = True,
    on_step: StepCallback | None = None, banks: tuple[ViewBank, ViewBank] | None = None,
) -> EngineResult:
    """
    Unlearn: copy `original`, train its selected blocks with `method`'s losses, return the copy.

    `original` is never modified. With `checkpoint_path` and `cfg.checkpoint_every`, a run that is
    killed resumes from its last checkpoint (whose `signature` must match) to identical weights.
    `banks` (forget, retain) built by `build_view_bank` for the same start block can be shared
    between runs (a benchmark's methods and seeds) instead of being rebuilt.
    """
    t0 = time.perf_counter()
    cfg = resolve_steps(cfg, data)
    seed_everything(cfg.seed)
    original = original.eval()
    for p in original.parameters():
        p.requires_grad_(False)
    start = first_trainable_block(original, cfg.trainable)
    forget, retain = banks if banks is not None else build_banks(original, data, cfg, progress)
    t_cache = time.perf_counter()

    model = copy.deepcopy(original)
    params = apply_trainable(model, start)
    model.train_batchnorm = cfg.train_batchnorm
    model.train()
    ctx = MethodContext(model=model, original=original, start=start, forget=forget, retain=retain,
                        identity_names=list(data.identity_names), forget_label_ids=list(data.forget_label_ids),
                        total_steps=cfg.steps, forget_pixels=data.forget_pixels, config=cfg)
    method.setup(ctx)
    t_setup = time.perf_counter()
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
            terms = method.loss(batch, ctx)
            total = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
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
                _save(checkpoint_path, signature, done, ctx, optimizer, scheduler, history)
            if on_step is not None:
                on_step(step, record)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        method.finalize(ctx)
    t_end = time.perf_counter()
    timings = {"cache_s": t_cache - t0, "setup_s": t_setup - t_cache, "train_s": t_end - t_setup,
               "total_s": t_end - t0}
    return EngineResult(model=model, history=history, timings=timings, method_state=dict(ctx.state))


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
