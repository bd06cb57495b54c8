"""Save / load fine-tuned face models: weights + the registered base architecture, checksum-verified."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from faceforget.fileio import load_state, save_state_atomic, sha256_file, write_text_atomic
from faceforget.models.spec import FaceModel

FORMAT = "faceforget-model-v1"


def save_checkpoint(model: FaceModel, path: str | Path, base: str, extra: dict | None = None) -> str:
    """
    Atomically write `model`'s weights plus its base architecture name; returns the file's sha256.

    A `<path>.sha256` sidecar records the checksum that `load_checkpoint` verifies.
    """
    path = Path(path)
    state = {
        "format": FORMAT,
        "base": base,
        "preprocess": json.dumps(model.preprocess.to_dict()),
        "extra": json.dumps(extra or {}, sort_keys=True),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    save_state_atomic(path, state)
    digest = sha256_file(path)
    write_text_atomic(path.with_name(path.name + ".sha256"), digest + "\n")
    return digest


def load_checkpoint(path: str | Path, verify: bool = True) -> FaceModel:
    """
    Rebuild a FaceModel from `save_checkpoint` output (weights-only load).

    With `verify` the `<path>.sha256` sidecar must exist and match; `verify=False` (`--no-verify`) loads
    a file without one, unchecked.
    """
    from faceforget.models.registry import load_model

    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    if verify and not sidecar.is_file():
        raise ValueError(f"{path} has no checksum file {sidecar.name} beside it, so its integrity cannot be "
                         "checked; restore it, or pass --no-verify (verify=False) to load the file unchecked")
    expected = sidecar.read_text().strip() if verify else None
    state = load_state(path, expected_sha256=expected)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a faceforget model checkpoint (expected format {FORMAT!r})")
    weights = state.get("state_dict")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{path}: 'state_dict' is not a mapping of tensors")
    base = state.get("base")
    model = load_model(str(base))  # a registered name; unknown names raise with the valid choices
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [f"{k} {tuple(v.shape)} (base has {expected_shapes[k]})" for k, v in weights.items()
             if k in expected_shapes and tuple(v.shape) != expected_shapes[k]]
    missing, unexpected = sorted(expected_shapes.keys() - weights.keys()), sorted(weights.keys() - expected_shapes)
    if wrong or missing or unexpected:
        problems = [f"{what} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}" for what, names in
                    (("shapes differ:", wrong), ("missing:", missing), ("unexpected:", unexpected)) if names]
        raise ValueError(f"{path}: weights do not fit base model {base!r}; " + "; ".join(problems))
    model.load_state_dict(weights)
    return model


def model_fingerprint(model: torch.nn.Module) -> str:
    """Short hash of a model's parameter values (to tell models apart in run metadata)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
