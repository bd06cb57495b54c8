"""
Reader of dlib's `.dat` serialisation of a DNN (`dlib::serialize(net)`) into a plain list of layers.

File layout, as dlib writes a network (verified on `dlib_face_recognition_resnet_model_v1.dat`):
the loss layer first (`int version=1`, its name and settings), then the layers' *versions* nested from
output to input (2: an `add_layer`, 1: a tag or skip layer, 3: the `add_layer` that sits on the input
layer), then the input layer, then each `add_layer`'s details from input to output, each followed by
three bools ('1'/'0' bytes) and its (normally empty) scratch tensors. Tag and skip layers store only
their version, so the two cannot be told apart and their ids are not in the file.

Integers are one control byte (low nibble: byte count, 0x80: negative) then little-endian bytes;
floats are an integer mantissa and exponent (value = mantissa * 2**exponent); strings are a length
then bytes; tensors are `version=2, n, k, nr, nc` then n*k*nr*nc little-endian float32.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Scalar = int | float
Arrays = dict[str, np.ndarray]
Params = dict[str, Scalar]
Details = tuple[Arrays, Params]
TAG_OR_SKIP = "tag_or_skip"
_MULTIPLIERS = (
    "learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult", "bias_weight_decay_mult"
)
_FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


@dataclass(frozen=True)
class DatLayer:
    """One parsed layer: dlib's serialisation name, its float32 arrays and its hyper-parameters."""

    name: str
    arrays: Arrays = field(default_factory=dict)
    params: Params = field(default_factory=dict)


class DatStream:
    """Cursor over the bytes of a `.dat` file; every error names the source and the byte offset."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.data = data
        self.source = source
        self.pos = 0

    def error(self, message: str, offset: int | None = None) -> ValueError:
        """Build a ValueError that names the file and the byte offset."""
        at = self.pos if offset is None else offset
        return ValueError(f"{self.source}: {message} at byte offset {at}")

    def take(self, n: int) -> bytes:
        """Return the next `n` bytes; a clear error if the file ends first."""
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"truncated file: needs {n} more bytes but {len(self.data) - self.pos} are left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        """Read an integer: control byte (low nibble = byte count, 0x80 = negative) + little-endian bytes."""
        start = self.pos
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.error(f"invalid integer control byte 0x{control:02x}", start)
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        """Read a float/double: integer mantissa and exponent, value = mantissa * 2**exponent."""
        mantissa, exponent = self.read_int(), self.read_int()
        if exponent in _FLOAT_SPECIALS:
            return _FLOAT_SPECIALS[exponent]
        return math.ldexp(mantissa, exponent)

    def read_str(self, max_len: int = 256) -> str:
        """Read a std::string: length then bytes (names only, so long or non-ASCII strings are errors)."""
        start = self.pos
        n = self.read_int()
        if n > max_len:
            raise self.error(f"expected a layer name but found a string length of {n}", start)
        raw = self.take(n)
        if not raw.isascii():
            raise self.error(f"expected a layer name but found bytes {raw[:16]!r}", start)
        return raw.decode("ascii")

    def read_bool(self) -> bool:
        """Read a bool: the byte '1' or '0'."""
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.error(f"expected a bool byte '0' or '1', found {byte!r}", self.pos - 1)
        return byte == b"1"

    def read_tensor(self) -> np.ndarray:
        """Read a tensor: version 2, n, k, nr, nc, then float32 data; returned with shape (n, k, nr, nc)."""
        self.expect_version(2, "tensor")
        shape = tuple(self.read_int() for _ in range(4))
        if min(shape) < 0:
            raise self.error(f"negative tensor shape {shape}")
        count = math.prod(shape)
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias(self) -> tuple[int, int, int, int]:
        """Read an alias_tensor: version 1, n, k, nr, nc (a view's shape, no data)."""
        self.expect_version(1, "alias_tensor")
        return tuple(self.read_int() for _ in range(4))

    def expect_version(self, expected: int, what: str) -> None:
        """Read an integer version and fail clearly unless it is `expected`."""
        start = self.pos
        version = self.read_int()
        if version != expected:
            raise self.error(f"unexpected {what} version {version} (expected {expected})", start)


def _split_params(s: DatStream, params: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into consecutive views of the given shapes."""
    flat = params.reshape(-1)
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != flat.size:
        raise s.error(f"parameter tensor has {flat.size} values but its views need {sum(sizes)}")
    offsets = np.cumsum([0] + sizes)
    return [flat[a:b].reshape(shape) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes, strict=True)]


def _read_pool(s: DatStream) -> Details:
    keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return {}, {k: s.read_int() for k in keys}


def _read_con(s: DatStream) -> Details:
    params = s.read_tensor()
    keys = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    hyper: Params = {k: s.read_int() for k in keys}
    filters, biases = s.read_alias(), s.read_alias()
    for key in _MULTIPLIERS:
        hyper[key] = s.read_float()
    weight, bias = _split_params(s, params, [filters, biases])
    return {"weight": weight, "bias": bias.reshape(-1)}, hyper


def _read_affine(s: DatStream) -> Details:
    params = s.read_tensor()
    gamma_shape, beta_shape = s.read_alias(), s.read_alias()
    mode = s.read_int()
    gamma, beta = _split_params(s, params, [gamma_shape, beta_shape])
    return {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}, {"mode": mode}


def _read_fc(s: DatStream) -> Details:
    num_outputs, num_inputs = s.read_int(), s.read_int()
    params = s.read_tensor()
    weights, biases = s.read_alias(), s.read_alias()
    bias_mode = s.read_int()  # dlib's fc_bias_mode: 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    hyper: Params = {"num_outputs": num_outputs, "num_inputs": num_inputs, "bias_mode": bias_mode}
    for key in _MULTIPLIERS:
        hyper[key] = s.read_float()
    shapes = [weights, biases] if bias_mode == 0 else [weights]
    parts = _split_params(s, params, shapes)
    arrays = {"weight": parts[0].reshape(num_inputs, num_outputs)}  # x @ weight, i.e. [nin, nout]
    if bias_mode == 0:
        arrays["bias"] = parts[1].reshape(-1)
    return arrays, hyper


def _read_input_rgb(s: DatStream) -> Details:
    keys = ("avg_red", "avg_green", "avg_blue")
    hyper: Params = {k: s.read_float() for k in keys}
    hyper.update(nr=s.read_int(), nc=s.read_int())
    return {}, hyper


def _read_loss_metric(s: DatStream) -> Details:
    return {}, {"margin": s.read_float(), "dist_thresh": s.read_float()}


def _no_details(s: DatStream) -> Details:
    return {}, {}


_DETAIL_READERS: dict[str, Callable[[DatStream], Details]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": _no_details,
    "add_prev_": _no_details,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}
_INPUT_READERS = {"input_rgb_image_sized": _read_input_rgb}
_LOSS_READERS = {"loss_metric_2": _read_loss_metric}


def _read_named(s: DatStream, readers: dict[str, Callable[[DatStream], Details]], what: str) -> DatLayer:
    """Read a name string, then that layer's settings with the matching reader."""
    start = s.pos
    name = s.read_str()
    if name not in readers:
        raise s.error(f"unsupported {what} {name!r} (supported: {sorted(readers)})", start)
    arrays, params = readers[name](s)
    return DatLayer(name, arrays, params)


def _skip_scratch(s: DatStream, version: int) -> None:
    """Skip what follows an add_layer's details: 3 bools, scratch tensors, (v3) sample expansion factor."""
    for _ in range(3):
        s.read_bool()
    for _ in range(3):
        s.read_tensor()
    if version == 3:
        s.read_int()


def parse_dat(data: bytes, source: str = "<bytes>") -> list[DatLayer]:
    """Parse a serialised dlib network into layers ordered input -> output (input layer first, loss last)."""
    s = DatStream(data, source)
    if s.take(min(2, len(data))) != b"\x01\x01":
        raise s.error("not a dlib network file (expected add_loss_layer version 1)", 0)
    loss = _read_named(s, _LOSS_READERS, "loss layer")
    versions: list[int] = []
    while not versions or versions[-1] != 3:
        start = s.pos
        version = s.read_int()
        if version not in (1, 2, 3):
            raise s.error(f"unexpected layer version {version} (expected 1, 2 or 3)", start)
        versions.append(version)
    layers = [_read_named(s, _INPUT_READERS, "input layer")]
    for version in reversed(versions):
        if version == 1:
            layers.append(DatLayer(TAG_OR_SKIP))
            continue
        layers.append(_read_named(s, _DETAIL_READERS, "layer"))
        _skip_scratch(s, version)
    if s.pos != len(data):
        raise s.error(f"{len(data) - s.pos} unexpected trailing bytes after the network")
    return layers + [loss]


def read_dat(path: str | os.PathLike) -> list[DatLayer]:
    """Read a dlib `.dat` network file into layers ordered input -> output."""
    with open(path, "rb") as f:
        return parse_dat(f.read(), os.fspath(path))
