"""The coarse-to-fine start of a hole wider than the network learnt (restoring/coarse.py): the
pure parts, then through the Restorer: what it samples, what it leaves as it was, its seeds."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_inpaint_checkpoint, tiny_meta, write_picture
from PIL import Image
from torch import Tensor
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade.baselines import telea_inpaint
from i2sb_cli.models.checkpoint import save_checkpoint
from i2sb_cli.nets.adm import ADMUNet
from i2sb_cli.pictures.files import read_image
from i2sb_cli.restoring import coarse
from i2sb_cli.restoring.chain import Sampling, Stage
from i2sb_cli.restoring.coarse import (
    COARSE_HALF_WIDTH,
    COARSE_LEVELS,
    coarse_levels,
    halve,
    halve_box,
    hole_half_width,
    upscale_fill,
)
from i2sb_cli.restoring.crop import CONTEXT, Box, hole_box
from i2sb_cli.restoring.loop import Prepared, Restorer, RestoreSettings
from i2sb_cli.runtime import load_model
from i2sb_cli.runtime.torch_backend import LoadedModel

TASK = "inpaint-freeform1020"
SIZE = 384
"""A picture in which a hole wider than COARSE_HALF_WIDTH still leaves a crop (crop.py)."""


def _hole(top: int, left: int, bottom: int, right: int, size: int | tuple[int, int] = SIZE):
    """A [1, 1, H, W] hole of 1 in the rectangle, 0 elsewhere."""
    height, width = (size, size) if isinstance(size, int) else size
    hole = torch.zeros(1, 1, height, width)
    hole[..., top:bottom, left:right] = 1
    return hole


WIDE = _hole(100, 100, 212, 212)
"""Half-width 56: one halving, in a crop of 240 x 240 of the 384 x 384 picture."""
NARROW = _hole(150, 150, 230, 230)
"""Half-width 40: Telea's start."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny inpainting model that starts from Telea's fill, as the bundled one does."""
    folder = tmp_path_factory.mktemp("models")
    return make_inpaint_checkpoint(
        folder / "telea.safetensors", task=TASK, start="classical", degradation=TASK
    )


@pytest.fixture(scope="module")
def model(checkpoint) -> LoadedModel:
    return load_model(checkpoint, "cpu", "torch")


def _restorer(model: LoadedModel, *, ot_ode: bool = True, **settings) -> Restorer:
    stage = Stage(
        model=model, family="inpaint", sampling=Sampling(nfe=2, ot_ode=ot_ode), classical=TASK
    )
    return Restorer([stage], RestoreSettings(**settings))


def _prepared(restorer: Restorer, folder: Path, hole: Tensor, number: int = 0) -> Prepared:
    path = write_picture(folder / f"photo{number}.png", SIZE, seed=number)
    return restorer.prepare(read_image(path), f"photo{number}.png", mask=hole)


def _restored(model: LoadedModel, folder: Path, hole: Tensor, **options) -> Tensor:
    restorer = _restorer(model, **options)
    return restorer.sample([_prepared(restorer, folder, hole)])


# --- the pure parts ------------------------------------------------------------------------------


def test_the_half_width_is_the_farthest_hole_pixel_from_a_known_one():
    # Rows 10..29: rows 19 and 20 lie 10 pixels from the known rows 9 and 30.
    box = _hole(10, 10, 30, 50, 64)
    assert hole_half_width(box) == 10.0
    assert hole_half_width(box[0, 0]) == 10.0
    rows, cols = torch.meshgrid(torch.arange(101), torch.arange(101), indexing="ij")
    disc = (((rows - 50) ** 2 + (cols - 50) ** 2) <= 30**2).float()
    assert 30 <= hole_half_width(disc) < 31
    # The picture's border is no known pixel: a hole along the top is measured downwards.
    assert hole_half_width(_hole(0, 10, 20, 50, 64)) == 20.0
    assert hole_half_width(torch.zeros(8, 8)) == 0.0
    assert hole_half_width(torch.ones(8, 8)) == math.inf


def test_halving_averages_cells_and_makes_any_cell_with_a_hole_pixel_a_hole():
    picture = torch.arange(2 * 3 * 7 * 9, dtype=torch.float32).reshape(2, 3, 7, 9)
    mask = torch.zeros(2, 1, 7, 9)
    mask[0, 0, 2, 3] = 1
    mask[1, 0, 6, 8] = 1  # the last row and column, both odd
    small, hole = halve(picture, mask)
    assert small.shape == (2, 3, 4, 5) and hole.shape == (2, 1, 4, 5)
    assert torch.equal(small[..., 0, 0], picture[..., :2, :2].mean((-2, -1)))
    # An odd side repeats its last row and column: the corner cell is the corner pixel.
    assert torch.equal(small[..., 3, 4], picture[..., 6, 8])
    assert hole[0, 0].nonzero().tolist() == [[1, 1]]
    assert hole[1, 0].nonzero().tolist() == [[3, 4]]


def test_the_fill_comes_back_at_the_regions_exact_size_within_the_range():
    small = torch.full((2, 3, 4, 5), 0.25)
    assert torch.allclose(upscale_fill(small, (7, 9)), torch.full((2, 3, 7, 9), 0.25))
    assert upscale_fill(torch.full((1, 3, 4, 5), 3.0), (8, 10)).max() == 1.0
    edge = torch.zeros(1, 3, 4, 4)
    edge[..., 2:] = 1  # bicubic overshoots at a step
    assert upscale_fill(edge, (8, 8)).min() >= -1


def test_a_halved_box_holds_the_regions_cells_in_the_halved_picture():
    assert halve_box(Box(16, 32, 116, 97)) == Box(8, 16, 58, 49)
    assert halve_box(Box(0, 0, 7, 9)) == Box(0, 0, 4, 5)
    # The region's halving is the picture's halving cut to the halved box.
    picture, mask = torch.randn(1, 3, 31, 41), torch.zeros(1, 1, 31, 41)
    box = Box(6, 10, 31, 41)
    whole, _ = halve(picture, mask)
    region, _ = halve(picture[box.window], mask[box.window])
    assert torch.equal(region, whole[halve_box(box).window])


def test_a_hole_is_halved_until_the_network_learnt_its_width():
    # A band of 96 rows across the picture: 48 px at most from a known row, kept.
    band = _hole(100, 0, 100 + 2 * COARSE_HALF_WIDTH, 300, 300)
    assert hole_half_width(band) == COARSE_HALF_WIDTH and coarse_levels(band) == 0
    assert coarse_levels(WIDE) == 1
    assert coarse_levels(_hole(100, 100, 320, 320, 512)) == 2  # half-width 110
    assert coarse_levels(_hole(0, 0, 1000, 1000, 1024)) == COARSE_LEVELS


def test_no_halving_leaves_a_picture_without_known_pixels():
    # Only column 5 is known: halved, every cell would hold a hole pixel.
    hole = torch.ones(1, 1, 200, 200)
    hole[..., 5] = 0
    assert hole_half_width(hole) > COARSE_HALF_WIDTH
    assert coarse_levels(hole) == 0


# --- through the Restorer ------------------------------------------------------------------------


def test_a_narrow_hole_keeps_telea_s_start_exactly(model, tmp_path, monkeypatch):
    restorer = _restorer(model)
    assert _prepared(restorer, tmp_path, NARROW).coarse == []
    with_coarse = _restored(model, tmp_path, NARROW, ot_ode=False)
    monkeypatch.setattr(coarse, "COARSE_HALF_WIDTH", 10**9)
    assert torch.equal(with_coarse, _restored(model, tmp_path, NARROW, ot_ode=False))


def test_a_wide_hole_starts_coarse_and_gives_one_picture_per_seed(model, tmp_path, monkeypatch):
    first = _restored(model, tmp_path, WIDE, ot_ode=False, seed=5)
    assert torch.equal(first, _restored(model, tmp_path, WIDE, ot_ode=False, seed=5))
    original = read_image(tmp_path / "photo0.png").pixels
    known = WIDE.expand_as(original) == 0
    assert torch.equal(first[known], original[known])
    monkeypatch.setattr(coarse, "COARSE_HALF_WIDTH", 10**9)
    telea = _restored(model, tmp_path, WIDE, ot_ode=False, seed=5)
    assert torch.equal(telea[known], original[known])
    assert not torch.equal(first, telea)


def test_the_coarse_pass_runs_first_on_the_half_size_crop(model, tmp_path):
    sizes: list[tuple[int, int]] = []

    def noted(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        sizes.append(tuple(x_t.shape[-2:]))
        return model.denoise(x_t, n, cond)

    _restored(dataclasses.replace(model, denoise=noted), tmp_path, WIDE)
    # The crop: the hole grown by 64 px, 240 x 240; NFE 2 at half size, then at full size.
    assert sizes == [(120, 120)] * 2 + [(240, 240)] * 2


def test_an_untrained_network_fills_the_wide_hole_with_the_upscaled_half_size_telea(tmp_path):
    # ADM's zeroed last layers: the OT-ODE returns x1 at every size, so the result in the hole
    # is Telea's fill of the half-size crop of the full-size start, upscaled.
    meta = tiny_meta(
        name="untrained", task=TASK, beta_max=1.0, ot_ode=True, cond_x1=True,
        start="classical", degradation=TASK,
    )  # fmt: skip
    save_checkpoint(tmp_path / "untrained.safetensors", ADMUNet(meta.config).state_dict(), meta)
    untrained = load_model(tmp_path / "untrained.safetensors", "cpu", "torch")
    (restored,) = _restored(untrained, tmp_path, WIDE)
    picture = read_image(tmp_path / "photo0.png").pixels
    box = hole_box(WIDE, context=CONTEXT, multiple=untrained.size_multiple)
    start = telea_inpaint(picture, WIDE)
    small, hole = halve(start[box.window], WIDE[box.window])
    fill = upscale_fill(telea_inpaint(small, hole), box.size)
    expected = torch.where(WIDE[box.window] > 0, fill, picture[box.window])[0]
    assert torch.allclose(restored[box.window], expected, atol=1e-5)


def test_the_coarse_pass_draws_none_of_the_full_size_passs_noise(model, tmp_path, monkeypatch):
    def states(restorer: Restorer) -> list[Tensor]:
        prepared = _prepared(restorer, tmp_path, WIDE)
        restorer.sample([prepared])
        return [g.get_state() for g in prepared.generators[0]]

    with_coarse = states(_restorer(model, ot_ode=False))
    monkeypatch.setattr(coarse, "COARSE_HALF_WIDTH", 10**9)
    without = states(_restorer(model, ot_ode=False))
    assert all(torch.equal(a, b) for a, b in zip(with_coarse, without, strict=True))


def test_samples_get_their_own_coarse_fill_and_sample_0_is_the_single_one(model, tmp_path):
    (single,) = _restored(model, tmp_path, WIDE, ot_ode=False)
    samples = _restored(model, tmp_path, WIDE, ot_ode=False, samples=2)
    # Equal but for the network's round-off in a batch of two rows rather than one.
    assert (samples[0] - single).abs().max() < 1e-4
    assert (samples[0] - samples[1]).abs().max() > 0.1


def test_pictures_restore_in_one_batch_as_alone(model, tmp_path):
    restorer = _restorer(model, ot_ode=False, batch_size=2)
    # Crops of two sizes, sampled apart at full size (crop.py); the coarse pass is the wide
    # hole's alone.
    holes = [WIDE, NARROW]
    together = restorer.sample([_prepared(restorer, tmp_path, h, i) for i, h in enumerate(holes)])
    for i, hole in enumerate(holes):
        alone = _restorer(model, ot_ode=False)
        (single,) = alone.sample([_prepared(alone, tmp_path, hole, i)])
        assert torch.equal(together[i], single)


def test_a_start_other_than_telea_s_is_left_as_it_is(model, tmp_path):
    stage = Stage(model=model, family="inpaint", sampling=Sampling(nfe=2, ot_ode=True))
    restorer = Restorer([stage])
    assert _prepared(restorer, tmp_path, WIDE).coarse == []


@pytest.mark.slow
def test_onnx_runtime_takes_the_coarse_start_as_torch_does(checkpoint, model, tmp_path):
    pytest.importorskip("onnxruntime")
    session = load_model(checkpoint, "cpu", "onnxruntime", cache_dir=tmp_path / "cache")
    from_torch = _restored(model, tmp_path, WIDE, ot_ode=False)
    from_onnx = _restored(session, tmp_path, WIDE, ot_ode=False)
    assert (from_onnx - from_torch).abs().max() < 1e-3


def test_the_json_record_says_how_many_times_the_picture_was_halved(checkpoint, tmp_path):
    source = write_picture(tmp_path / "photo.png", SIZE)
    for name, hole, levels in (("wide", WIDE, 1), ("narrow", NARROW, 0)):
        mask = tmp_path / f"{name}_mask.png"
        Image.fromarray((hole[0, 0].numpy() * 255).astype(np.uint8)).save(mask)
        args = ["restore", "--backend", "torch", "--model", str(checkpoint), "--nfe", "1", "--json"]
        result = CliRunner().invoke(
            app, [*args, "--mask", str(mask), str(source), "-o", str(tmp_path / f"{name}.png")]
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["coarse_levels"] == levels
