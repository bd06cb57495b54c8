"""Model-test helpers: onnxruntime sessions over ONNX files (the reference the importer is checked against)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def runtime_session(path: Path):
    """An onnxruntime CPU session over a copy of `path` with weights-as-inputs removed and a free batch size."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = onnx.load(str(path))
    graph = proto.graph
    constants = {t.name for t in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.input if i.name not in constants and i.name in used]
    del graph.input[:]
    graph.input.extend(kept)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_session(session, x: np.ndarray) -> np.ndarray:
    """The session's single output for the float32 NCHW batch `x`."""
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.fixture(name="runtime_session")
def runtime_session_fixture():
    return runtime_session


@pytest.fixture(name="run_session")
def run_session_fixture():
    return run_session
