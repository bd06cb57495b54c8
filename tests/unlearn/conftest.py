"""Fixtures for the unlearning tests: a toy forget/retain set and a tiny model trained to tell its ids apart."""
import pytest
import torch

from faceforget.config import EngineConfig
from faceforget.unlearn.engine import UnlearnData, run_engine
from faceforget.unlearn.methods.finetune import Finetune
from faceforget.unlearn.methods.head_method import HeadMethod
from faceforget.unlearn.recipe import HFLIP_ONLY


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


@pytest.fixture(name="make_toy_data", scope="session")
def make_toy_data_fixture():
    return make_toy_data


@pytest.fixture
def toy_data() -> UnlearnData:
    return make_toy_data()


@pytest.fixture(scope="session")
def toy_data_shared() -> UnlearnData:
    """One toy set for the module-scoped fixtures (read-only)."""
    return make_toy_data()


class _Supervised(HeadMethod):
    """Test-only: CE toward the true labels on both streams, to make the random tiny model separate identities."""

    name = "supervised"
    recipe = Finetune.recipe

    def loss(self, batch, ctx):
        return {"ce": self.ce(ctx, batch.forget) + self.ce(ctx, batch.retain)}


@pytest.fixture(scope="session")
def trained_tiny_model(make_tiny_model, toy_data_shared):
    """The tiny model after 15 supervised steps: its embeddings cluster by toy identity (an 'original' model)."""
    cfg = EngineConfig(steps=15, optimizer="adam", lr=3e-3, momentum=0.9, schedule="constant", grad_clip=1.0,
                       sampler="uniform", forget_batch=8, retain_batch=16, forget_views=2, retain_views=2,
                       augment=HFLIP_ONLY, batch_size_embed=16, trainable="all")
    params = {"head": {"s": 10.0, "trainable": True}}
    return run_engine(_Supervised(params), make_tiny_model(), toy_data_shared, cfg, progress=False).model
