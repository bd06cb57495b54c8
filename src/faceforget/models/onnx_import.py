"""
ONNX face-recognition graph -> trainable FaceModel: blocks cut where one tensor crosses, preprocessing declared.

Steps (docs/models_and_data.md, "ONNX import"): read the graph and fold its constants (onnx_graph); fold
BatchNorm into the Conv / Gemm before it; take the input normalisation (Sub / Add / Mul / Div by constants
right after the image input) into `Preprocess`; cut the remaining nodes into blocks after each Relu, PRelu
or Add where exactly one live tensor crosses; the last block starts after the last such point before
the final Gemm, so it ends with the embedding layer `fc`.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import torch
from torch import nn

from faceforget.models.onnx_graph import (
    Graph,
    Node,
    fold_batchnorm,
    move_final_bias_into_batchnorm,
    read_graph,
    standardise_linear,
)
from faceforget.models.onnx_ops import build_module, dynamic_inputs
from faceforget.models.spec import FaceModel, Preprocess

BOUNDARY_OPS = frozenset({"Relu", "PRelu", "Add"})
OPTIONS = ("mean", "scale", "channel_order", "input_size")
_AFFINE_OPS = frozenset({"Sub", "Add", "Mul", "Div"})


class GraphBlock(nn.Module):
    """A run of ONNX nodes from one input tensor to one output tensor; `fc` is its final nn.Linear, if any."""

    def __init__(self, source: str, target: str, steps: list[tuple[str, nn.Module, list[str], str]]) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.ops = nn.ModuleDict(OrderedDict((key, module) for key, module, _, _ in steps))
        self.wiring = [(key, inputs, output) for key, _, inputs, output in steps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the nodes in order on a tensor environment seeded with `x`."""
        env = {self.source: x}
        for key, inputs, output in self.wiring:
            env[output] = self.ops[key](*(env[name] for name in inputs))
        return env[self.target]

    @property
    def fc(self) -> nn.Linear:
        """The block's last module when it is a linear layer (the embedding projection)."""
        last = self.ops[self.wiring[-1][0]]
        if not isinstance(last, nn.Linear):
            raise AttributeError("this block does not end with a linear layer")
        return last


def parse_options(options: dict[str, str] | None, source: str) -> dict[str, object]:
    """Typed preprocessing options (mean, scale, channel_order, input_size) from strings; errors name the key."""
    parsed: dict[str, object] = {}
    for key, value in (options or {}).items():
        if key not in OPTIONS:
            raise ValueError(f"{source}: unknown model option {key!r}; valid: {', '.join(OPTIONS)}")
        try:
            if key == "mean":
                mean = [float(v) for v in str(value).split(",")]
                parsed[key] = tuple(mean * 3 if len(mean) == 1 else mean)
                if len(parsed[key]) != 3:
                    raise ValueError("give one value or three (per channel)")
            elif key == "scale":
                parsed[key] = float(value)
            elif key == "input_size":
                hw = [int(v) for v in str(value).lower().split("x")]
                parsed[key] = (hw[0], hw[-1])
            else:
                parsed[key] = str(value).upper()
        except ValueError as exc:
            raise ValueError(f"{source}: bad model option {key}={value!r}: {exc}") from None
    return parsed


def take_input_normalisation(graph: Graph) -> tuple[tuple[float, float, float], float] | None:
    """
    Remove the leading per-channel affine ops on the image input and return them as (mean, scale).

    Absorbs Sub / Add / Mul / Div by a scalar or per-channel constant while the map stays `(x - mean) * s`
    with one scale for all channels; returns None when the graph does not normalise its input.
    """
    c, gain, offset, tensor, absorbed = graph.constants, np.ones(3), np.zeros(3), graph.input, []
    while len(readers := graph.consumers(tensor)) == 1:
        node = graph.nodes[readers[0]]
        k = _channel_constant(c.get(node.inputs[1])) if node.op in _AFFINE_OPS and node.inputs[0] == tensor else None
        if k is None:
            break
        g, o = {"Sub": (gain, offset - k), "Add": (gain, offset + k), "Mul": (gain * k, offset * k),
                "Div": (gain / k, offset / k)}[node.op]
        if not np.allclose(g, g[0], rtol=1e-6) or g[0] == 0:
            break
        gain, offset, tensor = g, o, node.outputs[0]
        absorbed.append(node)
    if not absorbed:
        return None
    for node in absorbed:
        graph.nodes.remove(node)
    graph.input = tensor
    scale = float(gain[0])
    return tuple(float(v) for v in -offset / scale), scale


def _channel_constant(value: np.ndarray | None) -> np.ndarray | None:
    """A scalar or (1,3,1,1)/(3,1,1) constant as a length-3 vector; None for anything else."""
    if value is None:
        return None
    if value.size == 1:
        return np.full(3, float(value.reshape(())), np.float64)
    if value.size == 3 and value.shape[-2:] == (1, 1) and value.ndim in (3, 4):
        return value.reshape(3).astype(np.float64)
    return None


def cut_points(graph: Graph) -> list[int]:
    """Indices i after which exactly one tensor, node i's output, is still needed."""
    c, last_use = graph.constants, {graph.output: len(graph.nodes)}
    for i, node in enumerate(graph.nodes):
        for name in dynamic_inputs(node, c):
            last_use[name] = i
    live, cuts = {graph.input}, []
    for i, node in enumerate(graph.nodes):
        live -= {n for n in dynamic_inputs(node, c) if last_use[n] == i}
        live |= {n for n in node.outputs[:1] if last_use.get(n, -1) > i}
        extra = [n for n in node.outputs[1:] if n in last_use]
        if extra:
            raise ValueError(f"{graph.source}: node {node.op} {node.outputs[0]!r} has extra outputs in use ({extra})")
        if live == {node.outputs[0]}:
            cuts.append(i)
    return cuts


def block_ranges(graph: Graph) -> list[tuple[int, int]]:
    """
    (first, last) node indices of each block.

    Blocks end at cut points after activations and Adds; the last block begins after the last such
    point before the final Gemm.
    """
    cuts, n = cut_points(graph), len(graph.nodes)
    gemms = [i for i, node in enumerate(graph.nodes) if node.op == "Gemm"]
    ends = [i for i in cuts if graph.nodes[i].op in BOUNDARY_OPS and i < n - 1]
    if gemms:  # the head starts after the last activation before the final Gemm (else its last cut point)
        before = [i for i in ends if i < gemms[-1]] or [i for i in cuts if i < gemms[-1]]
        ends = [i for i in ends if not before or i < before[-1]] + before[-1:]
    starts = [0] + [e + 1 for e in ends]
    return list(zip(starts, [*ends, n - 1], strict=True))


def build_blocks(graph: Graph) -> nn.Sequential:
    """The graph's nodes as GraphBlocks named after their output tensors (the one with the final Gemm: `head`)."""
    c = graph.constants
    batch = graph.input_shape[0] if graph.input_shape and isinstance(graph.input_shape[0], int) else None
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    ranges = block_ranges(graph)
    source = graph.input
    for k, (first, last) in enumerate(ranges):
        nodes = graph.nodes[first:last + 1]
        steps = [(_key(node, j), build_module(node, c, batch), dynamic_inputs(node, c), node.outputs[0])
                 for j, node in enumerate(nodes)]
        target = graph.output if k == len(ranges) - 1 else nodes[-1].outputs[0]
        is_head = k == len(ranges) - 1 and any(node.op == "Gemm" for node in nodes)
        name = "head" if is_head else _unique(_sanitise(nodes[-1].outputs[0]), blocks)
        blocks[name] = GraphBlock(source, target, steps)
        source = target
    return nn.Sequential(blocks)


def _key(node: Node, j: int) -> str:
    return f"n{j:03d}_{_sanitise(node.outputs[0])}"[:60]


def _sanitise(name: str) -> str:
    return re.sub(r"\W", "_", name) or "t"


def _unique(name: str, taken: dict) -> str:
    k, out = 1, name
    while out in taken or out == "head":
        k, out = k + 1, f"{name}_{k}"
    return out


def graph_preprocess(graph: Graph, normalisation: tuple | None, options: dict[str, object],
                     embedding_dim: int) -> Preprocess:
    """The model's Preprocess from the graph where it says, from `options` otherwise; a conflict is an error."""
    src = graph.source
    dims = graph.input_shape
    if len(dims) != 4 or (isinstance(dims[1], int) and dims[1] != 3):
        raise ValueError(f"{src}: expected an (N, 3, H, W) image input, got shape {dims}")
    size = tuple(dims[2:]) if all(isinstance(d, int) and d > 0 for d in dims[2:]) else None
    given = options.get("input_size")
    if size is None and given is None:
        raise ValueError(f"{src}: the input size is not fixed in the graph ({dims}); give input_size=HxW")
    if size is not None and given is not None and tuple(given) != size:
        raise ValueError(f"{src}: input_size={given} conflicts with the graph's input {dims}")
    if normalisation is None:
        missing = [k for k in ("mean", "scale") if k not in options]
        if missing:
            raise ValueError(f"{src}: the graph does not normalise its input; give {' and '.join(missing)} "
                             f"(e.g. onnx:{src}?mean=127.5&scale=0.0078125)")
        mean, scale = options["mean"], options["scale"]
    else:
        mean, scale = normalisation
        for key, value in (("mean", mean), ("scale", scale)):
            if key in options and not np.allclose(options[key], value, rtol=1e-6):
                raise ValueError(f"{src}: option {key}={options[key]} conflicts with the graph's {key} {value}")
    return Preprocess(input_size=size or tuple(given), mean=tuple(mean), scale=float(scale),
                      channel_order=str(options.get("channel_order", "RGB")), embedding_dim=embedding_dim)


def load_onnx_model(path: str | Path, options: dict[str, str] | None = None, name: str | None = None) -> FaceModel:
    """
    Import an ONNX face-recognition model as a trainable FaceModel (float32, eval mode).

    `options` (strings, as in `onnx:model.onnx?mean=127.5&scale=0.0078125`) supply what the graph does not
    say: mean, scale, input_size=HxW; channel_order (RGB or BGR, default RGB) is never in a graph.
    """
    path = Path(path).absolute()
    opts = parse_options(options, str(path))
    graph = read_graph(path)
    standardise_linear(graph)
    fold_batchnorm(graph)
    move_final_bias_into_batchnorm(graph)
    normalisation = take_input_normalisation(graph)
    blocks = build_blocks(graph).eval()
    probe = graph_preprocess(graph, normalisation, opts, embedding_dim=1)
    with torch.no_grad():
        out = blocks(torch.zeros(1, 3, *probe.input_size))
    if out.dim() != 2:
        raise ValueError(f"{path}: the output {graph.output!r} has shape {tuple(out.shape)}, expected (N, D)")
    preprocess = graph_preprocess(graph, normalisation, opts, embedding_dim=int(out.shape[1]))
    spec = f"onnx:{path}" + (f"?{urlencode(sorted((options or {}).items()))}" if options else "")
    return FaceModel(blocks, preprocess, name=name or spec).eval()
