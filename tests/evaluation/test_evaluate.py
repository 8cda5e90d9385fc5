"""Metrics, classical baselines and `i2sb evaluate`."""

import json
import math
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade import plain_blur, svd_blur, svd_deblur, wiener_deblur
from i2sb_cli.degrade.baselines import bicubic_upsample, classical_baseline, telea_inpaint
from i2sb_cli.evaluation.metrics import PSNR_CAP, psnr, ssim
from i2sb_cli.training.data import quantize8


def _smooth(size: int = 48, seed: int = 0) -> torch.Tensor:
    """A photo-like picture: random colours at 1/8 size, bicubic-upsampled, in [-1, 1]."""
    small = torch.rand(1, 3, size // 8, size // 8, generator=torch.Generator().manual_seed(seed))
    big = torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic")
    return (big * 2 - 1).clamp(-1, 1)


def test_psnr_of_a_known_error():
    a = torch.zeros(1, 3, 8, 8)
    assert psnr(a, a + 0.02) == pytest.approx(10 * math.log10(4 / 0.02**2))
    assert psnr(a, a) == PSNR_CAP


def test_ssim_of_constant_pictures_is_the_luminance_term():
    a, b = torch.full((1, 3, 16, 16), -0.5), torch.full((1, 3, 16, 16), 0.5)
    mu_a, mu_b, c1 = 0.25, 0.75, 0.01**2
    expected = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    assert ssim(a, b) == pytest.approx(expected)
    x = _smooth()
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, noisy) == pytest.approx(ssim(noisy, x))
    assert 0 < ssim(x, noisy) < ssim(x, x + 0.3 * (noisy - x)) < 1
    assert 0 < ssim(x[..., :5, :7], noisy[..., :5, :7]) < 1  # smaller than the window


@pytest.mark.parametrize("kernel", ["uni", "gauss"])
def test_tikhonov_inverts_the_paper_blur_from_8_bit_pixels(kernel):
    x = _smooth(64)
    blurred = quantize8(svd_blur(x, kernel))
    restored = svd_deblur(blurred, kernel)
    assert restored.shape == x.shape and restored.dtype == x.dtype
    assert psnr(restored.clamp(-1, 1), x) > psnr(blurred, x) + 8


@pytest.mark.parametrize("kernel", ["uni", "gauss"])
def test_wiener_inverts_the_plain_blur(kernel):
    # A low cosine of the mirrored extension is an eigenvector of the mirrored-border blur.
    rows = torch.cos(torch.pi * 2 * (torch.arange(40) + 0.5) / 40)
    x = (0.8 * rows[:, None] * rows[None, :]).expand(1, 3, 40, 40).double()
    torch.testing.assert_close(wiener_deblur(plain_blur(x, kernel), kernel, 1e-12), x)
    picture = _smooth(64)
    blurred = quantize8(plain_blur(picture, kernel))
    assert psnr(wiener_deblur(blurred, kernel).clamp(-1, 1), picture) > psnr(blurred, picture) + 2


def test_bicubic_and_telea_baselines():
    x = _smooth(40)
    small = x[..., ::4, ::4]
    assert bicubic_upsample(small, (38, 37)).shape == (1, 3, 38, 37)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 10:20, 12:30] = 1
    holed = x * (1 - mask) + mask
    filled = telea_inpaint(holed, mask)
    torch.testing.assert_close(filled * (1 - mask), quantize8(x) * (1 - mask), atol=1e-6, rtol=0)
    assert psnr(filled, x) > psnr(holed, x) + 5
    jpeg = classical_baseline("jpeg-real-10", x * 1.5, (40, 40))
    assert float(jpeg.abs().max()) <= 1


def _photos(folder, count=2):
    folder.mkdir()
    for i in range(count):
        levels = ((_smooth(48, seed=i)[0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(levels)[:45, :42]).save(folder / f"p{i}.png")


def _evaluate(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


@pytest.mark.parametrize("task", ["sr4x-bicubic", "blur-gauss", "inpaint-center"])
def test_evaluate_scores_restorations_beside_baseline_and_input(tmp_path, task):
    _photos(tmp_path / "clean")
    pairs = tmp_path / "pairs"
    made = CliRunner().invoke(
        app, ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", task]
    )
    assert made.exit_code == 0, made.output
    # The clean pictures themselves stand in for perfect restorations.
    result = _evaluate(pairs, tmp_path / "clean", "--json", "--no-perceptual")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["kind"] for x in lines] == ["image", "image", "mean"]
    mean = lines[-1]
    assert mean["count"] == 2 and mean["psnr"]["restored"] == PSNR_CAP
    assert mean["ssim"]["restored"] == pytest.approx(1.0)
    assert mean["psnr"]["degraded"] < mean["psnr"]["baseline"] < PSNR_CAP
    assert lines[0]["baseline"] == {"sr4x-bicubic": "bicubic", "blur-gauss": "tikhonov"}.get(
        task, "telea"
    )
    assert "PSNR" in result.stderr and "mean" in result.stderr
    # Perfect restorations: the mean holds capped values, and the table says so.
    assert mean["identical"] == {"restored": 2}
    assert "2 of 2 restored pictures are identical to their originals" in result.stderr
    assert "degraded pictures are identical" not in result.stderr


def test_evaluate_uses_the_perceptual_metric_when_installed(tmp_path, monkeypatch):
    _photos(tmp_path / "clean", count=1)
    pairs = tmp_path / "pairs"
    CliRunner().invoke(
        app, ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", "jpeg-real-10"]
    )
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", None)  # absent, even where installed
    missing = _evaluate(pairs, pairs / "degraded", "--json")
    assert missing.exit_code == 0 and "no perceptual column" in missing.stderr

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, variant, verbose=True):
            super().__init__()
            print("Setting up a fake perceptual loss")  # goes to stderr, not into --json

        def forward(self, a, b):
            return (a - b).abs().mean().reshape(1, 1, 1, 1)

    package = types.ModuleType("stlpips_pytorch")
    package.stlpips = types.SimpleNamespace(LPIPS=FakeLPIPS)
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", package)
    found = _evaluate(pairs, pairs / "degraded", "--json")
    assert found.exit_code == 0, found.output
    mean = json.loads(found.stdout.splitlines()[-1])
    assert mean["stlpips"]["restored"] == mean["stlpips"]["degraded"] > 0
    assert "ST-LPIPS" in found.stderr


def test_evaluate_reports_missing_restorations(tmp_path):
    _photos(tmp_path / "clean")
    pairs = tmp_path / "pairs"
    CliRunner().invoke(
        app, ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", "jpeg-10"]
    )
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(pairs / "degraded" / "p0.png", restored / "p0_restored.png")
    result = _evaluate(pairs, restored, "--no-perceptual")
    assert result.exit_code == 1
    assert "p1.png" in result.stderr and "1 scored, 1 failed" in result.stderr
    assert _evaluate(tmp_path / "clean", restored).exit_code == 2  # no manifest
