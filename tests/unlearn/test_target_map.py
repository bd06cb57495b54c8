"""Target maps: hand-computed maps on 2-D features, and the Gaussian OT identity A S A = T."""
import numpy as np
import pytest
import torch

from faceforget.unlearn.target_map import (
    TargetMap,
    class_means,
    dispersed_identities,
    fit_target_map,
    gaussian_ot_linear,
    whitening,
)

# two retain identities on the x axis, one forget identity (label 0) above them
FEATURES = torch.tensor([[0.0, 1.2], [0.0, 0.8],          # forget id 0, mean (0, 1)
                         [2.0, 0.1], [2.0, -0.1],         # retain id 1, mean (2, 0)
                         [-2.0, 0.1], [-2.0, -0.1]])      # retain id 2, mean (-2, 0)
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_class_means_by_hand():
    np.testing.assert_allclose(class_means(FEATURES, LABELS, 4).numpy(),
                               [[0, 1], [2, 0], [-2, 0], [0, 0]], atol=1e-7)


def test_scaled_map_by_hand():
    # centred retain centroids (2,0), (-2,0): one direction x, weight sv/rms(sv) = 1 -> P = [[1,0],[0,0]];
    # s_b = sqrt(mean(4, 4)) = 2; retain residuals (0, +-0.1) -> s_w = 0.1; A = alpha * 20 * P; centre (0, 0)
    tmap = fit_target_map(FEATURES, LABELS, [0], 3, kind="scaled", spread=0.5, rank=8)
    np.testing.assert_allclose(tmap.linear[0].numpy(), [[10, 0], [0, 0]], atol=1e-5)
    got = tmap(torch.tensor([[0.5, 1.2]]), torch.tensor([0]))  # residual (0.5, 0.2) -> (5, 0)
    np.testing.assert_allclose(got.numpy(), [[5.0, 0.0]], atol=1e-5)


def test_gaussian_ot_linear_diagonal_by_hand():
    a = gaussian_ot_linear(torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([9.0, 1.0])))
    np.testing.assert_allclose(a.numpy(), np.diag([3.0, 0.5]), atol=1e-9)


def test_gaussian_ot_linear_pushes_source_covariance_onto_target():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    s, t = m1 @ m1.T + 0.1 * torch.eye(5, dtype=torch.float64), m2 @ m2.T + 0.1 * torch.eye(5, dtype=torch.float64)
    a = gaussian_ot_linear(s, t, eps=0.0)
    np.testing.assert_allclose((a @ s @ a).numpy(), t.numpy(), atol=1e-8)
    np.testing.assert_allclose(a.numpy(), a.T.numpy(), atol=1e-10)  # a Monge map is a symmetric PSD matrix
    assert float(torch.linalg.eigvalsh(a).min()) > 0


def test_ot_map_moves_forget_photos_to_the_population_spread():
    # shrinkage 1: the forget identity's own residual covariance diag(0, 0.04) is floored, the y axis blown
    # up toward the population's; the forget photos' targets are centred on the retain mean
    tmap = fit_target_map(FEATURES, LABELS, [0], 3, kind="ot", spread=1.0, shrinkage=0.0)
    targets = tmap(FEATURES[:2], LABELS[:2])
    np.testing.assert_allclose(targets.mean(0).numpy(), [0.0, 0.0], atol=1e-6)
    pooled = torch.tensor([[0.0, 0.0], [0.0, 0.01]])           # retain residuals (0, +-0.1)
    population = torch.tensor([[4.0, 0.0], [0.0, 0.01]])       # retain photos around (0, 0)
    a = tmap.linear[0].double()
    np.testing.assert_allclose((a @ pooled.double() @ a)[1, 1].item(), population[1, 1].item(), rtol=1e-4)


def test_target_map_needs_retain_photos():
    with pytest.raises(ValueError, match="needs retain photos"):
        fit_target_map(FEATURES[:2], LABELS[:2], [0], 1)


def test_target_map_call_is_centre_plus_linear_residual():
    tmap = TargetMap(torch.tensor([1.0, 1.0]), torch.tensor([[0.0, 2.0]]), torch.tensor([[[2.0, 0.0], [0.0, 3.0]]]))
    np.testing.assert_allclose(tmap(torch.tensor([[1.0, 1.0]]), torch.tensor([0])).numpy(), [[3.0, -2.0]])


def test_whitening_makes_the_second_moment_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 3, generator=g) @ torch.tensor([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 0.2]])
    w = whitening(x, ridge=0.0).double()
    s = x.double().T @ x.double() / len(x)
    np.testing.assert_allclose((w.T @ s @ w).numpy(), np.eye(3), atol=1e-6)


def test_an_identity_already_dispersed_is_held():
    # s_b = 2 (as in the scaled test). Identity 0's photos (0, +-2.5) around (0, 0): RMS residual 2.5 >= s_b,
    # held: its target is the photo itself. Identity 3's photos (0, 0.9), (0, 1.1): residual 0.1 < s_b, mapped.
    features = torch.cat([torch.tensor([[0.0, 2.5], [0.0, -2.5]]), FEATURES[2:], torch.tensor([[0.0, 0.9],
                                                                                                  [0.0, 1.1]])])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for kind in ("scaled", "ot"):
        tmap = fit_target_map(features, labels, [0, 3], 4, kind=kind, spread=0.5, rank=8)
        assert tmap.held == (0,)
        photo = torch.tensor([[0.3, -1.7]])
        np.testing.assert_allclose(tmap(photo, torch.tensor([0])).numpy(), photo.numpy(), atol=1e-6)
    scaled = fit_target_map(features, labels, [0, 3], 4, kind="scaled", spread=0.5, rank=8)
    np.testing.assert_allclose(scaled.linear[3].numpy(), [[10, 0], [0, 0]], atol=1e-5)  # as in the scaled test


def test_dispersed_identities_threshold_is_the_between_identity_spread():
    # identity 0: residuals +-2 around its mean: RMS exactly s_b = 2 -> dispersed; at +-1.9 it is not
    for half, expected in ((2.0, [0]), (1.9, [])):
        features = torch.cat([torch.tensor([[0.0, half], [0.0, -half]]), FEATURES[2:]])
        labels = torch.tensor([0, 0, 1, 1, 2, 2])
        means = class_means(features, labels, 3)
        assert dispersed_identities(features, labels, [0], means, 2.0) == expected
    assert dispersed_identities(features, labels, [0], means, 0.0) == []  # no crowd (one retain identity)
