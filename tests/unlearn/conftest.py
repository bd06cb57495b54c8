"""Fixtures for the unlearning tests: a toy forget/retain set (the tiny model is in tests/conftest.py)."""
import pytest
import torch

from faceforget.unlearn.engine import UnlearnData


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
