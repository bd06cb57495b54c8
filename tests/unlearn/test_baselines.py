"""Baselines move the tiny model the way their papers intend; schedules and reference budgets are as specified."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faceforget.config import EngineConfig
from faceforget.unlearn.engine import build_banks, run_engine
from faceforget.unlearn.losses import distill_kl
from faceforget.unlearn.method import MethodContext
from faceforget.unlearn.recipe import HFLIP_ONLY
from faceforget.unlearn.registry import get_method

SETUP = {"steps": 30, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "schedule": "constant", "grad_clip": 1.0,
         "sampler": "uniform", "forget_batch": 8, "retain_batch": 16, "forget_views": 2, "retain_views": 2,
         "augment": HFLIP_ONLY, "batch_size_embed": 16, "trainable": "all"}
S10 = {"head": {"s": 10.0}}  # a softer head than the default s=30 keeps the tiny model's gradients tame


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs cost more than they save on shared cores
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy(toy_data_shared):
    return toy_data_shared


@pytest.fixture(scope="module")
def original(trained_tiny_model):
    return trained_tiny_model


def unlearn(name, original, toy, params=S10, **engine):
    return run_engine(get_method(name, params), original, toy, EngineConfig(**{**SETUP, **engine}), progress=False)


def embed(model, pixels):
    with torch.no_grad():
        return F.normalize(model(pixels.permute(0, 3, 1, 2).float()), dim=1)


def stats(model, head, toy):
    """Frozen-head CE and top-1 on the clean forget and retain training images."""
    out = {}
    for stream, pixels, labels in (("f", toy.forget_pixels, toy.forget_labels), ("r", toy.retain_pixels,
                                                                                toy.retain_labels)):
        z = embed(model, pixels)
        out[f"{stream}_ce"] = float(head.ce(z, labels))
        out[f"{stream}_top1"] = float((head.logits(z).argmax(1) == labels).float().mean())
    return out


def before_after(result, original, toy):
    head = result.method_state["head"]
    return stats(original, head, toy), stats(result.model, head, toy)


def conv_fc_l1(model):
    return sum(float(p.abs().sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               for p in m.parameters())


def make_ctx(original, toy, **engine):
    cfg = EngineConfig(**{**SETUP, **engine})
    forget, retain = build_banks(original, toy, cfg, progress=False)
    return MethodContext(model=copy.deepcopy(original), original_model=original, start_block=0, forget=forget,
                         retain=retain, identity_names=toy.identity_names, forget_label_ids=toy.forget_label_ids,
                         forget_pixels=toy.forget_pixels, config=cfg)


def test_original_fixture_classifies_every_training_image(original, toy):
    before, _ = before_after(unlearn("finetune", original, toy, steps=1), original, toy)
    assert before["f_top1"] == 1.0 and before["r_top1"] == 1.0


def test_gradient_ascent_raises_forget_loss(original, toy):
    before, after = before_after(unlearn("gradient_ascent", original, toy), original, toy)
    assert after["f_ce"] > before["f_ce"] + 5 and after["f_top1"] == 0.0


def test_neggrad_plus_raises_forget_loss_and_keeps_retain_better_than_ga(original, toy):
    before, after = before_after(unlearn("neggrad_plus", original, toy, steps=60), original, toy)
    _, ga = before_after(unlearn("gradient_ascent", original, toy, steps=60), original, toy)
    assert after["f_ce"] > before["f_ce"] + 5
    assert after["r_ce"] < ga["r_ce"] and after["r_top1"] == 1.0


@pytest.mark.parametrize("name", ["random_labeling", "salun"])
def test_random_labels_lower_forget_accuracy_and_keep_retain(name, original, toy):
    before, after = before_after(unlearn(name, original, toy, sampler="union"), original, toy)
    assert after["f_top1"] <= 0.5 < before["f_top1"]
    assert after["r_top1"] == 1.0


def test_salun_mask_has_requested_density_and_frozen_weights_stay(original, toy):
    result = unlearn("salun", original, toy, {**S10, "mask_ratio": 0.3}, sampler="union")
    mask = result.method_state["salun_mask"]
    total = sum(m.numel() for m in mask.values())
    assert result.method_state["salun_mask_density"] == pytest.approx(math.floor(0.3 * total) / total)
    before, after = dict(original.named_parameters()), dict(result.model.named_parameters())
    for name, m in mask.items():
        assert torch.equal(after[name][m == 0], before[name][m == 0])
    assert any(not torch.equal(after[n][m == 1], before[n][m == 1]) for n, m in mask.items())


def test_finetune_and_l1_lower_retain_loss_and_l1_shrinks_weights(original, toy):
    ft = unlearn("finetune", original, toy)
    l1 = unlearn("l1_sparse", original, toy, {**S10, "gamma": 0.1})
    for result in (ft, l1):
        before, after = before_after(result, original, toy)
        assert after["r_ce"] < before["r_ce"]
    assert conv_fc_l1(l1.model) < conv_fc_l1(ft.model) * 0.97
    assert 0.05 < l1.method_state["l1_shrink_fraction"] < 0.3  # the target band of docs/methods.md#l1-sparse


def test_boundary_shrink_moves_forget_predictions_to_neighbours(original, toy):
    result = unlearn("boundary_shrink", original, toy)
    targets, head = result.method_state["bs_targets"], result.method_state["head"]
    assert not torch.isin(targets, torch.tensor(toy.forget_label_ids)).any()
    assert 0 <= result.method_state["bs_attack_success"] <= 1
    before, after = (head.logits(embed(m, toy.forget_pixels)).argmax(1) for m in (original, result.model))
    assert (before == targets).float().mean() < 0.5 < (after == targets).float().mean()


@pytest.mark.parametrize("rows", [1, "K"])
def test_boundary_expanding_maps_forget_embeddings_toward_the_shadow_row(rows, original, toy):
    result = unlearn("boundary_expanding", original, toy, {**S10, "shadow_rows": rows})
    shadow = F.normalize(result.method_state["be_shadow"].detach(), dim=1)
    assert shadow.shape[0] == (1 if rows == 1 else len(toy.forget_label_ids))
    slot = torch.tensor([0] * len(toy.forget_labels)) if rows == 1 else toy.forget_labels
    before, after = ((embed(m, toy.forget_pixels) * shadow[slot]).sum(1).mean() for m in (original, result.model))
    assert after > before + 0.3


def test_scrub_moves_forget_away_from_teacher_and_keeps_retain_closer(original, toy):
    result = unlearn("scrub", original, toy)
    head = result.method_state["head"]
    kl = {}
    for stream, pixels in (("forget", toy.forget_pixels), ("retain", toy.retain_pixels)):
        teacher, student = (head.logits(embed(m, pixels)) for m in (original, result.model))
        kl[stream] = float(distill_kl(student, teacher, 4.0))
    assert kl["forget"] > 1.0 and kl["retain"] < kl["forget"] / 3


def test_scrub_schedule_is_literal_under_epochs_and_stretched_otherwise(original, toy):
    method = get_method("scrub")  # 3 epochs, max pass in the first 2: 1 forget step, 2 retain steps each
    literal = make_ctx(original, toy, steps=8, retain_batch=8)
    assert [method.streams(t, literal)[0] for t in range(8)] == [1, 0, 0, 1, 0, 0, 0, 0]
    doubled = make_ctx(original, toy, steps=16, retain_batch=8)
    assert [method.streams(t, doubled)[0] for t in range(16)] == [1, 1, 0, 0, 0, 0, 1, 1] + [0] * 8


def test_random_labels_are_fresh_per_epoch_and_avoid_truth_on_request(original, toy):
    ctx = make_ctx(original, toy, steps=6, forget_batch=4, retain_batch=8)  # one pass = 2 steps
    method = get_method("random_labeling", {"exclude_true_label": True})
    labels = [method.random_labels(t, ctx) for t in range(6)]
    assert torch.equal(labels[0], labels[1]) and torch.equal(labels[4], labels[5])
    assert not torch.equal(labels[1], labels[2])
    true = toy.forget_labels
    assert all((lab != true).all() and lab.max() < len(toy.identity_names) for lab in labels)


def test_forget_then_retain_alternates_passes(original, toy):
    ctx = make_ctx(original, toy, steps=8, forget_batch=4, retain_batch=8)  # 2 forget + 2 retain steps
    method = get_method("random_labeling", {"loader": "forget_then_retain"})
    assert [method.streams(t, ctx) for t in range(4)] == [(True, False)] * 2 + [(False, True)] * 2
    with pytest.raises(ValueError, match="uniform"):
        method.setup(make_ctx(original, toy, sampler="union"))


def test_l1_gamma_decays_linearly_per_epoch(original, toy):
    ctx = make_ctx(original, toy, steps=6, retain_batch=8)  # one retain pass = 2 steps, 3 epochs
    plain = get_method("l1_sparse", {"gamma": 0.3})
    assert [plain.gamma_at(t, ctx) for t in range(6)] == pytest.approx([0.3, 0.3, 0.2, 0.2, 0.1, 0.1])
    tail = get_method("l1_sparse", {"gamma": 0.3, "no_l1_epochs": 1})
    assert [tail.gamma_at(t, ctx) for t in range(6)] == pytest.approx([0.3, 0.3, 0.15, 0.15, 0, 0])


def test_old_param_names_are_rejected_with_the_new_name():
    with pytest.raises(ValueError, match="ratio -> mask_ratio, rl_schedule -> loader"):
        get_method("salun", {"ratio": 0.3, "rl_schedule": "mixed"})
    with pytest.raises(ValueError, match="bs_eps_pixels -> eps_pixels"):
        get_method("boundary_shrink", {"bs_eps_pixels": 0.2})
    assert get_method("boundary_expanding", {"shadow_rows": "K"}).params.shadow_rows == "K"
