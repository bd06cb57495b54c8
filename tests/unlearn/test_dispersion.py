"""Dispersion on the toy fixture: forget identities stop being retrievable, retain ones stay; masks hold."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforget.config import EngineConfig
from faceforget.eval import metrics
from faceforget.unlearn.engine import run_engine
from faceforget.unlearn.methods.dispersion import Dispersion
from faceforget.unlearn.registry import get_method

# the tiny model has 16 fc inputs for 24 images: the closed-form refit would undo the toy forgetting
PAPER = {"w_target": 0, "w_keep": 10, "refit": False, "w_uniform": 1, "w_hard": 1, "hard_margin": 0.1}
TARGET = {"w_keep": 10, "refit": False}
CFG = dict(steps=60, lr=3e-3, forget_views=1, retain_views=1, retain_batch=16, forget_per_identity=4,
           trainable="all", batch_size_embed=8)


def _emb(model, pixels):
    with torch.no_grad():
        return F.normalize(model(pixels.permute(0, 3, 1, 2).float()), dim=1).numpy()


def _map(emb, labels, queries):
    qm = metrics.rank_queries(emb[queries], labels[queries], emb, labels, exclude=np.flatnonzero(queries))
    return metrics.summarise(qm)["mAP"]


@pytest.mark.parametrize("params", [PAPER, TARGET, TARGET | {"target_map": "ot", "target_spread": 1.0}],
                         ids=["uniform+hard", "target-output-scaled", "target-output-ot"])
def test_dispersion_makes_forget_unretrievable_and_keeps_retain(trained_tiny_model, toy_data, params):
    result = run_engine(get_method("dispersion", params), trained_tiny_model, toy_data, EngineConfig(**CFG),
                        progress=False)
    pixels = torch.cat([toy_data.forget_pixels, toy_data.retain_pixels])
    labels = torch.cat([toy_data.forget_labels, toy_data.retain_labels]).numpy()
    forget = np.isin(labels, toy_data.forget_label_ids)
    before, after = _emb(trained_tiny_model, pixels), _emb(result.model, pixels)
    assert _map(before, labels, forget) > 0.99 and _map(before, labels, ~forget) > 0.99
    assert _map(after, labels, forget) < 0.7
    assert _map(after, labels, ~forget) > 0.95


def test_selective_mask_limits_which_weights_change(trained_tiny_model, toy_data):
    method = get_method("dispersion", {"mask_ratio": 0.1, "refit": False})
    result = run_engine(method, trained_tiny_model, toy_data, EngineConfig(**{**CFG, "steps": 5}), progress=False)
    density = result.method_state["mask_density"]
    assert 0.09 <= density <= 0.11
    changed = total = 0
    for before, after in zip(trained_tiny_model.parameters(), result.model.parameters(), strict=True):
        changed += int((before != after).sum())
        total += before.numel()
    assert 0 < changed <= density * total + 1


def test_old_knob_names_are_rejected_with_the_new_ones():
    with pytest.raises(ValueError, match=r"a -> w_uniform, c -> w_keep"):
        get_method("dispersion", {"a": 1, "c": 2})


class _Captured(Dispersion):
    """Dispersion that keeps its context, to inspect what setup computed."""

    def setup(self, ctx):
        super().setup(ctx)
        self.ctx = ctx


def _new_views(model, data, params):
    """One engine step with `params`, then the forget bank through `_with_new_views`: (ctx, part, inputs, changed).

    Checks what holds for every kind of new view: half the rows replaced, the others keep their precomputed
    targets, and each replaced row's target is the map of the original's features of its new input (the
    default map lives on the original's normalised output embedding).
    """
    method = _Captured(params | {"refit": False})
    result = run_engine(method, model, data, EngineConfig(**{**CFG, "steps": 1}), progress=False)
    assert "target" in result.history[0]
    ctx = method.ctx
    part = ctx.forget.take(torch.arange(len(ctx.forget)))
    inputs, targets = method._with_new_views(part, ctx, step=0)
    changed = (inputs != part.inputs).flatten(1).any(1)
    assert int(changed.sum()) == round(0.5 * len(part))
    np.testing.assert_allclose(targets[~changed].numpy(), ctx.state["targets"][~changed].numpy())
    with torch.no_grad():
        features = F.normalize(ctx.original_model.forward_from(inputs[changed], ctx.start_block), dim=1)
    expected = ctx.state["target_map"](features, part.labels[changed])
    np.testing.assert_allclose(targets[changed].numpy(), expected.numpy(), atol=1e-5)
    return ctx, part, inputs, changed


def test_mixup_targets_are_the_map_of_the_mixed_inputs(trained_tiny_model, toy_data):
    _new_views(trained_tiny_model, toy_data, {"mixup": 0.5})  # every mixed row has another view of its person


def test_retain_variation_is_each_clean_view_minus_its_identity_mean():
    from faceforget.unlearn.method import ViewBank
    from faceforget.unlearn.methods.dispersion import retain_variation

    # 2 views per image (clean, augmented); identity 0 has photos 1 and 3, identity 1 a single photo
    inputs = torch.tensor([[1.0, 0.0], [9.0, 9.0], [5.0, 5.0], [9.0, 9.0], [3.0, 2.0], [9.0, 9.0]])
    bank = ViewBank(inputs, torch.tensor([0, 0, 1, 1, 0, 0]), torch.zeros(6, 2), torch.tensor([0, 0, 1, 1, 2, 2]), 2)
    # identity 0's clean views (1, 0) and (3, 2), mean (2, 1); identity 1 lends nothing
    np.testing.assert_allclose(retain_variation(bank).numpy(), [[-1.0, -1.0], [1.0, 1.0]])
    lonely = ViewBank(inputs[:4], torch.tensor([0, 0, 1, 1]), torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), 2)
    with pytest.raises(ValueError, match="at least two photos"):
        retain_variation(lonely)


def test_borrowed_variation_rows_carry_a_retain_variation_and_the_map_of_it(trained_tiny_model, toy_data):
    ctx, part, inputs, changed = _new_views(trained_tiny_model, toy_data, {"borrowed_variation": 0.5})
    # each changed row is clamp(own view + s * one retain variation, bank range), 0 <= s <= 1: on the entries
    # left inside the range the change is exactly s * variation for one donor, the others sit at a bound
    low, high = ctx.state["input_range"]
    variation = ctx.state["variation"].flatten(1)
    for row in torch.nonzero(changed).squeeze(1):
        out, own = inputs[row].flatten(), part.inputs[row].flatten()
        inside = (out > low) & (out < high)
        assert bool(((out == low) | (out == high) | inside).all()) and int(inside.sum()) > 0
        delta, v = (out - own)[inside], variation[:, inside]
        ratio = (v @ delta) / v.pow(2).sum(1).clamp_min(1e-12)
        residual = (delta - ratio[:, None] * v).norm(dim=1)
        best = int(residual.argmin())
        assert float(residual[best]) < 1e-4 * max(1.0, float(delta.norm())) and -1e-6 <= float(ratio[best]) <= 1 + 1e-6
    assert float(inputs.min()) >= low and float(inputs.max()) <= high


@pytest.mark.parametrize("space", ["output", "penultimate"])
def test_feature_terms_use_the_penultimate_features_whatever_the_target_space(trained_tiny_model, toy_data, space):
    # the feature keep and erasure terms compare the input of the final linear layer with the frozen original's,
    # also when the target map lives on the output embedding (it once read the map's 8-D outputs there)
    from faceforget.models.features import penultimate_features

    method = _Captured({"w_keep_features": 1.0, "w_erase_features": 1.0, "target_space": space, "refit": False})
    result = run_engine(method, trained_tiny_model, toy_data, EngineConfig(**{**CFG, "steps": 1}), progress=False)
    ctx = method.ctx
    expected = penultimate_features(trained_tiny_model, ctx.retain.inputs, ctx.start_block)
    assert tuple(ctx.state["retain_penultimate"].shape) == (len(ctx.retain), 16)
    np.testing.assert_allclose(ctx.state["retain_penultimate"].numpy(), expected.numpy(), atol=1e-6)
    # the first step's loss is taken before any update: the retain features are still the original's
    assert result.history[0]["keep_features"] == pytest.approx(0.0, abs=1e-8)
    assert result.history[0]["erase_features"] > 0
