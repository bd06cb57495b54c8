"""Torch modules for the ONNX operators an imported face model runs on activations (one builder per op)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from faceforget.models.onnx_graph import Node, reshape_target


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy


class BatchNorm(_BatchNorm):
    """BatchNorm over channel axis 1 of any (N, C, ...) tensor (ONNX BatchNormalization, inference stats)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"BatchNorm expects (N, C, ...) input, got shape {tuple(x.shape)}")


class PRelu(nn.Module):
    """ONNX PRelu: `x` where positive, `slope * x` elsewhere; the slope is trainable, broadcast as ONNX does."""

    def __init__(self, slope: np.ndarray) -> None:
        super().__init__()
        self.weight = nn.Parameter(_tensor(slope))
        self.per_channel = slope.ndim >= 2 and all(d == 1 for d in slope.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Leaky rectifier with a learned slope."""
        if self.per_channel and x.dim() == self.weight.dim() + 1:
            return F.prelu(x, self.weight.reshape(-1))
        return torch.where(x >= 0, x, x * self.weight)


class Binary(nn.Module):
    """Add / Sub / Mul / Div of two activations, or of an activation and a constant (a buffer)."""

    _FUNCS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}

    def __init__(self, op: str, constant: np.ndarray | None = None, constant_first: bool = False) -> None:
        super().__init__()
        self.op, self.constant_first = op, constant_first
        self.register_buffer("constant", None if constant is None else _tensor(constant))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Apply the operator (the constant takes its ONNX operand position)."""
        f = self._FUNCS[self.op]
        if self.constant is None:
            return f(xs[0], xs[1])
        return f(self.constant, xs[0]) if self.constant_first else f(xs[0], self.constant)


class Flatten(nn.Module):
    """ONNX Flatten: 2-D (prod(dims[:axis]), prod(dims[axis:]))."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Collapse the dimensions before and after `axis`."""
        axis = self.axis % x.dim()
        return x.reshape(int(np.prod(x.shape[:axis])) if axis else 1, -1) if axis != 1 else x.flatten(1)


class Reshape(nn.Module):
    """ONNX Reshape to a constant shape; a leading 0 or the graph's fixed batch size keeps the batch."""

    def __init__(self, shape: np.ndarray, graph_batch: int | None) -> None:
        super().__init__()
        dims = [int(d) for d in np.asarray(shape).ravel()]
        if dims and graph_batch is not None and dims[0] == graph_batch:
            dims[0] = 0
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reshape keeping the batch dimension free."""
        return x.reshape(reshape_target(tuple(x.shape), np.asarray(self.dims)))


class GlobalAveragePool(nn.Module):
    """Mean over every spatial axis, keeping them as size-1 axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) -> (N, C, 1, ...)."""
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


class MatMul(nn.Module):
    """Matrix product of two activations (products with a constant weight are imported as nn.Linear)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """`a @ b`."""
        return torch.matmul(a, b)


def build_conv(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
    """Conv2d with constant weight (and bias); explicit pads only (asymmetric pads become an F.pad)."""
    a, weight = node.attrs, c[node.inputs[1]]
    if weight.ndim != 4:
        raise ValueError(f"Conv {node.outputs[0]!r}: only 2-D convolutions are supported, weight {weight.shape}")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"Conv {node.outputs[0]!r}: auto_pad={a['auto_pad']!r} is not supported; use explicit pads")
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    bias = c[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    conv = nn.Conv2d(weight.shape[1] * a.get("group", 1), weight.shape[0], tuple(weight.shape[2:]),
                     stride=tuple(a.get("strides", [1, 1])), dilation=tuple(a.get("dilations", [1, 1])),
                     groups=a.get("group", 1), bias=bias is not None,
                     padding=(top, left) if (top, left) == (bottom, right) else 0)
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight))
        if bias is not None:
            conv.bias.copy_(_tensor(bias))
    if (top, left) == (bottom, right):
        return conv
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)


def build_linear(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
    """nn.Linear from a standard Gemm (`x @ W.T + b`, W constant); the final one is the embedding layer."""
    weight = c[node.inputs[1]]
    bias = c[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
    fc = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        fc.weight.copy_(_tensor(weight))
        if bias is not None:
            fc.bias.copy_(_tensor(bias))
    return fc


def build_batchnorm(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
    """BatchNorm with the graph's running statistics (eval mode unless the engine is told to train it)."""
    gamma, beta, mean, var = (c[i] for i in node.inputs[1:5])
    bn = BatchNorm(gamma.size, eps=float(node.attrs.get("epsilon", 1e-5)))
    with torch.no_grad():
        for target, value in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean), (bn.running_var, var)):
            target.copy_(_tensor(value).reshape(-1))
    return bn.eval()


def build_binary(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
    """Binary op with at most one constant operand."""
    first, second = (i in c for i in node.inputs[:2])
    if first and second:
        raise ValueError(f"{node.op} {node.outputs[0]!r} has two constant inputs")  # folded on reading
    if not (first or second):
        return Binary(node.op)
    return Binary(node.op, c[node.inputs[0] if first else node.inputs[1]], constant_first=first)


def build_matmul(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
    """Product of two activations (constant 2-D weights were rewritten as Gemm on reading)."""
    if any(i in c for i in node.inputs):
        raise ValueError(f"MatMul {node.outputs[0]!r}: a constant operand that is not a 2-D weight is not supported")
    return MatMul()


def _constant_weight(builder: Callable[[Node, dict[str, np.ndarray]], nn.Module]) -> Callable[..., nn.Module]:
    def build(node: Node, c: dict[str, np.ndarray]) -> nn.Module:
        if node.inputs[1] not in c:
            raise ValueError(f"{node.op} {node.outputs[0]!r}: input {node.inputs[1]!r} must be a constant "
                             "(weights or shapes computed from activations are not supported)")
        return builder(node, c)
    return build


BUILDERS: dict[str, Callable[[Node, dict[str, np.ndarray]], nn.Module]] = {
    **dict.fromkeys(Binary._FUNCS, build_binary),
    "Conv": _constant_weight(build_conv),
    "Gemm": _constant_weight(build_linear),
    "MatMul": build_matmul,
    "BatchNormalization": build_batchnorm,
    "PRelu": _constant_weight(lambda node, c: PRelu(c[node.inputs[1]])),
    "Relu": lambda node, c: nn.ReLU(),
    "Flatten": lambda node, c: Flatten(node.attrs.get("axis", 1)),
    "GlobalAveragePool": lambda node, c: GlobalAveragePool(),
}


def build_module(node: Node, c: dict[str, np.ndarray], graph_batch: int | None) -> nn.Module:
    """The torch module computing `node` (constants taken from `c`; `graph_batch` for Reshape)."""
    if node.op == "Reshape":
        return _constant_weight(lambda n, k: Reshape(k[n.inputs[1]], graph_batch))(node, c)
    if node.op not in BUILDERS:
        raise ValueError(f"no torch module for ONNX operator {node.op}")
    return BUILDERS[node.op](node, c)


def dynamic_inputs(node: Node, c: dict[str, np.ndarray]) -> list[str]:
    """The inputs of `node` that are activations (constants live inside its module)."""
    return [i for i in node.inputs if i and i not in c]
