"""Margin heads: literal logit formulas, near-perfect fit on separable embeddings, per-process cache."""
import math

import pytest
import torch
import torch.nn.functional as F

from faceforget.unlearn.heads import ArcFaceHead, CosFaceHead, fit_head


def separable(n_classes=5, per_class=8, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, dim, generator=g), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    z = F.normalize(centres[labels] + 0.15 * torch.randn(len(labels), dim, generator=g), dim=1)
    return z, labels


@pytest.mark.parametrize("head_cls", [CosFaceHead, ArcFaceHead])
def test_logits_match_literal_formula(head_cls):
    w = torch.tensor([[2.0, 0.0], [0.0, 0.5], [-1.0, -1.0]])
    angles = torch.tensor([10.0, 100.0]) * math.pi / 180
    z = torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.tensor([0, 1])
    s, m = 30.0, 0.35
    head = head_cls(w, s, m)
    rows = [w[j] / w[j].norm() for j in range(3)]
    for i in range(2):
        for j in range(3):
            c = float(z[i] @ rows[j])
            assert float(head.logits(z)[i, j]) == pytest.approx(s * c, abs=1e-4)
            if j != labels[i]:
                target = c
            elif head_cls is CosFaceHead:
                target = c - m
            else:
                target = math.cos(math.acos(c) + m)
            assert float(head.margin_logits(z, labels)[i, j]) == pytest.approx(s * target, abs=1e-4)
    extra = torch.tensor([[0.0, 3.0]])
    assert head.cosine(z, extra).shape == (2, 4)
    assert float(head.cosine(z, extra)[0, 3]) == pytest.approx(float(angles[0].sin()), abs=1e-6)
    assert float(head.ce(z[:0], labels[:0])) == 0.0


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_fit_reaches_full_train_top1_on_separable_embeddings(kind):
    z, labels = separable()
    head, report = fit_head(z, labels, 5, kind=kind, epochs=100, seed=1)
    assert report["train_top1"] == 1.0 and report["loss_end"] <= report["loss_start"]
    assert isinstance(head, CosFaceHead if kind == "cosface" else ArcFaceHead)
    assert not head.weight.requires_grad


def test_rows_start_at_class_means_and_fit_is_cached_as_copies():
    z, labels = separable()
    untrained, _ = fit_head(z, labels, 6, epochs=0, seed=3)
    means = F.normalize(torch.stack([z[labels == k].mean(0) for k in range(5)]), dim=1)
    torch.testing.assert_close(untrained.weight[:5], means)
    assert untrained.weight[5].norm() == pytest.approx(1.0, abs=1e-5)  # a class without samples
    a, rep_a = fit_head(z, labels, 6, epochs=20, seed=3)
    b, rep_b = fit_head(z, labels, 6, epochs=20, seed=3, trainable=True)
    assert rep_a["hash"] == rep_b["hash"] and a is not b and b.weight.requires_grad
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    with torch.no_grad():
        b.weight.zero_()
    again, _ = fit_head(z, labels, 6, epochs=20, seed=3)
    torch.testing.assert_close(again.weight, a.weight, rtol=0, atol=0)
    assert fit_head(z, labels, 6, s=20.0, epochs=20, seed=3)[1]["hash"] != rep_a["hash"]
