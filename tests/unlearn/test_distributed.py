"""Data-parallel unlearning: 2 CPU processes (gloo) give the one-process result; rank 0 checkpoints; resume."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faceforget.config import EngineConfig
from faceforget.unlearn.distributed import Ranks, current
from faceforget.unlearn.engine import run_engine
from faceforget.unlearn.registry import get_method

# 7 retain views per step (not a multiple of 2: uneven shards), balanced forget draws, last 2 blocks train;
# SGD without clipping, so a wrongly scaled gradient would show (Adam and clipping would hide a factor)
CFG = dict(steps=4, optimizer="sgd", lr=1e-2, grad_clip=None, forget_views=3, retain_views=2, retain_batch=7,
           forget_per_identity=3, batch_size_embed=5, trainable="last:2", checkpoint_every=2)
METHODS = ("dispersion", "random_labeling")
TOLERANCE = 1e-5  # max |weight difference| after 4 steps: only float summation order differs


class _Stop(Exception):
    """Raised by the test's step callback to simulate a killed run."""


def _stop_after(step: int) -> "callable":
    def hook(s: int, record: dict) -> None:
        if s + 1 == step:
            raise _Stop
    return hook


def _tiny_model(state: dict):
    """tests/conftest.py's tiny model with `state` (its classes cannot be pickled into a spawned process)."""
    spec = importlib.util.spec_from_file_location("_tests_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.make_tiny_model()
    model.load_state_dict(state)
    return model


def _worker(rank: int, world: int, state: dict, data, out: str) -> None:
    """One rank: per method a full run, a run killed after step 3 (checkpoint at 2), its resume; rank 0 saves."""
    dist.init_process_group("gloo", init_method=f"file://{out}/pg", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _tiny_model(state)
    try:
        assert current() == Ranks(rank, world)
        for name in METHODS:
            cfg = EngineConfig(**CFG)
            full = run_engine(get_method(name), model, data, cfg, progress=False).model
            ckpt = Path(out) / f"{name}.ckpt"
            try:
                run_engine(get_method(name), model, data, cfg, checkpoint_path=ckpt, signature="s",
                           progress=False, on_step=_stop_after(3))
            except _Stop:
                pass
            resumed = run_engine(get_method(name), model, data, cfg, checkpoint_path=ckpt, signature="s",
                                 progress=False).model
            if rank == 0:
                torch.save({"full": full.state_dict(), "resumed": resumed.state_dict()}, Path(out) / f"{name}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, trained_tiny_model, toy_data_shared) -> Path:
    """Run `_worker` on 2 spawned CPU processes once for the module; the folder holds rank 0's outputs."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, trained_tiny_model.state_dict(), toy_data_shared, str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name", METHODS)
def test_two_processes_match_one(two_ranks, trained_tiny_model, toy_data_shared, name: str) -> None:
    single = run_engine(get_method(name), trained_tiny_model, toy_data_shared, EngineConfig(**CFG),
                        progress=False).model.state_dict()
    ddp = torch.load(two_ranks / f"{name}.pt", weights_only=True)
    moved = 0.0
    for key, value in single.items():
        assert (ddp["full"][key] - value).abs().max() <= TOLERANCE, key
        moved = max(moved, (value - trained_tiny_model.state_dict()[key]).abs().max().item())
    assert moved > 1000 * TOLERANCE  # the runs did move the weights, far more than the tolerance


@pytest.mark.parametrize("name", METHODS)
def test_resume_under_ddp_gives_the_uninterrupted_weights(two_ranks, name: str) -> None:
    ddp = torch.load(two_ranks / f"{name}.pt", weights_only=True)
    for key, value in ddp["full"].items():
        assert torch.equal(ddp["resumed"][key], value), key


def test_single_process_needs_no_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert current() == Ranks(0, 1) and not dist.is_initialized()
    assert Ranks(1, 3).bounds(7) == [0, 2, 4, 7] and Ranks(1, 3).owns(4) and not Ranks(1, 3).is_main
    assert os.environ.get("WORLD_SIZE") is None
