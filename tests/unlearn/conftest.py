"""Fixtures for the unlearning tests: a tiny FaceModel and a toy forget/retain set."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from faceforget.models.spec import FaceModel, Preprocess
from faceforget.unlearn.engine import UnlearnData


class _Head(nn.Module):
    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def make_tiny_model(seed: int = 0) -> FaceModel:
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


@pytest.fixture(name="make_tiny_model")
def make_tiny_model_fixture():
    return make_tiny_model


@pytest.fixture
def tiny_model() -> FaceModel:
    return make_tiny_model()


def make_toy_data(n_forget_ids: int = 2, n_retain_ids: int = 4, per_id: int = 4, seed: int = 0) -> UnlearnData:
    """Identities are distinct colour patterns plus noise, so even a random CNN separates them a bit."""
    g = torch.Generator().manual_seed(seed)
    n_ids = n_forget_ids + n_retain_ids
    protos = torch.rand(n_ids, 16, 16, 3, generator=g) * 255
    def images(ids):
        x = torch.cat([protos[i].expand(per_id, 16, 16, 3) for i in ids])
        x = x + torch.randn(x.shape, generator=g) * 20
        return x.clamp(0, 255).to(torch.uint8)
    forget_ids, retain_ids = list(range(n_forget_ids)), list(range(n_forget_ids, n_ids))
    return UnlearnData(
        forget_pixels=images(forget_ids), forget_labels=torch.tensor(forget_ids).repeat_interleave(per_id),
        retain_pixels=images(retain_ids), retain_labels=torch.tensor(retain_ids).repeat_interleave(per_id),
        identity_names=[f"id{i}" for i in range(n_ids)], forget_label_ids=forget_ids,
    )


@pytest.fixture
def toy_data() -> UnlearnData:
    return make_toy_data()
