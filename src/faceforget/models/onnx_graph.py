"""
An ONNX face-recognition graph as plain data: constants folded (int8 weights dequantised), BatchNorm folded.

`read_graph` keeps only the nodes that act on the image tensor; everything computed from weights alone
(DequantizeLinear, Reshape of weights, Constant) is evaluated once with numpy. See docs/models_and_data.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ops that may act on the image tensor (built as torch modules by onnx_ops) or vanish on import
DYNAMIC_OPS = frozenset({"Conv", "BatchNormalization", "PRelu", "Relu", "Add", "Sub", "Mul", "Div", "Flatten",
                         "Reshape", "Gemm", "MatMul", "GlobalAveragePool", "Identity", "Dropout"})
CONSTANT_OPS = frozenset({"Constant", "DequantizeLinear", "Reshape", "Identity", "Flatten",
                          "Add", "Sub", "Mul", "Div"})
PASS_THROUGH = frozenset({"Identity", "Dropout"})  # inference-time identities
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


@dataclass
class Node:
    """One ONNX node acting on activations; `inputs` may name constants (looked up in Graph.constants)."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """The activation path of a model: one image input, one output, nodes in topological order."""

    source: str
    input: str
    input_shape: tuple  # ints, or strings for symbolic dimensions
    output: str
    nodes: list[Node]
    constants: dict[str, np.ndarray]

    def consumers(self, tensor: str) -> list[int]:
        """Indices of the nodes reading `tensor`."""
        return [i for i, n in enumerate(self.nodes) if tensor in n.inputs]

    def producer(self, tensor: str) -> int | None:
        """Index of the node writing `tensor` (None for the graph input)."""
        return next((i for i, n in enumerate(self.nodes) if tensor in n.outputs), None)


def read_graph(path: str | Path) -> Graph:
    """Load `path` with the onnx package and reduce it to its activation path (errors name the file)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ValueError(f'importing {path} needs the onnx package: pip install "faceforget[onnx]"') from exc

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types; re-raised naming the file
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from exc
    g = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    raw = [Node(n.op_type, list(n.input), list(n.output),
                {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in g.node]
    unsupported = sorted({n.op if d.domain in ("", "ai.onnx") else f"{d.domain}.{n.op}"
                          for n, d in zip(raw, g.node, strict=True)} - DYNAMIC_OPS - CONSTANT_OPS)
    if unsupported:
        raise ValueError(f"{path}: unsupported ONNX operators {', '.join(unsupported)}; faceforget imports "
                         f"{', '.join(sorted(DYNAMIC_OPS | CONSTANT_OPS))}")
    nodes = [n for n in raw if not _fold_constant(n, constants, path)]
    used = {name for n in nodes for name in n.inputs}
    images = [i for i in g.input if i.name not in constants and i.name in used]
    if len(images) != 1 or len(g.output) != 1:
        raise ValueError(f"{path}: expected one image input and one output, got inputs "
                         f"{[i.name for i in images]} and outputs {[o.name for o in g.output]}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in images[0].type.tensor_type.shape.dim)
    graph = Graph(str(path), images[0].name, dims, g.output[0].name, nodes, constants)
    _drop_pass_through(graph)
    return graph


def _fold_constant(node: Node, constants: dict[str, np.ndarray], path: Path) -> bool:
    """Evaluate `node` into `constants` when every input is constant; True if it was folded."""
    if node.op != "Constant" and not all(i in constants or i == "" for i in node.inputs):
        return False
    if node.op not in CONSTANT_OPS:
        return False
    if node.op == "Constant":
        value = _constant_value(node, path)
    elif node.op == "DequantizeLinear":
        value = dequantize(*(constants[i] if i else None for i in node.inputs), **node.attrs)
    elif node.op == "Reshape":
        value = constants[node.inputs[0]].reshape(reshape_target(constants[node.inputs[0]].shape,
                                                                 constants[node.inputs[1]]))
    elif node.op == "Flatten":
        x = constants[node.inputs[0]]
        axis = node.attrs.get("axis", 1) % max(x.ndim, 1)
        value = x.reshape(int(np.prod(x.shape[:axis])), -1)
    elif node.op == "Identity":
        value = constants[node.inputs[0]]
    else:
        value = _BINARY[node.op](constants[node.inputs[0]], constants[node.inputs[1]])
    constants[node.outputs[0]] = np.asarray(value)
    return True


def _constant_value(node: Node, path: Path) -> np.ndarray:
    from onnx import numpy_helper

    a = node.attrs
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise ValueError(f"{path}: Constant node {node.outputs[0]!r} has no supported value attribute ({sorted(a)})")


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None, axis: int = 1,
               block_size: int = 0, **_: object) -> np.ndarray:
    """
    ONNX DequantizeLinear: `(x - zero_point) * scale` in float32, per tensor, per axis or per block.

    Blocked (opset 21): `scale` has x's rank with dimension `axis` of ceil(n / block_size); element i
    along `axis` uses scale index i // block_size.
    """
    scale = np.asarray(scale, np.float32)
    zp = np.zeros_like(scale, dtype=np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    axis = axis % max(x.ndim, 1)
    if scale.size == 1:
        scale, zp = scale.reshape(()), zp.reshape(())
    elif block_size:
        n = x.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(range(n), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(range(n), axis=axis)
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def reshape_target(shape: tuple[int, ...], target: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input dimension, one -1 is inferred."""
    dims = [int(shape[i]) if int(d) == 0 else int(d) for i, d in enumerate(np.asarray(target).ravel())]
    if dims.count(-1) == 1:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = int(np.prod(shape)) // max(known, 1)
    return tuple(dims)


def _drop_pass_through(graph: Graph) -> None:
    """Remove Identity / Dropout nodes (inference mode), reading their input wherever their output was read."""
    for node in [n for n in graph.nodes if n.op in PASS_THROUGH]:
        _bypass(graph, node, node.inputs[0])


def _bypass(graph: Graph, node: Node, replacement: str) -> None:
    """Delete `node` and make every reader of its first output read `replacement` instead."""
    graph.nodes.remove(node)
    old = node.outputs[0]
    for other in graph.nodes:
        other.inputs = [replacement if i == old else i for i in other.inputs]
    if graph.output == old:
        graph.output = replacement


def fold_batchnorm(graph: Graph) -> None:
    """Fold each BatchNormalization that is the only reader of a Conv or standard Gemm output into that layer."""
    c = graph.constants
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        src = graph.producer(bn.inputs[0])
        if src is None or graph.nodes[src].op not in ("Conv", "Gemm") or len(graph.consumers(bn.inputs[0])) != 1:
            continue
        layer = graph.nodes[src]
        if layer.inputs[1] not in c or (len(layer.inputs) > 2 and layer.inputs[2] and layer.inputs[2] not in c):
            continue
        if layer.op == "Gemm" and layer.attrs != {"transB": 1}:
            continue  # a Gemm with a non-constant weight (standardise_linear rewrote the others)
        gamma, beta, mean, var = (c[i].astype(np.float64) for i in bn.inputs[1:5])
        s = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        weight = c[layer.inputs[1]].astype(np.float64)
        bias = c[layer.inputs[2]].astype(np.float64) if len(layer.inputs) > 2 and layer.inputs[2] else 0.0
        new = layer.outputs[0] + "/bn_folded"
        c[new + "/weight"] = (weight * s.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        c[new + "/bias"] = ((bias - mean) * s + beta).astype(np.float32)
        layer.inputs = [layer.inputs[0], new + "/weight", new + "/bias"]
        _bypass(graph, bn, layer.outputs[0])


def _gemm_to_standard(node: Node, c: dict[str, np.ndarray]) -> None:
    """Rewrite a Gemm with constant B (and C) as `x @ W.T + b` (W: out x in), alpha and beta applied."""
    a = node.attrs
    if a.get("transA", 0):
        raise ValueError(f"Gemm {node.outputs[0]!r}: transA=1 is not supported")
    w = c[node.inputs[1]].astype(np.float64)
    w = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
    name = node.outputs[0] + "/gemm"
    c[name + "/weight"] = w.astype(np.float32)
    inputs = [node.inputs[0], name + "/weight"]
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = np.broadcast_to(c[node.inputs[2]].astype(np.float64).reshape(-1) * a.get("beta", 1.0), (w.shape[0],))
        c[name + "/bias"] = bias.astype(np.float32)
        inputs.append(name + "/bias")
    node.inputs, node.attrs = inputs, {"transB": 1}


def standardise_linear(graph: Graph) -> None:
    """
    Every Gemm / MatMul with a constant 2-D weight becomes a standard Gemm (`x @ W.T + b`).

    An Add of a constant vector right after it becomes its bias.
    """
    c = graph.constants
    for node in list(graph.nodes):
        if node.op == "MatMul" and node.inputs[1] in c and c[node.inputs[1]].ndim == 2:
            node.op, node.attrs = "Gemm", {"transB": 0}
        if node.op == "Gemm" and node.inputs[1] in c and node.attrs != {"transB": 1}:
            _gemm_to_standard(node, c)
        if node.op == "Gemm" and node.attrs == {"transB": 1} and len(graph.consumers(node.outputs[0])) == 1:
            _fold_bias_add(graph, node)


def _fold_bias_add(graph: Graph, gemm: Node) -> None:
    """Fold `Add(gemm_out, constant)` (either operand order) into the Gemm's bias when it broadcasts per output."""
    add = graph.nodes[graph.consumers(gemm.outputs[0])[0]]
    other = [i for i in add.inputs if i != gemm.outputs[0]]
    if add.op != "Add" or len(other) != 1 or other[0] not in graph.constants:
        return
    value, out = graph.constants[other[0]], graph.constants[gemm.inputs[1]].shape[0]
    if value.size != out or value.shape[-1] != out:
        return
    bias = graph.constants[gemm.inputs[2]] if len(gemm.inputs) > 2 and gemm.inputs[2] else 0.0
    name = gemm.outputs[0] + "/bias_add"
    graph.constants[name] = (bias + value.reshape(-1)).astype(np.float32)
    gemm.inputs = [*gemm.inputs[:2], name]
    _bypass(graph, add, gemm.outputs[0])


def move_final_bias_into_batchnorm(graph: Graph, tolerance: float = 1e-6) -> bool:
    """
    Make the last Gemm bias-free by shifting the BatchNormalization before it (through Flatten / Reshape).

    Exact up to float rounding: solves, per input channel, shifts d with W_c d = b (least squares, residual
    checked). The engine's closed-form refit (unlearn/refit.py) needs a bias-free final linear layer.
    Returns False (graph unchanged) when the pattern or an exact solution is absent.
    """
    c = graph.constants
    gemms = [n for n in graph.nodes if n.op == "Gemm" and len(n.inputs) > 2 and n.inputs[2] in c]
    if not gemms:
        return False
    gemm, tensor = gemms[-1], gemms[-1].inputs[0]
    while (src := graph.producer(tensor)) is not None and graph.nodes[src].op in ("Flatten", "Reshape"):
        if len(graph.consumers(tensor)) != 1:
            return False
        tensor = graph.nodes[src].inputs[0]
    if src is None or graph.nodes[src].op != "BatchNormalization" or len(graph.consumers(tensor)) != 1:
        return False
    bn = graph.nodes[src]
    weight, bias = c[gemm.inputs[1]].astype(np.float64), c[gemm.inputs[2]].astype(np.float64)
    channels = c[bn.inputs[2]].size
    if weight.shape[1] % channels:
        return False
    per_channel = weight.reshape(weight.shape[0], channels, -1).sum(-1)
    shift, *_ = np.linalg.lstsq(per_channel, bias, rcond=None)
    if np.abs(per_channel @ shift - bias).max() > tolerance * max(np.abs(bias).max(), 1.0):
        return False
    c[bn.outputs[0] + "/beta"] = (c[bn.inputs[2]].astype(np.float64) + shift).astype(np.float32)
    bn.inputs = [bn.inputs[0], bn.inputs[1], bn.outputs[0] + "/beta", *bn.inputs[3:]]
    gemm.inputs = gemm.inputs[:2]
    return True
