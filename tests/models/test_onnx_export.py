"""ONNX export: the written file, run by onnxruntime at another batch size, gives the torch model's embeddings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from faceforget.models import onnx_export  # noqa: E402
from faceforget.models.onnx_export import export_onnx  # noqa: E402
from faceforget.models.registry import load_model  # noqa: E402


@pytest.mark.parametrize("name", ["dlib", "sface"])
def test_exported_file_matches_torch_in_onnxruntime(name: str, tmp_path: Path, runtime_session, run_session) -> None:
    model = load_model(name)
    path = tmp_path / f"{name}.onnx"
    reported = export_onnx(model, path)
    x = torch.rand(5, 3, *model.preprocess.input_size, generator=torch.Generator().manual_seed(4)) * 255
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_session(runtime_session(path), x.numpy())
    assert got.shape == (5, model.preprocess.embedding_dim)
    assert np.abs(got - expected).max() <= 1e-4 and reported <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["faceforget.preprocess"]) == json.loads(json.dumps(model.preprocess.to_dict()))
    assert meta["faceforget.model"] == name


def test_a_failed_check_writes_nothing(tmp_path: Path, make_tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(b"previous")
    monkeypatch.setattr(onnx_export, "runtime_embed", lambda data, pixels: np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="onnxruntime differs from torch.*nothing written"):
        export_onnx(make_tiny_model(), path)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]
