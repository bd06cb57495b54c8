"""
FaceModel -> ONNX file (dynamic batch), checked against onnxruntime before it is written (atomically).

The exported graph takes what a FaceModel takes, float32 RGB pixels in [0, 255], NCHW, named `pixels`,
and applies the model's own normalisation; its output `embedding` is the raw (unnormalised) embedding.
The Preprocess is also stored as JSON in the file's metadata (`faceforget.preprocess`).
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from faceforget.fileio import atomic_open
from faceforget.models.spec import FaceModel

INPUT, OUTPUT = "pixels", "embedding"


def to_onnx_bytes(model: FaceModel, opset: int = 17, batch: int = 2) -> bytes:
    """Trace `model` (eval mode) into ONNX bytes with a symbolic batch dimension and preprocessing metadata."""
    import onnx

    model = model.eval()
    x = torch.zeros(batch, 3, *model.preprocess.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (("faceforget.preprocess", json.dumps(model.preprocess.to_dict(), sort_keys=True)),
                       ("faceforget.model", model.name)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def runtime_embed(data: bytes, pixels: np.ndarray) -> np.ndarray:
    """Run ONNX bytes with onnxruntime (CPU) on float32 NCHW pixels."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT: pixels.astype(np.float32)})[0]


def export_onnx(model: FaceModel, path: str | Path, *, opset: int = 17, tolerance: float = 1e-4,
                seed: int = 0) -> float:
    """
    Write `model` as ONNX to `path` after checking onnxruntime against torch on 3 random images.

    Returns the max abs difference; raises ValueError (nothing written) when it exceeds `tolerance`.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ValueError(f'ONNX export needs the onnx and onnxruntime packages: pip install "faceforget[onnx]"'
                         f" ({exc})") from exc
    data = to_onnx_bytes(model, opset)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, (3, 3, *model.preprocess.input_size)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(pixels)).numpy()
    error = float(np.abs(runtime_embed(data, pixels) - expected).max())
    if not error <= tolerance:
        raise ValueError(f"ONNX export of {model.name!r}: onnxruntime differs from torch by {error:.3g} "
                         f"(> {tolerance}); nothing written to {path}")
    with atomic_open(path, "wb") as f:
        f.write(data)
    return error
