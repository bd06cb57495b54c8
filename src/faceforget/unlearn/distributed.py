"""
Data-parallel unlearning under `torchrun` (gloo on CPU, NCCL on CUDA): what the engine needs from torch.distributed.

Nothing happens at import. `current()` joins the process group on first call when torchrun's
WORLD_SIZE > 1 (or returns the one a caller already started) and otherwise runs single-process.
Every rank holds the same view banks (each builds its share of the view batches; `share_rows` sums
them), draws the same global batch from (seed, step), embeds only its contiguous slice of it and
all-gathers the embeddings with autograd (`embed_sharded`), so every method's loss sees the whole
batch exactly as in one process. The gathered backward hands each rank W times its rows' gradient,
and `average_gradients` divides the all-reduced sum by W: the one-process gradient (docs/scale.md).
Methods call the model's suffix (`forward_from`), which DDP's module wrapper does not see, so the
gradient all-reduce that DDP would do is done here explicitly, as one flat buffer.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """The rank of this process and the world size (1: single process)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes outputs and checkpoints."""
        return self.rank == 0

    def owns(self, chunk: int) -> bool:
        """Whether this rank computes work item `chunk` (round-robin)."""
        return chunk % self.world == self.rank

    def bounds(self, n: int) -> list[int]:
        """Row bounds of each rank's contiguous share of `n` rows (sizes differ by at most one)."""
        return [n * r // self.world for r in range(self.world + 1)]


def current(device: str = "cpu") -> Ranks:
    """The running group's ranks; joins torchrun's group first (NCCL for CUDA, else gloo) if WORLD_SIZE > 1."""
    if not dist.is_available():
        return Ranks()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Ranks()
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Ranks(dist.get_rank(), dist.get_world_size())


def share_rows(tensors: Sequence[torch.Tensor], ranks: Ranks) -> None:
    """In place: every rank filled its own rows and left zeros elsewhere; afterwards all hold every row."""
    if ranks.world > 1:
        via = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors only
        for t in tensors:
            moved = t.to(via)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            t.copy_(moved)


class _GatherRows(torch.autograd.Function):
    """All-gather equal-shaped row blocks; backward sums every rank's gradient and keeps this rank's block."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: torch.Tensor, rank: int,
                world: int) -> torch.Tensor:
        """(world * rows, ...) of every rank's `local` in rank order."""
        ctx.rank, ctx.rows = rank, len(local)
        pieces = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(pieces, local.contiguous())
        return torch.cat(pieces)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        """Sum of all ranks' gradients of this rank's rows (gloo has no reduce-scatter: all-reduce, slice)."""
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


def embed_sharded(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                  ranks: Ranks) -> torch.Tensor:
    """`forward(inputs)` with each rank computing its slice and all ranks receiving all rows (with autograd)."""
    bounds = ranks.bounds(len(inputs))
    width = max(b - a for a, b in zip(bounds, bounds[1:], strict=False))
    local = forward(inputs[bounds[ranks.rank]:bounds[ranks.rank + 1]])
    padded = torch.cat([local, local.new_zeros((width - len(local), *local.shape[1:]))])
    gathered = _GatherRows.apply(padded, ranks.rank, ranks.world)
    return torch.cat([gathered[r * width:r * width + b - a] for r, (a, b) in enumerate(zip(bounds, bounds[1:],
                                                                                            strict=False))])


def average_gradients(params: Sequence[torch.nn.Parameter], ranks: Ranks) -> None:
    """
    All-reduce the gradients as one flat buffer and divide by the world size (what DDP does).

    Parameters without a gradient keep none (an optimiser skips them); every rank computes the same
    loss, so the same parameters have gradients on every rank.
    """
    if ranks.world == 1:
        return
    with_grad = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ranks.world
    offset = 0
    for p in with_grad:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (no-op in one process)."""
    if ranks.world > 1:
        dist.barrier()
