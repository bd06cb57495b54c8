"""Loss tests: literal-loop references on 2-D points at chosen angles, degenerate batches, finite grads."""
import math

import pytest
import torch
import torch.nn.functional as F

from faceforget.unlearn import losses

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def angle_to_coord(angles_deg, dtype=torch.float64):
    a = torch.tensor(angles_deg, dtype=dtype) * math.pi / 180
    return torch.stack([torch.cos(a), torch.sin(a)], 1)


def ref_uniformity(z, t):
    vals = [math.exp(-t * float(((z[i] - z[j]) ** 2).sum())) for i in range(len(z)) for j in range(len(z)) if i != j]
    return math.log(sum(vals) / len(vals))


def ref_hard(z, labels, margin, beta, negatives=None):
    out = []
    for i in range(len(z)):
        pos = [float(z[i] @ z[j]) for j in range(len(z)) if j != i and labels[j] == labels[i]]
        neg = [float(z[i] @ z[j]) for j in range(len(z)) if labels[j] != labels[i]]
        if negatives is not None:
            neg += [float(z[i] @ n) for n in negatives]
        if pos and neg:
            x = beta * (max(pos) - max(neg) + margin)
            out.append(math.log1p(math.exp(x)) / beta)
    return sum(out) / len(out) if out else 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniformity_matches_loop(dtype):
    z = angle_to_coord([0, 10, 95, 180, 270], dtype)
    for t in (0.5, 2.0):
        assert float(losses.uniformity_loss(z, t)) == pytest.approx(ref_uniformity(z, t), abs=TOL[dtype])


def test_uniformity_lower_when_spread():
    tight = angle_to_coord([0, 5, 10, 15])
    spread = angle_to_coord([0, 90, 180, 270])
    assert losses.uniformity_loss(spread, 2.0) < losses.uniformity_loss(tight, 2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_margin_matches_loop(dtype):
    z = angle_to_coord([0, 20, 40, 100, 130, 250], dtype)
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    neg = angle_to_coord([10, 200], dtype)
    for negatives in (None, neg):
        got = losses.hard_margin_loss(z, labels, 0.1, 20.0, negatives)
        assert float(got) == pytest.approx(ref_hard(z, labels, 0.1, 20.0, negatives), abs=TOL[dtype])


def test_degenerate_batches_are_zero_with_finite_grads():
    z = angle_to_coord([0, 30, 60]).requires_grad_(True)
    one_id = torch.zeros(3, dtype=torch.long)
    singletons = torch.arange(3)
    for value in (losses.hard_margin_loss(z, one_id), losses.hard_margin_loss(z, singletons),
                  losses.uniformity_loss(z[:1]), losses.keep_loss(z[:0], z[:0]), losses.relational_loss(z[:1], z[:1])):
        assert float(value.detach()) == 0.0
        value.backward(retain_graph=True)
    assert torch.isfinite(z.grad).all()


def test_keep_and_relational_match_loop():
    z = angle_to_coord([0, 45, 90])
    z0 = angle_to_coord([10, 45, 180])
    ref_keep = sum(1 - float(z[i] @ z0[i]) for i in range(3)) / 3
    ref_rel = sum((float(z[i] @ z[j]) - float(z0[i] @ z0[j])) ** 2 for i in range(3) for j in range(3)) / 9
    assert float(losses.keep_loss(z, z0)) == pytest.approx(ref_keep, abs=1e-10)
    assert float(losses.relational_loss(z, z0)) == pytest.approx(ref_rel, abs=1e-10)
    assert float(losses.keep_loss(z0, z0)) == pytest.approx(0.0, abs=1e-12)


def test_centroid_repulsion_matches_loop():
    z = angle_to_coord([0, 80, 170])
    labels = torch.tensor([0, 0, 1])
    cents = angle_to_coord([0, 180])
    ref = sum(max(0.0, float(z[i] @ cents[labels[i]])) for i in range(3)) / 3
    assert float(losses.centroid_repulsion_loss(z, labels, cents)) == pytest.approx(ref, abs=1e-10)


def test_cosface_cross_entropy_matches_loop():
    cos = torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.4, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    s, m = 30.0, 0.35
    ref = 0.0
    for i in range(2):
        logits = [s * (cos[i, j] - (m if j == labels[i] else 0.0)) for j in range(3)]
        ref += -float(logits[labels[i]]) + math.log(sum(math.exp(float(x)) for x in logits))
    got = F.cross_entropy(losses.cosface_logits(cos, labels, s, m), labels)
    assert float(got) == pytest.approx(ref / 2, rel=1e-10)
    assert torch.equal(losses.cosface_logits(cos, None, s, m), s * cos)


def test_distill_kl_matches_loop_and_is_zero_for_equal_logits():
    s = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([[0.2, 1.0, 2.0]], dtype=torch.float64)
    T = 2.0
    ps, pt = F.softmax(s / T, 1)[0], F.softmax(t / T, 1)[0]
    ref = T * T * sum(float(pt[j] * (torch.log(pt[j]) - torch.log(ps[j]))) for j in range(3))
    assert float(losses.distill_kl(s, t, T)) == pytest.approx(ref, rel=1e-10)
    assert float(losses.distill_kl(t, t, T)) == pytest.approx(0.0, abs=1e-12)


def test_all_losses_backward_finite():
    z = F.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    total = (losses.uniformity_loss(z) + losses.hard_margin_loss(z, labels)
             + losses.keep_loss(z, z.detach().flip(0)) + losses.relational_loss(z, z.detach().flip(0))
             + F.cross_entropy(losses.cosface_logits(z @ z.detach().T[:, :4], labels, 30, 0.35), labels))
    total.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arcface_logits_match_loop(dtype):
    cos = torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.4, -0.99]], dtype=dtype)
    labels = torch.tensor([0, 2])
    s, m = 30.0, 0.5
    got = losses.arcface_logits(cos, labels, s, m)
    for i in range(2):
        for j in range(3):
            c = float(cos[i, j])
            ref = s * (math.cos(math.acos(c) + m) if j == labels[i] else c)
            assert float(got[i, j]) == pytest.approx(ref, abs=1e-4 if dtype == torch.float32 else 1e-6)
    torch.testing.assert_close(losses.arcface_logits(cos, None, s, m), s * cos)


def test_l1_norm_and_sq_distance_match_loop():
    a = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5, -0.25]])]
    b = [torch.tensor([0.0, -1.0]), torch.tensor([[0.5, 0.75]])]
    assert float(losses.l1_norm(a)) == pytest.approx(1 + 2 + 0.5 + 0.25)
    assert float(losses.sq_distance(a, b)) == pytest.approx(1 + 1 + 0 + 1)


def test_l1_norm_and_sq_distance_degenerate_and_backward():
    assert float(losses.l1_norm([])) == 0.0 and float(losses.sq_distance([], [])) == 0.0
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    cos = torch.tensor([[0.2, 0.999999]], requires_grad=True)
    total = (losses.l1_norm([w]) + losses.sq_distance([w], [w.detach() + 1])
             + losses.arcface_logits(cos, torch.tensor([1]), 30.0, 0.5).sum())
    total.backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(cos.grad).all()


def test_chord_keep_matches_loop_and_is_linear_in_small_drift():
    z = angle_to_coord([0, 45, 90])
    z0 = angle_to_coord([10, 45, 180])
    ref = sum(math.sqrt(float(((z[i] - z0[i]) ** 2).sum())) for i in range(3)) / 3
    assert float(losses.chord_keep_loss(z, z0, eps=0.0)) == pytest.approx(ref, abs=1e-10)
    small, tiny = angle_to_coord([1.0]), angle_to_coord([0.5])
    origin = angle_to_coord([0.0])
    ratio = float(losses.chord_keep_loss(small, origin, eps=0.0)) / float(losses.chord_keep_loss(tiny, origin, eps=0.0))
    assert ratio == pytest.approx(2.0, rel=1e-3)
    assert float(losses.chord_keep_loss(z[:0], z0[:0])) == 0.0
    zg = z.clone().requires_grad_(True)
    losses.chord_keep_loss(zg, z0).backward()
    assert torch.isfinite(zg.grad).all()


def test_cone_loss_matches_loop_and_is_zero_inside():
    z = angle_to_coord([0, 30, 90, 170])
    mean = angle_to_coord([0])[0]
    floor = math.cos(math.radians(45))
    ref = sum(max(0.0, floor - float(z[i] @ mean)) for i in range(4)) / 4
    assert float(losses.cone_loss(z, mean, floor)) == pytest.approx(ref, abs=1e-12)
    assert float(losses.cone_loss(z[:2], mean, floor)) == 0.0
    assert float(losses.cone_loss(z[:0], mean, floor)) == 0.0
    zg = z.clone().requires_grad_(True)
    losses.cone_loss(zg, mean, floor).backward()
    assert torch.isfinite(zg.grad).all() and zg.grad[3].abs().sum() > 0


def test_whitened_sq_distance_by_hand():
    from faceforget.unlearn.losses import whitened_sq_distance

    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    w = torch.diag(torch.tensor([1.0, 0.5]))
    # row 1: (1, 1) -> 2 / d = 1; row 2: 0 -> mean 0.5
    loss = whitened_sq_distance(x, torch.zeros(2, 2), w)
    assert abs(loss.item() - 0.5) < 1e-7
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert float(whitened_sq_distance(torch.zeros(0, 2), torch.zeros(0, 2), w)) == 0.0


def test_class_mean_offset_by_hand():
    from faceforget.unlearn.losses import class_mean_offset_loss

    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [4.0, 4.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([3, 3, 7, 9])
    w = torch.diag(torch.tensor([1.0, 0.5]))
    centre = torch.tensor([1.0, 1.0])
    # label 3: mean (1, 1) -> offset 0; label 7: offset (3, 3) -> (3, 1.5) -> 11.25; label 9: offset 0.
    # mean over the 3 labels 3.75, / d = 1.875 (a row-wise mean would weigh label 3 twice)
    loss = class_mean_offset_loss(x, labels, centre, w)
    assert abs(loss.item() - 1.875) < 1e-6
    loss.backward()
    # d loss / d x[2] = 2 (offset W) W^T / (3 labels * d 2 * 1 row) = (3, 0.75) / 3
    assert torch.allclose(x.grad[2], torch.tensor([1.0, 0.25]))
    assert torch.allclose(x.grad[0], torch.zeros(2))
    assert float(class_mean_offset_loss(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), centre, w)) == 0.0
