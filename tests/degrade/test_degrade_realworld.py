"""Real-world degradations: second-order blur, resize, noise and JPEG drawn from a seed."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade import TASK_NAMES, get_operator
from i2sb_cli.degrade.baselines import baseline_name, classical_baseline
from i2sb_cli.degrade.realworld import (
    RECIPES,
    Draw,
    add_noise,
    degrade_real,
    gaussian_kernel,
    generalized_kernel,
    motion_kernel,
    plateau_kernel,
    random_blur,
    resize,
    sinc_kernel,
)
from i2sb_cli.training.data import Degrader

SEEDS = range(150)


def _picture(height: int = 48, width: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.rand(1, 3, height // 4, width // 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(smooth, size=(height, width), mode="bilinear")


def test_kernels_are_normalised_odd_and_centred() -> None:
    kernels = [
        gaussian_kernel(13, 2.0, 1.0, 0.4),
        generalized_kernel(13, 2.0, 1.0, 0.4, 0.6),
        plateau_kernel(13, 2.0, 1.0, 0.4, 1.5),
        motion_kernel(6.5, 1.0),
        sinc_kernel(13, math.pi / 3),
    ]
    for kernel in kernels:
        size = kernel.shape[-1]
        assert kernel.shape == (size, size) and size % 2 == 1
        assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert kernel[size // 2, size // 2] == kernel.max()


def test_generalized_kernel_with_beta_one_is_the_gaussian() -> None:
    gaussian = gaussian_kernel(11, 1.5, 0.8, 0.7)
    assert torch.allclose(generalized_kernel(11, 1.5, 0.8, 0.7, 1.0), gaussian, atol=1e-7)
    # beta > 1 flattens the top: more weight away from the centre than beta < 1 leaves there.
    flat, peaked = (
        generalized_kernel(11, 1.5, 1.5, 0, 3.0),
        generalized_kernel(11, 1.5, 1.5, 0, 0.5),
    )
    assert flat[5, 6] / flat[5, 5] > peaked[5, 6] / peaked[5, 5]


def test_motion_kernel_lies_along_its_angle() -> None:
    horizontal = motion_kernel(7.0, 0.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum().item() == pytest.approx(1.0, abs=1e-5)
    vertical = motion_kernel(7.0, math.pi / 2)
    assert vertical[:, centre].sum().item() == pytest.approx(1.0, abs=1e-5)
    diagonal = motion_kernel(7.0, math.pi / 4)
    assert torch.allclose(diagonal, diagonal.T, atol=1e-6)


def test_sinc_kernel_rings_and_a_full_band_cutoff_barely_filters() -> None:
    ringing = sinc_kernel(21, math.pi / 4)
    assert ringing.min() < 0  # the negative lobes that draw halos beside edges
    nearly_identity = sinc_kernel(7, math.pi)
    assert nearly_identity[3, 3] > 0.7


def test_resize_modes_give_the_asked_size() -> None:
    x = _picture(40, 36)
    for mode in ("area", "bilinear", "bicubic"):
        assert resize(x, (17, 23), mode).shape == (1, 3, 17, 23)
        assert resize(x, (80, 50), mode).shape == (1, 3, 80, 50)
    assert resize(x, (40, 36), "bicubic") is x


def test_gaussian_noise_has_the_asked_sigma_and_grey_noise_is_shared() -> None:
    flat = torch.zeros(1, 3, 128, 128)
    noisy = add_noise(flat, {"kind": "gaussian", "sigma": 10.0, "grey": False},
                      torch.Generator().manual_seed(0))  # fmt: skip
    assert (noisy * 127.5).std().item() == pytest.approx(10.0, rel=0.05)
    assert not torch.equal(noisy[:, 0], noisy[:, 1])
    grey = add_noise(flat, {"kind": "gaussian", "sigma": 10.0, "grey": True},
                     torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_poisson_noise_grows_with_brightness() -> None:
    dark, bright = torch.full((1, 3, 96, 96), -0.8), torch.full((1, 3, 96, 96), 0.8)
    params = {"kind": "poisson", "scale": 1.0, "grey": False}
    dark_std = (add_noise(dark, params, torch.Generator().manual_seed(1)) - dark).std().item()
    bright_std = (add_noise(bright, params, torch.Generator().manual_seed(1)) - bright).std().item()
    # Shot noise: variance proportional to the photon count, 0.1 against 0.9 of full scale.
    assert bright_std / dark_std == pytest.approx(3.0, rel=0.15)


def test_every_blur_kind_is_drawn() -> None:
    order = RECIPES["real-sr4x"].orders[0]
    kinds = {random_blur(order, Draw(seed))[1]["kind"] for seed in range(300)}
    assert kinds == {"iso", "aniso", "generalized", "plateau", "defocus", "motion", "sinc"}


@pytest.mark.parametrize("task", list(RECIPES))
def test_same_seed_same_picture_and_parameters(task: str) -> None:
    x = _picture()
    first, details = degrade_real(x, task, 11)
    again, details_again = degrade_real(x, task, 11)
    assert torch.equal(first, again) and details == details_again
    other, _ = degrade_real(x, task, 12)
    assert not torch.equal(first, other)
    json.dumps(details)  # every parameter fits a manifest


@pytest.mark.parametrize(("height", "width"), [(48, 40), (37, 50), (33, 33)])
def test_sizes_out(height: int, width: int) -> None:
    x = _picture(height, width)
    for seed in range(10):
        small, _ = degrade_real(x, "real-sr4x", seed)
        assert small.shape[-2:] == (-(-height // 4), -(-width // 4))
        for task in ("real-blur", "real-jpeg"):
            assert degrade_real(x, task, seed)[0].shape == x.shape


def test_stages_drawn_over_many_seeds() -> None:
    x = _picture()
    records = [degrade_real(x, "real-sr4x", seed)[1] for seed in SEEDS]
    stages = [s for r in records for s in r["stages"]]
    assert {s["stage"] for s in stages} == {"blur", "resize", "noise", "jpeg"}
    assert {s["kind"] for s in stages if s["stage"] == "noise"} == {"gaussian", "poisson"}
    assert {s["grey"] for s in stages if s["stage"] == "noise"} == {True, False}
    assert {s["mode"] for s in stages if s["stage"] == "resize"} == {"area", "bilinear", "bicubic"}
    # Two orders, and BSRGAN's shuffle on some of them.
    # (the second order draws each of its stages with a probability, so a few have none).
    orders = [{s["order"] for s in r["stages"]} for r in records]
    assert all({1, "final"} <= o for o in orders)
    assert sum(2 in o for o in orders) > 0.9 * len(orders)
    assert any(r["shuffled_orders"] for r in records)
    assert all(r["jpeg_quality"] == [s for s in r["stages"] if s["stage"] == "jpeg"][-1]["quality"]
               for r in records)  # fmt: skip


def test_jpeg_family_covers_its_quality_range_and_blur_family_has_sharp_pictures() -> None:
    x = _picture()
    qualities = [degrade_real(x, "real-jpeg", seed)[1]["jpeg_quality"] for seed in SEEDS]
    assert min(qualities) < 20 and max(qualities) > 85
    blurs = [
        any(s["stage"] == "blur" for s in degrade_real(x, "real-blur", seed)[1]["stages"])
        for seed in SEEDS
    ]
    assert 0.65 < sum(blurs) / len(blurs) < 0.9


def test_the_registry_names_them_with_their_families_and_baselines() -> None:
    families = {"real-sr4x": "sr4x", "real-blur": "deblur", "real-jpeg": "jpeg"}
    x = _picture()
    for task, family in families.items():
        assert task in TASK_NAMES
        operator = get_operator(task)
        assert operator.family == family and operator.seeded and not operator.paper
        json.dumps(dict(operator.params))
        degraded = operator(x, seed=3)
        assert "stages" in degraded.details
        baseline = classical_baseline(task, degraded.picture, (48, 40))
        assert baseline.shape == (1, 3, 48, 40)
    assert baseline_name("real-sr4x") == "bicubic"
    assert baseline_name("real-blur") == "input"
    assert baseline_name("real-jpeg") == "decoded"


def test_training_draws_a_degradation_per_picture() -> None:
    x0 = torch.cat([_picture(seed=0)] * 4)
    x1, mask, _ = Degrader(["real-blur"])(x0, torch.Generator().manual_seed(0))
    assert mask is None and x1.shape == x0.shape
    assert not torch.equal(x1[0], x1[1])  # one picture, four draws


def test_degrade_command_writes_the_parameters(tmp_path: Path) -> None:
    write_picture(tmp_path / "in" / "a.png", (50, 37), seed=1)
    result = CliRunner().invoke(
        app, ["degrade", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--task", "real-sr4x"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["task"] == "real-sr4x" and record["stages"]
    with Image.open(tmp_path / "out" / record["degraded"]) as small:
        assert small.size == (-(-50 // 4), -(-37 // 4))
