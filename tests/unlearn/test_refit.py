"""The closed-form refit: an exact weighted ridge solve that pulls retain outputs back to the original's."""
import copy

import numpy as np
import pytest
import torch

from faceforget.models.features import final_linear, penultimate_features
from faceforget.unlearn.refit import refit_final_linear, ridge_solve


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
    assert penultimate_features(drifted, retain, 0).shape == (len(retain), 16)
    with torch.no_grad():
        assert float((drifted(forget) - forget_before).norm()) < float((original(forget) - forget_before).norm())


def test_refit_needs_a_final_linear(tiny_model):
    broken = copy.deepcopy(tiny_model)
    broken.blocks[-1].fc = torch.nn.Identity()
    with pytest.raises(ValueError, match="no `fc` linear"):
        final_linear(broken)


def test_ridge_solve_with_null_directions_matches_the_kkt_system():
    # independent reference: the KKT system of  min sum_i w_i ||W x_i - y_i||^2  s.t.  W D = 0
    g = torch.Generator().manual_seed(3)
    x, y, w = torch.randn(40, 5, generator=g), torch.randn(40, 2, generator=g), torch.rand(40, generator=g)
    d = torch.randn(5, 2, generator=g)
    got = ridge_solve(x, y, w, ridge=0.0, null=d).numpy()
    xn, yn, wn, dn = (t.double().numpy() for t in (x, y, w, d))
    gram, rhs = xn.T @ (wn[:, None] * xn), xn.T @ (wn[:, None] * yn)
    kkt = np.block([[gram, dn], [dn.T, np.zeros((2, 2))]])
    ref = np.linalg.solve(kkt, np.vstack([rhs, np.zeros((2, 2))]))[:5].T
    np.testing.assert_allclose(got, ref, atol=1e-8)
    np.testing.assert_allclose(got @ dn, 0.0, atol=1e-9)


def test_refit_erase_gives_every_forget_identity_the_population_mean_output(trained_tiny_model, toy_data):
    model = copy.deepcopy(trained_tiny_model)
    retain = toy_data.retain_pixels.permute(0, 3, 1, 2).float()
    forget = toy_data.forget_pixels.permute(0, 3, 1, 2).float()
    refit_final_linear(model, trained_tiny_model, retain, forget, 0, forget_weight=0.2, ridge=1e-6,
                       forget_labels=toy_data.forget_labels)
    with torch.no_grad():
        retain_mean = model(retain).mean(0)
        for k in toy_data.forget_labels.unique():
            np.testing.assert_allclose(model(forget[toy_data.forget_labels == k]).mean(0).numpy(),
                                       retain_mean.numpy(), atol=1e-4)


def test_a_refit_too_large_on_both_sides_is_refused_up_front(tiny_model):
    from faceforget.unlearn.refit import MAX_REFIT_SIZE, check_refit_size

    check_refit_size(tiny_model, 10**6)  # 16 inputs: a feature-space solve, however many views
    wide = copy.deepcopy(tiny_model)
    wide.blocks[-1].fc = torch.nn.Linear(MAX_REFIT_SIZE + 1, 8, bias=False)
    check_refit_size(wide, 5000)  # wider than the views: a sample-space solve
    with pytest.raises(ValueError, match=r"16385 inputs\) over 20000 cached views.*`refit: false`"):
        check_refit_size(wide, 20000)


@pytest.mark.parametrize("erase", [False, True])
def test_wide_layers_are_solved_in_sample_space_with_the_same_minimiser(erase, monkeypatch):
    import faceforget.unlearn.refit as refit

    monkeypatch.setattr(refit, "_COLUMNS", 7)  # several column chunks
    g = torch.Generator().manual_seed(5)
    x, y, w = torch.randn(12, 30, generator=g), torch.randn(12, 3, generator=g), torch.rand(12, generator=g)
    d = torch.randn(30, 2, generator=g) if erase else None
    got = ridge_solve(x, y, w, ridge=0.1, null=d).numpy()  # 30 inputs > 12 samples: the dual path
    # reference: the feature-space normal equations in numpy (plus the KKT rows of the constraint W d = 0)
    xn, yn, wn = (t.double().numpy() for t in (x, y, w))
    gram = xn.T @ (wn[:, None] * xn)
    gram += 0.1 * np.trace(gram) / 30 * np.eye(30)
    rhs = xn.T @ (wn[:, None] * yn)
    if erase:
        dn = d.double().numpy()
        kkt = np.block([[gram, dn], [dn.T, np.zeros((2, 2))]])
        ref = np.linalg.solve(kkt, np.vstack([rhs, np.zeros((2, 3))]))[:30].T
        np.testing.assert_allclose(got @ dn, 0.0, atol=1e-9)
    else:
        ref = np.linalg.solve(gram, rhs).T
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert ridge_solve(x[:, :10], y, w, ridge=0.1).shape == (3, 10)  # 10 inputs <= 12 samples: the primal path
