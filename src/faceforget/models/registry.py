"""MODEL_REGISTRY: model names -> loaders; `load_model(spec)` also accepts a saved checkpoint path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from faceforget.models.spec import FaceModel

ModelLoader = Callable[[], FaceModel]
MODEL_REGISTRY: dict[str, ModelLoader] = {}


def register_model(name: str, loader: ModelLoader) -> None:
    """Register a zero-argument loader under `name`."""
    if name in MODEL_REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    MODEL_REGISTRY[name] = loader


def load_model(spec: str, verify: bool = True) -> FaceModel:
    """
    Build a new FaceModel from a registered name or a faceforget checkpoint file (`run/model.pt`).

    A checkpoint's `.sha256` sidecar must match unless `verify` is False.
    """
    from faceforget.models import builtin  # noqa: F401 - registers the built-in models

    if spec in MODEL_REGISTRY:
        return MODEL_REGISTRY[spec]()
    path = Path(spec)
    if path.suffix in {".pt", ".pth"} or path.exists():
        from faceforget.models.checkpoint import load_checkpoint

        return load_checkpoint(path, verify=verify)
    raise ValueError(
        f"unknown model {spec!r}: use one of {sorted(MODEL_REGISTRY)} or a path to a saved model checkpoint"
    )
