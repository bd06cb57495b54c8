"""The closed-form refit: an exact weighted ridge solve that pulls retain outputs back to the original's."""
import copy

import numpy as np
import pytest
import torch

from faceforget.unlearn.refit import final_linear, linear_inputs, refit_final_linear, ridge_solve


def test_ridge_solve_matches_numpy_weighted_least_squares():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randn(50, 3, generator=g)
    w = torch.rand(50, generator=g)
    got = ridge_solve(x, y, w, ridge=0.0).numpy()
    sw = np.sqrt(w.numpy())[:, None]
    ref = np.linalg.lstsq(x.numpy() * sw, y.numpy() * sw, rcond=None)[0].T
    np.testing.assert_allclose(got, ref, atol=1e-6)
    shrunk = ridge_solve(x, y, w, ridge=10.0)
    assert shrunk.norm() < torch.from_numpy(ref).norm()


def test_refit_pulls_retain_back_and_holds_forget(trained_tiny_model, toy_data):
    original = trained_tiny_model
    drifted = copy.deepcopy(original)
    with torch.no_grad():
        final_linear(drifted).weight.add_(0.3 * torch.randn_like(final_linear(drifted).weight,))
    retain = toy_data.retain_pixels.permute(0, 3, 1, 2).float()
    forget = toy_data.forget_pixels.permute(0, 3, 1, 2).float()

    def err(model, x):
        with torch.no_grad():
            return float((model(x) - original(x)).norm())

    forget_before = drifted(forget).detach()
    before = err(drifted, retain)
    refit_final_linear(drifted, original, retain, forget, 0, forget_weight=0.2, ridge=1e-6)  # bank layout: NCHW
    assert err(drifted, retain) < 0.1 * before
    assert linear_inputs(drifted, retain, 0).shape == (len(retain), 16)
    with torch.no_grad():
        assert float((drifted(forget) - forget_before).norm()) < float((original(forget) - forget_before).norm())


def test_refit_needs_a_final_linear(tiny_model):
    broken = copy.deepcopy(tiny_model)
    broken.blocks[-1].fc = torch.nn.Identity()
    with pytest.raises(ValueError, match="no `fc` linear"):
        final_linear(broken)
