"""Per-step batch index draws from the view banks; each step's draw depends only on (seed, step)."""
from __future__ import annotations

import numpy as np
import torch

from faceforget.config import EngineConfig
from faceforget.seeding import numpy_rng
from faceforget.unlearn.method import ViewBank


def _pick(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    return rng.choice(pool, size=k, replace=k > len(pool))


def draw_indices(
    cfg: EngineConfig, forget: ViewBank, retain: ViewBank, step: int, use_forget: bool, use_retain: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Row indices into the forget and retain banks for `step` (None for a stream that is off or empty)."""
    rng = numpy_rng(cfg.seed, "batch", step)
    f_idx = r_idx = None
    if cfg.sampler == "union":
        total = len(forget) * use_forget + len(retain) * use_retain
        k = cfg.forget_batch + cfg.retain_batch
        draw = _pick(rng, np.arange(total), min(k, total)) if total else np.empty(0, int)
        n_f = len(forget) if use_forget else 0
        f_idx, r_idx = draw[draw < n_f], draw[draw >= n_f] - n_f
    else:
        if use_forget and len(forget):
            if cfg.sampler == "balanced":
                f_idx = _balanced(rng, forget.labels.numpy(), cfg)
            else:
                f_idx = _pick(rng, np.arange(len(forget)), cfg.forget_batch)
        if use_retain and len(retain) and cfg.retain_batch:
            r_idx = _pick(rng, np.arange(len(retain)), cfg.retain_batch)
    as_t = lambda a: None if a is None or len(a) == 0 else torch.from_numpy(np.sort(a))  # noqa: E731
    return as_t(f_idx) if use_forget else None, as_t(r_idx) if use_retain else None


def _balanced(rng: np.random.Generator, labels: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """M views for each of P forget identities (all identities when P is None)."""
    ids = np.unique(labels)
    if cfg.forget_identities_per_batch is not None and cfg.forget_identities_per_batch < len(ids):
        ids = rng.choice(ids, size=cfg.forget_identities_per_batch, replace=False)
    return np.concatenate([_pick(rng, np.flatnonzero(labels == i), cfg.forget_per_identity) for i in ids])
