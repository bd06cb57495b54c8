"""insightface iResNet: arcface_torch backbone.pth key layout, outputs against a functional reference, bad files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceforget.models.iresnet import IRESNET_LAYERS, arcface_key, build_iresnet
from faceforget.models.registry import load_model

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def arcface_state(layers: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict under arcface_torch's key names, written out from its layout (not from our model)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        state.update({f"{prefix}.weight": 1 + 0.2 * torch.randn(c, generator=g),
                      f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
                      f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
                      f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
                      f"{prefix}.num_batches_tracked": torch.tensor(7)})

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        state[key] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5

    conv("conv1.weight", 64, 3, 3)
    bn("bn1", 64)
    state["prelu.weight"] = 0.25 + 0.05 * torch.randn(64, generator=g)
    cin = 64
    for layer, (count, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for i in range(count):
            p = f"layer{layer}.{i}"
            bn(f"{p}.bn1", cin)
            conv(f"{p}.conv1.weight", width, cin, 3)
            bn(f"{p}.bn2", width)
            state[f"{p}.prelu.weight"] = 0.25 + 0.05 * torch.randn(width, generator=g)
            conv(f"{p}.conv2.weight", width, width, 3)
            bn(f"{p}.bn3", width)
            if i == 0:
                conv(f"{p}.downsample.0.weight", width, cin, 1)
                bn(f"{p}.downsample.1", width)
            cin = width
    bn("bn2", 512)
    state["fc.weight"] = torch.randn(512, 512 * 49, generator=g) * (1 / (512 * 49)) ** 0.5
    state["fc.bias"] = 0.1 * torch.randn(512, generator=g)
    bn("features", 512)
    return state


def reference_forward(s: dict[str, torch.Tensor], layers: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    """arcface_torch's iResNet forward written with torch.nn.functional over the raw state dict."""
    def bn(p: str, h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(h, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"],
                            training=False, eps=1e-5)

    h = (x - 127.5) * (1 / 127.5)
    h = F.prelu(bn("bn1", F.conv2d(h, s["conv1.weight"], padding=1)), s["prelu.weight"])
    for layer, count in enumerate(layers, start=1):
        for i in range(count):
            p, stride = f"layer{layer}.{i}", 2 if i == 0 else 1
            out = F.conv2d(bn(f"{p}.bn1", h), s[f"{p}.conv1.weight"], padding=1)
            out = F.prelu(bn(f"{p}.bn2", out), s[f"{p}.prelu.weight"])
            out = bn(f"{p}.bn3", F.conv2d(out, s[f"{p}.conv2.weight"], stride=stride, padding=1))
            skip = bn(f"{p}.downsample.1", F.conv2d(h, s[f"{p}.downsample.0.weight"], stride=stride)) if i == 0 else h
            h = out + skip
    h = F.linear(torch.flatten(bn("bn2", h), 1), s["fc.weight"], s["fc.bias"])
    return bn("features", h)


@pytest.fixture(scope="module")
def backbone18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = arcface_state(IRESNET_LAYERS["iresnet18"])
    path = tmp_path_factory.mktemp("iresnet") / "backbone.pth"
    torch.save(state, path)
    return path, state


def test_our_keys_map_onto_arcface_torch_keys() -> None:
    assert IRESNET_LAYERS == {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
                              "iresnet100": (3, 13, 30, 3)}  # arcface_torch backbones/iresnet.py
    assert {arcface_key(k) for k in build_iresnet("iresnet18").state_dict()} == set(arcface_state((2, 2, 2, 2)))
    assert arcface_key("blocks.layer3_13.bn2.running_mean") == "layer3.13.bn2.running_mean"
    assert arcface_key("blocks.stem.prelu.weight") == "prelu.weight"
    assert arcface_key("blocks.head.features.bias") == "features.bias"


def test_backbone_loads_and_matches_the_functional_reference(backbone18) -> None:
    path, state = backbone18
    model = load_model(f"iresnet18:{path}")
    p = model.preprocess
    assert (p.input_size, p.mean, p.scale, p.channel_order, p.embedding_dim) == (
        (112, 112), (127.5,) * 3, 1 / 127.5, "RGB", 512)
    assert model.name == "iresnet18" and len(model.blocks) == 1 + 8 + 1
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, reference_forward(state, IRESNET_LAYERS["iresnet18"], x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.forward_from(model.forward_prefix(x, 5), 5), out)


def test_batchnorm_stays_in_eval_mode_when_training(backbone18) -> None:
    model = load_model(f"iresnet18:{backbone18[0]}").train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert model.training and len(bns) == 1 + 8 * 3 + 4 + 2 and not any(m.training for m in bns)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.rand(1, 3, 112, 112) * 255).sum().backward()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_ddp_prefix_and_half_precision_are_accepted(tmp_path: Path, backbone18) -> None:
    _, state = backbone18
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
    model = load_model(f"iresnet18:{path}")
    assert model.blocks.head.fc.weight.dtype == torch.float32
    torch.testing.assert_close(model.blocks.head.fc.bias, state["fc.bias"].half().float())


def test_wrong_architecture_names_the_one_that_fits(backbone18) -> None:
    with pytest.raises(ValueError, match=r"does not fit iresnet34: .* look like iresnet18"):
        load_model(f"iresnet34:{backbone18[0]}")


def test_checksums_are_verified(tmp_path: Path, backbone18) -> None:
    path = tmp_path / "backbone.pth"
    path.symlink_to(backbone18[0])
    path.with_name(path.name + ".sha256").write_text("0" * 64 + "  backbone.pth\n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(f"iresnet18:{path}")
    with pytest.raises(ValueError, match="differs from its sidecar"):
        load_model(f"iresnet18:{path}?sha256={'1' * 64}")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['strict'\]"):
        load_model(f"iresnet18:{path}?strict=0")


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"format": "something", "epoch": 3}, path)
    with pytest.raises(ValueError, match="not an arcface_torch backbone state dict"):
        load_model(f"iresnet50:{path}")
