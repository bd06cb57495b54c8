"""Shared test fixtures: generated face-image folders (random noise, unique bytes) and the opt-in LFW root."""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from faceforget.models.spec import FaceModel, Preprocess

TOY_COUNTS = {"alice": 12, "bob": 10, "carol": 11, "dave": 10, "erin": 7, "frank": 5,
              "grace": 3, "heidi": 4, "ivan": 12, "judy": 6}
TOY_DISTRACTORS = {"zack": 1, "yves": 3, "xena": 2, "walt": 1}


def _write_face(path: Path, seed: int, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> Path:
    """Write a random-noise image (h, w) = size; the format follows the suffix; unique bytes per seed."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _make_tree(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A folder-per-identity tree: `root/<identity>/<identity>_NNNN.{jpg,png}` (every third image a PNG)."""
    for k, (identity, n) in enumerate(sorted(counts.items())):
        for j in range(n):
            suffix = "png" if j % 3 == 2 else "jpg"
            _write_face(root / identity / f"{identity}_{j:04d}.{suffix}", seed * 100_003 + k * 1009 + j)
    return root


@pytest.fixture
def write_face() -> Callable[..., Path]:
    """Writer of one random-noise image file: write_face(path, seed, size=(h, w), mode="RGB")."""
    return _write_face


@pytest.fixture
def make_tree() -> Callable[..., Path]:
    """Factory of folder-per-identity trees: make_tree(root, {identity: n_images}, seed)."""
    return _make_tree


@pytest.fixture
def toy_counts() -> dict[str, int]:
    """Images per identity in toy_dataset."""
    return dict(TOY_COUNTS)


@pytest.fixture
def toy_dataset(tmp_path: Path) -> Path:
    """10 identities with 3..12 images (TOY_COUNTS), plus a text file at the root and a hidden file."""
    root = _make_tree(tmp_path / "faces", TOY_COUNTS)
    (root / "README.txt").write_text("not an identity\n")
    (root / "alice" / "notes.txt").write_text("not an image\n")
    _write_face(root / "bob" / ".hidden.jpg", 999_999)
    return root


@pytest.fixture
def toy_distractors(tmp_path: Path) -> Path:
    """4 distractor identities with 1..3 images (TOY_DISTRACTORS), disjoint from toy_dataset's."""
    return _make_tree(tmp_path / "distractors", TOY_DISTRACTORS, seed=7)


@pytest.fixture
def lfw_root() -> Path:
    """The prepared LFW folder named by FACEFORGET_DATA; skips the test when it is not set or absent."""
    value = os.environ.get("FACEFORGET_DATA")
    if not value:
        pytest.skip("FACEFORGET_DATA is not set (e.g. FACEFORGET_DATA=/work/shared/datasets/lfw)")
    root = Path(value)
    if not (root / "dlib150").is_dir():
        pytest.skip(f"FACEFORGET_DATA={value} has no dlib150/ folder")
    return root


class _Head(nn.Module):
    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def make_tiny_model(seed: int = 0) -> FaceModel:
    """A 4-block FaceModel on 16x16 RGB, 8-D embeddings: fast enough for engine and API tests."""
    torch.manual_seed(seed)
    blocks = nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU()),
        b1=nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU()),
        b2=nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()),
        head=_Head(16, 8),
    ))
    pre = Preprocess(input_size=(16, 16), mean=(127.5, 127.5, 127.5), scale=1 / 128, channel_order="RGB",
                     embedding_dim=8)
    return FaceModel(blocks, pre, "tiny").eval()


@pytest.fixture(name="make_tiny_model", scope="session")
def make_tiny_model_fixture():
    return make_tiny_model


@pytest.fixture
def tiny_model() -> FaceModel:
    """A fresh tiny FaceModel (seed 0)."""
    return make_tiny_model()
