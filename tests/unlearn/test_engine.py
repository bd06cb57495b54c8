"""Engine tests: original untouched, prefix cache exact, resume identical, every method steps."""
import pytest
import torch

from faceforget.config import EngineConfig
from faceforget.unlearn.engine import run_engine
from faceforget.unlearn.registry import available_methods, get_method
from faceforget.unlearn.trainable import first_trainable_block

SMALL = dict(steps=6, lr=1e-2, forget_views=3, retain_views=2, retain_batch=8, forget_per_identity=3,
             forget_batch=6, batch_size_embed=5, trainable="last:2")


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_original_is_not_modified_and_model_changes(tiny_model, toy_data):
    before = _params(tiny_model)
    result = run_engine(get_method("dispersion"), tiny_model, toy_data, EngineConfig(**SMALL), progress=False)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    after = result.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert len(result.history) == SMALL["steps"] and "keep" in result.history[0]


@pytest.mark.parametrize("trainable,start", [("all", 0), ("embedding", 3), ("last:2", 2)])
def test_trainable_selection_freezes_prefix(tiny_model, toy_data, trainable, start):
    assert first_trainable_block(tiny_model, trainable) == start
    result = run_engine(get_method("dispersion"), tiny_model, toy_data,
                        EngineConfig(**{**SMALL, "trainable": trainable}), progress=False)
    for i, (orig, new) in enumerate(zip(tiny_model.blocks, result.model.blocks, strict=False)):
        same = all(torch.equal(a, b) for a, b in zip(orig.state_dict().values(), new.state_dict().values()))
        assert same == (i < start)


def test_trainable_errors(tiny_model):
    for bad in ("last:0", "last:9", "some"):
        with pytest.raises(ValueError, match="last"):
            first_trainable_block(tiny_model, bad)


def test_prefix_cache_gives_the_same_embeddings(tiny_model, toy_data):
    from faceforget.data.augment import AugmentConfig
    from faceforget.unlearn.views import build_view_bank

    kw = dict(views=3, augment_cfg=AugmentConfig(), seed=0, stream="forget", progress=False)
    cached = build_view_bank(tiny_model, toy_data.forget_pixels, toy_data.forget_labels, start=2, **kw)
    pixels = build_view_bank(tiny_model, toy_data.forget_pixels, toy_data.forget_labels, start=0, **kw)
    assert pixels.inputs.dtype == torch.uint8
    torch.testing.assert_close(cached.original, pixels.original, atol=1e-5, rtol=0)
    # view 0 is the clean image
    clean = tiny_model(toy_data.forget_pixels.permute(0, 3, 1, 2).float())
    torch.testing.assert_close(cached.original[cached.clean()], torch.nn.functional.normalize(clean, dim=1),
                               atol=1e-5, rtol=0)


def test_resume_after_crash_matches_uninterrupted(tmp_path, toy_data, make_tiny_model):
    cfg = EngineConfig(**{**SMALL, "steps": 8, "checkpoint_every": 2}, optimizer="sgd")
    full = run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, progress=False)

    class Crash(RuntimeError):
        pass

    def crash_at_5(step, _):
        if step == 4:
            raise Crash()

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, checkpoint_path=ckpt,
                   signature="job", progress=False, on_step=crash_at_5)
    assert ckpt.is_file()
    resumed = run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, checkpoint_path=ckpt,
                         signature="job", progress=False)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, atol=0, rtol=0)
    assert len(resumed.history) == 8
    with pytest.raises(ValueError, match="different job"):
        run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, checkpoint_path=ckpt,
                   signature="other", progress=False)


def test_same_seed_same_weights(toy_data, make_tiny_model):
    cfg = EngineConfig(**SMALL)
    a = run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, progress=False).model
    b = run_engine(get_method("dispersion"), make_tiny_model(), toy_data, cfg, progress=False).model
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


@pytest.mark.parametrize("name", available_methods())
def test_every_registered_method_takes_steps(name, tiny_model, toy_data):
    method = get_method(name)
    result = run_engine(method, tiny_model, toy_data, EngineConfig(**{**SMALL, "steps": 2}), progress=False)
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in result.history)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="dispersion"):
        get_method("nope")
    with pytest.raises(ValueError, match="(?s)params of method 'dispersion'.*w_keep: "):
        get_method("dispersion", {"w_keep": -1})
    with pytest.raises(ValueError, match="typo"):
        get_method("dispersion", {"typo": 1})


def test_epochs_set_the_step_count(tiny_model, toy_data):
    cfg = EngineConfig(**{**SMALL, "epochs": 2})  # 16 retain images at retain_batch 8: 2 steps per epoch
    result = run_engine(get_method("dispersion"), tiny_model, toy_data, cfg, progress=False)
    assert len(result.history) == 4


def test_batchnorm_statistics_stay_frozen_unless_configured(make_tiny_model, toy_data):
    model = make_tiny_model()
    model.blocks.b2 = torch.nn.Sequential(model.blocks.b2[0], torch.nn.BatchNorm2d(16).eval(), torch.nn.ReLU())
    start = model.blocks.b2[1].running_mean.clone()
    frozen = run_engine(get_method("dispersion"), model, toy_data, EngineConfig(**SMALL), progress=False).model
    assert torch.equal(frozen.blocks.b2[1].running_mean, start)
    moving = run_engine(get_method("dispersion"), model, toy_data, EngineConfig(**SMALL, train_batchnorm=True),
                        progress=False).model
    assert not torch.equal(moving.blocks.b2[1].running_mean, start)
    assert torch.equal(model.blocks.b2[1].running_mean, start)  # the original is never touched
