"""
MODEL_REGISTRY: model names -> loaders; `load_model(spec)` also takes model files and saved checkpoints.

Specs: a registered name (`dlib`, `sface`, `iresnet50`); `kind:path[?key=value&...]` for a file loader
(`onnx:/m/model.onnx?channel_order=BGR`, `iresnet50:/m/backbone.pth`); a path ending in `.onnx`; or a
faceforget checkpoint (`run/model.pt`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from faceforget.models.spec import FaceModel

ModelLoader = Callable[[], FaceModel]
FileLoader = Callable[[Path, dict[str, str]], FaceModel]
MODEL_REGISTRY: dict[str, ModelLoader] = {}
FILE_LOADERS: dict[str, FileLoader] = {}
SUFFIX_KINDS = {".onnx": "onnx"}


def register_model(name: str, loader: ModelLoader) -> None:
    """Register a zero-argument loader under `name`."""
    if name in MODEL_REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    MODEL_REGISTRY[name] = loader


def register_file_loader(kind: str, loader: FileLoader) -> None:
    """Register `loader(path, options)` for specs `kind:path[?options]`."""
    if kind in FILE_LOADERS:
        raise ValueError(f"model file kind {kind!r} is already registered")
    FILE_LOADERS[kind] = loader


def split_spec(spec: str) -> tuple[str | None, Path, dict[str, str]]:
    """(kind, path, options) of `kind:path?k=v&...`; kind is None when no registered kind prefixes the path."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in FILE_LOADERS:
        kind, rest = None, spec
    path, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) if query else {}
    except ValueError:
        raise ValueError(f"model spec {spec!r}: options after '?' must be key=value pairs joined by '&'") from None
    return kind, Path(path), options


def load_model(spec: str, verify: bool = True) -> FaceModel:
    """
    Build a new FaceModel from a registered name, a model file spec or a faceforget checkpoint (`run/model.pt`).

    A checkpoint's `.sha256` sidecar must match unless `verify` is False.
    """
    from faceforget.models import builtin  # noqa: F401 - registers the built-in models

    if spec in MODEL_REGISTRY:
        return MODEL_REGISTRY[spec]()
    kind, path, options = split_spec(spec)
    kind = kind or SUFFIX_KINDS.get(path.suffix.lower())
    if kind is not None:
        return FILE_LOADERS[kind](path, options)
    path = Path(spec)
    if path.suffix in {".pt", ".pth"} or path.exists():
        from faceforget.models.checkpoint import load_checkpoint

        return load_checkpoint(path, verify=verify)
    raise ValueError(
        f"unknown model {spec!r}: use one of {sorted(MODEL_REGISTRY)}, a model file as "
        f"{' | '.join(f'{k}:PATH' for k in sorted(FILE_LOADERS))}, a .onnx file or a saved model checkpoint"
    )
