"""
FaceModel -> ONNX file (dynamic batch), checked against onnxruntime before it is written (atomically).

The exported graph takes what a FaceModel takes, float32 RGB pixels in [0, 255], NCHW, named `pixels`,
and applies the model's own normalisation; its output `embedding` is the raw (unnormalised) embedding.
The Preprocess is also stored as JSON in the file's metadata (`faceforget.preprocess`).
`RuntimeEmbedder` runs such a graph in memory for the embedding stages (`runtime.embed_backend:
onnxruntime`, docs/scale.md#embedding-backend); with a start block the graph also outputs `prefix`, the
input of that block, which the view cache and the suffix re-embedding need.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from faceforget.fileio import atomic_open
from faceforget.models.spec import FaceModel

if TYPE_CHECKING:
    import onnxruntime

INPUT, OUTPUT, PREFIX = "pixels", "embedding", "prefix"


class _PrefixAndEmbedding(torch.nn.Module):
    """`model` with two outputs: the input of block `start_block` and the raw embedding."""

    def __init__(self, model: FaceModel, start_block: int) -> None:
        super().__init__()
        self.model, self.start_block = model, start_block

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model.forward_prefix(x, self.start_block)
        return h, self.model.forward_from(h, self.start_block)


def to_onnx_bytes(model: FaceModel, opset: int = 17, batch: int = 2, start_block: int = 0) -> bytes:
    """
    Trace `model` (eval mode) into ONNX bytes with a symbolic batch dimension and preprocessing metadata.

    With `start_block` > 0 the graph outputs (`prefix`, `embedding`), the prefix being the input of that block.
    """
    import onnx

    model = model.eval()
    x = torch.zeros(batch, 3, *model.preprocess.input_size)
    traced, outputs = (model, [OUTPUT]) if start_block == 0 else (_PrefixAndEmbedding(model, start_block),
                                                                   [PREFIX, OUTPUT])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(traced, (x,), buffer, dynamo=False, input_names=[INPUT], output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]}, opset_version=opset)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (("faceforget.preprocess", json.dumps(model.preprocess.to_dict(), sort_keys=True)),
                       ("faceforget.model", model.name)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _session(data: bytes, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session over ONNX bytes (on `threads` intra-op threads; None: onnxruntime's default)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ValueError(f'running ONNX needs the onnxruntime package: pip install "faceforget[onnx]" ({exc})') from exc
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class RuntimeEmbedder:
    """`model` exported once (in memory) and run by onnxruntime on the CPU, on `threads` (torch's) threads."""

    def __init__(self, model: FaceModel, start_block: int = 0, threads: int | None = None) -> None:
        self.session = _session(to_onnx_bytes(model, start_block=start_block), threads or torch.get_num_threads())

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(prefix or None, raw embeddings) of float32 NCHW pixels in [0, 255]."""
        outputs = self.session.run(None, {INPUT: np.ascontiguousarray(pixels, dtype=np.float32)})
        return (outputs[0], outputs[1]) if len(outputs) == 2 else (None, outputs[0])


def runtime_embed(data: bytes, pixels: np.ndarray) -> np.ndarray:
    """Run ONNX bytes with onnxruntime (CPU) on float32 NCHW pixels."""
    return _session(data).run(None, {INPUT: pixels.astype(np.float32)})[0]


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
