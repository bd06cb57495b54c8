"""Embedding backends: onnxruntime on the exported graph gives torch's embeddings and prefix activations."""
from __future__ import annotations

import numpy as np
import pytest

from faceforget.data.sources import read_records
from faceforget.eval.embed import embed_paths, record_paths

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("start_block", [0, 2])
def test_onnxruntime_backend_matches_torch(toy_dataset, make_tiny_model, start_block):
    root, records = read_records(toy_dataset)
    paths = record_paths(records, root)[:20]
    ours = embed_paths(make_tiny_model(), paths, batch_size=8, start_block=start_block, progress=False)
    onnx = embed_paths(make_tiny_model(), paths, batch_size=8, start_block=start_block, progress=False,
                       backend="onnxruntime")
    assert onnx.embeddings.shape == (20, 8)
    np.testing.assert_allclose(onnx.embeddings, ours.embeddings, atol=1e-5)
    if start_block:
        assert onnx.prefix.shape == ours.prefix.shape == (20, 8, 8, 8)  # the input of block 2: 8 x 8 x 8
        np.testing.assert_allclose(onnx.prefix.numpy(), ours.prefix.numpy(), atol=1e-5)
    else:
        assert onnx.prefix is None and ours.prefix is None


def test_backend_errors_name_the_problem(toy_dataset, make_tiny_model):
    root, records = read_records(toy_dataset)
    paths = record_paths(records, root)[:2]
    with pytest.raises(ValueError, match="runs on the CPU; got device 'cuda'"):
        embed_paths(make_tiny_model(), paths, progress=False, device="cuda", backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown embedding backend 'tensorrt'"):
        embed_paths(make_tiny_model(), paths, progress=False, backend="tensorrt")
