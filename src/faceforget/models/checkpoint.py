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


def load_checkpoint(path: str | Path) -> FaceModel:
    """Rebuild a FaceModel from `save_checkpoint` output (weights_only load; checksum checked if present)."""
    from faceforget.models.registry import load_model

    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    expected = sidecar.read_text().strip() if sidecar.is_file() else None
    state = load_state(path, expected_sha256=expected)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a faceforget model checkpoint (expected format {FORMAT!r})")
    base = state["base"]
    model = load_model(base)  # a registered name; unknown names raise with the valid choices
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit base model {base!r} (missing {missing}, unexpected {unexpected})")
    return model


def model_fingerprint(model: torch.nn.Module) -> str:
    """Short hash of a model's parameter values (to tell models apart in run metadata)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
