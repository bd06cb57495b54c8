"""
insightface iResNet (arcface_torch `backbones/iresnet.py` layout): 112x112 RGB, (x - 127.5) / 127.5, 512-D.

Deng et al., "ArcFace" (arXiv 1801.07698); Duta et al., "Improved Residual Networks" (arXiv 2004.04989);
layout of https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch. The FaceModel's
blocks are [stem, layer1_0, ..., layer4_2, head]; `arcface_key` maps our state-dict keys to those of an
arcface_torch `backbone.pth` (`conv1.weight`, `layer3.13.bn2.running_mean`, `fc.bias`, `features.weight`),
so `load_model("iresnet50:/path/backbone.pth")` loads one (weights_only; sha256 sidecar checked if present).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from faceforget.fileio import load_state
from faceforget.models.spec import FaceModel, Preprocess

IRESNET_LAYERS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
                  "iresnet100": (3, 13, 30, 3)}
PREPROCESS = Preprocess(input_size=(112, 112), mean=(127.5, 127.5, 127.5), scale=1 / 127.5, channel_order="RGB",
                        embedding_dim=512)
_WIDTHS = (64, 128, 256, 512)
_BLOCK_KEY = re.compile(r"^layer(\d)_(\d+)\.")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation residual unit: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, plus the (projected) input."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual unit."""
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class Stem(nn.Module):
    """conv3x3 3->64, BN, PReLU at full resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 112, 112) -> (N, 64, 112, 112)."""
        return self.prelu(self.bn1(self.conv1(x)))


class Head(nn.Module):
    """BN, flatten, dropout, fc 512*7*7 -> 512 (with bias), BatchNorm1d `features` (weight fixed at 1)."""

    def __init__(self, dropout: float = 0.0, embedding_dim: int = 512) -> None:
        super().__init__()
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 512, 7, 7) -> raw embedding (N, 512)."""
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))


def build_iresnet(arch: str) -> FaceModel:
    """An untrained iResNet (arcface_torch's initialisation) as a FaceModel named `arch`."""
    if arch not in IRESNET_LAYERS:
        raise ValueError(f"unknown iResNet {arch!r}; valid: {', '.join(IRESNET_LAYERS)}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict(stem=Stem())
    cin = 64
    for layer, (count, width) in enumerate(zip(IRESNET_LAYERS[arch], _WIDTHS, strict=True), start=1):
        for i in range(count):
            blocks[f"layer{layer}_{i}"] = IBasicBlock(cin, width, stride=2 if i == 0 else 1)
            cin = width
    blocks["head"] = Head()
    for m in nn.Sequential(blocks).modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0, 0.1)
    return FaceModel(nn.Sequential(blocks), PREPROCESS, name=arch).eval()


def arcface_key(key: str) -> str:
    """Our state-dict key (`blocks.layer2_3.conv1.weight`) -> arcface_torch's (`layer2.3.conv1.weight`)."""
    key = key.removeprefix("blocks.")
    for block in ("stem.", "head."):
        if key.startswith(block):
            return key[len(block):]
    return _BLOCK_KEY.sub(lambda m: f"layer{m.group(1)}.{m.group(2)}.", key)


def load_iresnet(arch: str, path: str | Path, options: dict[str, str] | None = None) -> FaceModel:
    """
    An iResNet with the weights of an arcface_torch `backbone.pth` (a plain state dict; `module.` prefixes dropped).

    Option `sha256=<hex>` checks the file; a `<file>.sha256` sidecar, if present, is checked too.
    """
    path = Path(path)
    unknown = sorted(set(options or {}) - {"sha256"})
    if unknown:
        raise ValueError(f"{arch}:{path}: unknown option(s) {unknown}; valid: sha256")
    expected = (options or {}).get("sha256")
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():  # `<hex>` or sha256sum's `<hex>  <name>`
        stored = (sidecar.read_text().split() or [""])[0]
        if expected and expected != stored:
            raise ValueError(f"{path}: option sha256={expected} differs from its sidecar {sidecar} ({stored})")
        expected = stored
    state = load_state(path, expected_sha256=expected)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an arcface_torch backbone state dict (a faceforget run/model.pt loads "
                         "directly: --model run/model.pt)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_iresnet(arch)
    ours = {arcface_key(k): k for k in model.state_dict()}
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {arch}: {len(missing)} missing key(s) {missing[:4]}, "
                         f"{len(unexpected)} unexpected {unexpected[:4]}{_arch_hint(state)}")
    model.load_state_dict({ours[k]: v.float() for k, v in state.items()})
    return model.eval()


def _arch_hint(state: dict) -> str:
    """'; its layers look like iresnet100' when the file's block counts match another architecture."""
    counts = [1 + max((int(m.group(1)) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))), default=-1)
              for i in range(1, 5)]
    match = [a for a, layers in IRESNET_LAYERS.items() if tuple(counts) == layers]
    return f"; its layers {tuple(counts)} look like {match[0]}" if match else f"; its layers are {tuple(counts)}"
