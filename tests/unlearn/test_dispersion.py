"""Dispersion on the toy fixture: forget identities stop being retrievable, retain ones stay; masks hold."""
import numpy as np
import torch
import torch.nn.functional as F

from faceforget.config import EngineConfig
from faceforget.eval import metrics
from faceforget.unlearn.engine import run_engine
from faceforget.unlearn.registry import get_method

# the tiny model has 16 fc inputs for 24 images: the closed-form refit would undo the toy forgetting
PARAMS = {"c": 10, "refit": False, "b": 1, "e": 0, "margin": 0.1}
CFG = dict(steps=60, lr=3e-3, forget_views=1, retain_views=1, retain_batch=16, forget_per_identity=4,
           trainable="all", batch_size_embed=8)


def _emb(model, pixels):
    with torch.no_grad():
        return F.normalize(model(pixels.permute(0, 3, 1, 2).float()), dim=1).numpy()


def _map(emb, labels, queries):
    qm = metrics.rank_queries(emb[queries], labels[queries], emb, labels, exclude=np.flatnonzero(queries))
    return metrics.summarise(qm)["mAP"]


def test_dispersion_makes_forget_unretrievable_and_keeps_retain(trained_tiny_model, toy_data):
    result = run_engine(get_method("dispersion", PARAMS), trained_tiny_model, toy_data, EngineConfig(**CFG),
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
