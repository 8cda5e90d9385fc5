"""The blind blur: photographic kernels drawn from a seed, for training blind deblurring."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade import get_operator
from i2sb_cli.degrade.baselines import baseline_name, classical_baseline
from i2sb_cli.degrade.blind import (
    SHARP_FRACTION,
    convolve,
    defocus_kernel,
    gaussian_kernel,
    random_kernel,
)
from i2sb_cli.training.data import Degrader


def _moments(kernel: torch.Tensor) -> tuple[float, float, float]:
    """Variance along x, along y, and the covariance of a normalised kernel."""
    half = kernel.shape[-1] // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    k = kernel.double()
    return float((k * x * x).sum()), float((k * y * y).sum()), float((k * x * y).sum())


def test_gaussian_kernel_has_the_asked_spread_and_orientation() -> None:
    round_one = gaussian_kernel(2.0, 2.0, 0.3)
    assert round_one.sum().item() == pytest.approx(1.0, abs=1e-6)
    var_x, var_y, cov = _moments(round_one)
    # Truncated at 3 sigma, the variance is a little under sigma^2.
    assert var_x == pytest.approx(4.0, rel=0.05) and var_y == pytest.approx(4.0, rel=0.05)
    assert abs(cov) < 1e-6
    along_x = gaussian_kernel(2.0, 1.0, 0.0)
    var_x, var_y, _ = _moments(along_x)
    assert var_x == pytest.approx(4.0, rel=0.05) and var_y == pytest.approx(1.0, rel=0.05)
    diagonal = gaussian_kernel(2.0, 1.0, math.pi / 4)
    assert _moments(diagonal)[2] == pytest.approx((4.0 - 1.0) / 2, rel=0.05)


def test_defocus_kernel_is_a_disc_of_the_asked_radius() -> None:
    disc = defocus_kernel(3.0)
    assert disc.shape == (7, 7) and disc.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(disc, disc.flip(0)) and torch.equal(disc, disc.T)
    # Interior pixels share the peak weight; the corners lie outside the disc.
    assert disc[3, 3] == disc.max() and disc[0, 0] == 0
    # The covered area, from the weights: 1 / peak is pi r^2 up to the supersampled edge.
    assert (1 / disc.max()).item() == pytest.approx(math.pi * 9, rel=0.03)


def test_kernels_are_drawn_from_the_seed_in_the_stated_proportions() -> None:
    kinds = [random_kernel(seed)[1]["blur"] for seed in range(400)]
    assert random_kernel(7)[0].equal(random_kernel(7)[0])
    none = kinds.count("none") / len(kinds)
    assert abs(none - SHARP_FRACTION) < 0.06
    assert kinds.count("gaussian") > 100 and kinds.count("defocus") > 100


def test_convolution_keeps_flat_pictures_and_the_identity_kernel() -> None:
    flat = torch.full((1, 3, 10, 12), 0.25)
    for seed in range(20):
        kernel, _ = random_kernel(seed)
        assert torch.allclose(convolve(flat, kernel), flat, atol=1e-6)
    x = torch.rand(2, 3, 9, 11) * 2 - 1
    assert torch.equal(convolve(x, torch.ones(1, 1)), x)
    # A kernel wider than a 3-pixel strip is cropped to what the mirror can reflect.
    strip = torch.rand(1, 3, 3, 40)
    assert convolve(strip, defocus_kernel(4.0)).shape == strip.shape


def test_blur_blind_is_a_seeded_deblur_task_whose_baseline_is_the_input() -> None:
    operator = get_operator("blur-blind")
    assert operator.family == "deblur" and operator.seeded and not operator.paper
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    first, again = operator(x, seed=5), operator(x, seed=5)
    assert torch.equal(first.picture, again.picture) and first.details == again.details
    assert baseline_name("blur-blind") == "input"
    assert torch.equal(classical_baseline("blur-blind", first.picture, (32, 32)), first.picture)


def test_training_draws_a_blur_per_picture() -> None:
    picture = torch.rand(1, 3, 32, 32) * 2 - 1
    batch = picture.expand(6, -1, -1, -1).clone()
    x1, mask, _ = Degrader(["blur-blind"])(batch, torch.Generator().manual_seed(0))
    assert mask is None and x1.shape == batch.shape
    distinct = {tuple(p.flatten()[:64].tolist()) for p in x1}
    assert len(distinct) > 1


def test_degrade_cli_records_each_pictures_kernel(tmp_path: Path) -> None:
    for seed, name in enumerate("ab"):
        write_picture(tmp_path / "in" / f"{name}.png", 24, seed=seed)
    args = ["degrade", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--task", "blur-blind"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["blur"] in ("none", "gaussian", "defocus") for r in records)
