"""Inpainting only the region around a hole (issue 32, restoring/crop.py): the box, the
pixels kept, what the network sees, and seeds that still give the same picture."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from torch import Tensor
from typer.testing import CliRunner

from i2sb_cli.bridge import per_image_noise
from i2sb_cli.cli.app import app
from i2sb_cli.pictures.files import read_image
from i2sb_cli.restoring.chain import Sampling, Stage
from i2sb_cli.restoring.crop import CONTEXT, WHOLE_SHARE, Box, crop_noise, hole_box
from i2sb_cli.restoring.loop import Restorer, RestoreSettings
from i2sb_cli.runtime import load_model
from i2sb_cli.runtime.torch_backend import LoadedModel

SIZE = 256
"""A picture large enough for a small hole's crop (CONTEXT on each side) to leave most out."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_inpaint_checkpoint(tmp_path_factory.mktemp("models") / "inpaint.safetensors")


@pytest.fixture(scope="module")
def model(checkpoint) -> LoadedModel:
    return load_model(checkpoint, "cpu", "torch")


def _hole(top: int, left: int, bottom: int, right: int, size: int = SIZE) -> Tensor:
    """A [1, 1, size, size] hole of 1 in the rectangle, 0 elsewhere."""
    hole = torch.zeros(1, 1, size, size)
    hole[..., top:bottom, left:right] = 1
    return hole


def _seen(model: LoadedModel) -> tuple[LoadedModel, list[tuple[int, int]]]:
    """The model with a network that notes the height and width of every x_t it is given."""
    sizes: list[tuple[int, int]] = []

    def noted(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        sizes.append(tuple(x_t.shape[-2:]))
        return model.denoise(x_t, n, cond)

    return dataclasses.replace(model, denoise=noted), sizes


def _restored(
    model: LoadedModel,
    folder: Path,
    holes: list[Tensor],
    first: int = 0,
    *,
    ot_ode: bool = True,
    **settings,
) -> Tensor:
    """Pictures `first`, `first` + 1, ... (seeded and named by their number), one per hole,
    restored in one batch at NFE 2 (OT-ODE unless `ot_ode` says otherwise) by a Restorer of
    `settings`."""
    # A Stage, not make_stage: the tiny model is trained for the OT-ODE alone, and
    # make_stage refuses it the stochastic sampler that some tests compare.
    stage = Stage(model=model, family="inpaint", sampling=Sampling(nfe=2, ot_ode=ot_ode))
    restorer = Restorer([stage], RestoreSettings(**({"batch_size": len(holes)} | settings)))
    prepared = []
    for i, hole in enumerate(holes, start=first):
        picture = read_image(write_picture(folder / f"photo{i}.png", SIZE, seed=i))
        prepared.append(restorer.prepare(picture, f"photo{i}.png", mask=hole))
    return restorer.sample(prepared)


def _restore_file(
    folder: Path, checkpoint: Path, hole: Tensor, *options: str
) -> tuple[np.ndarray, np.ndarray]:
    """`i2sb restore` of a seeded SIZE x SIZE PNG with `hole` as its mask file: the output's
    pixels, and the input's."""
    source = write_picture(folder / "photo.png", SIZE, seed=7)
    mask = folder / "mask.png"
    Image.fromarray((hole[0, 0].numpy() * 255).astype(np.uint8)).save(mask)
    target = folder / "out.png"
    args = ["restore", "--backend", "torch", "--model", str(checkpoint), "--mask", str(mask)]
    result = CliRunner().invoke(app, [*args, str(source), "-o", str(target), *options])
    assert result.exit_code == 0, result.stderr
    return read_pixels(target), read_pixels(source)


# --- the box: a pure function of the hole --------------------------------------------------------


def test_the_box_is_the_hole_grown_by_the_context_then_rounded_out_to_the_grid():
    box = hole_box(_hole(100, 110, 130, 121), context=16, multiple=8)
    # Rows 84..146 and columns 94..137, rounded out to the grid of 8 from the corner.
    assert box == Box(top=80, left=88, bottom=152, right=144)
    assert box.size == (72, 56)


def test_a_box_at_the_border_is_clipped_to_the_picture():
    assert hole_box(_hole(0, 0, 10, 10), context=16, multiple=8) == Box(0, 0, 32, 32)
    far = hole_box(_hole(SIZE - 10, SIZE - 10, SIZE, SIZE), context=16, multiple=8)
    assert far == Box(SIZE - 32, SIZE - 32, SIZE, SIZE)
    # A side that is no multiple: the box ends at the picture's last row, padded as the
    # whole picture is.
    hole = torch.zeros(1, 1, 30, 300)
    hole[..., 10:12, 140:150] = 1
    assert hole_box(hole, context=16, multiple=8) == Box(0, 120, 30, 168)


def test_a_box_over_most_of_the_picture_or_no_context_is_the_whole_picture():
    whole = Box(0, 0, SIZE, SIZE)
    assert hole_box(_hole(20, 20, 200, 200), context=16, multiple=8) == whole
    # Two small holes in opposite corners: one box for both, which covers the picture.
    two = _hole(0, 0, 8, 8) + _hole(SIZE - 8, SIZE - 8, SIZE, SIZE)
    assert hole_box(two, context=16, multiple=8) == whole
    assert hole_box(_hole(100, 100, 110, 110), context=None, multiple=8) == whole
    # 116 rounded out to 120: 22 % of the picture, under WHOLE_SHARE.
    assert WHOLE_SHARE > 0.22
    assert hole_box(_hole(0, 0, 100, 100), context=16, multiple=8) == Box(0, 0, 120, 120)


def test_crop_noise_is_the_whole_pictures_noise_cut_to_each_rows_box():
    boxes = [Box(2, 3, 6, 8), Box(0, 4, 4, 9)]
    whole = per_image_noise([torch.Generator().manual_seed(s) for s in (1, 2)])
    cropped = crop_noise(
        per_image_noise([torch.Generator().manual_seed(s) for s in (1, 2)]), (10, 12), boxes
    )
    drawn = whole(torch.empty(2, 3, 10, 12))
    crops = cropped(torch.empty(2, 3, 4, 5))
    for row, box in enumerate(boxes):
        assert torch.equal(crops[row], drawn[row][box.window])


# --- restoring: the crop sampled, pasted back, seeded ------------------------------------------


def test_a_small_hole_in_a_big_picture_samples_only_its_crop(model, tmp_path):
    seen_model, sizes = _seen(model)
    _restored(seen_model, tmp_path, [_hole(120, 120, 136, 136)])
    side = 16 + 2 * CONTEXT
    assert sizes == [(side, side)] * 2  # NFE 2: two network calls, on the crop alone
    sizes.clear()
    _restored(seen_model, tmp_path, [_hole(120, 120, 136, 136)], hole_context=None)
    assert sizes == [(SIZE, SIZE)] * 2


@pytest.mark.parametrize("ot_ode", [True, False], ids=["ot-ode", "stochastic"])
def test_a_network_that_sees_only_its_grid_cells_restores_the_crop_as_the_whole(
    model, tmp_path, ot_ode
):
    # A stand-in network without context beyond its cells of `multiple` pixels, and not
    # shift-invariant (as patches and downsamplings are not): the crop, on the grid and with
    # the whole picture's noise, gives the whole picture's pixels exactly.
    multiple = 8

    def cells(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        return F.interpolate(F.avg_pool2d(x_t, multiple), scale_factor=multiple) * 0.5

    local = dataclasses.replace(model, denoise=cells, size_multiple=multiple)
    hole = [_hole(101, 77, 119, 93)]
    cropped = _restored(local, tmp_path, hole, hole_context=4, ot_ode=ot_ode)
    whole = _restored(local, tmp_path, hole, hole_context=None, ot_ode=ot_ode)
    assert torch.equal(cropped, whole)


def test_pixels_outside_the_crop_and_the_hole_are_the_originals_exactly(checkpoint, tmp_path):
    hole = _hole(120, 120, 136, 136)
    restored, original = _restore_file(tmp_path, checkpoint, hole)
    inside = hole[0, 0].bool().numpy()
    assert np.array_equal(restored[~inside], original[~inside])
    assert (restored[inside] != original[inside]).any()


@pytest.mark.parametrize("ot_ode", [True, False], ids=["ot-ode", "stochastic"])
def test_the_same_seed_gives_the_same_picture(model, tmp_path, ot_ode):
    hole = [_hole(120, 120, 136, 136)]
    first = _restored(model, tmp_path, hole, seed=5, ot_ode=ot_ode)
    assert torch.equal(first, _restored(model, tmp_path, hole, seed=5, ot_ode=ot_ode))
    assert not torch.equal(first, _restored(model, tmp_path, hole, seed=6, ot_ode=ot_ode))


def test_pictures_whose_crops_differ_restore_in_one_batch_as_alone(model, tmp_path):
    # Docs/design.md decision 2: the batch changes no picture, though its crops differ.
    holes = [_hole(120, 120, 136, 136), _hole(10, 30, 40, 50)]
    together = _restored(model, tmp_path, holes, ot_ode=False)
    for i, hole in enumerate(holes):
        (alone,) = _restored(model, tmp_path, [hole], first=i, ot_ode=False)
        assert torch.equal(together[i], alone)


@pytest.mark.parametrize(
    ("hole", "whole"),
    [(_hole(0, SIZE - 12, 12, SIZE), False), (_hole(10, 10, 240, 240), True)],
    ids=["at-the-border", "most-of-the-picture"],
)
def test_a_hole_at_the_border_or_over_most_of_the_picture_is_restored(
    checkpoint, model, tmp_path, hole, whole
):
    restored, original = _restore_file(tmp_path, checkpoint, hole)
    inside = hole[0, 0].bool().numpy()
    assert np.array_equal(restored[~inside], original[~inside])
    assert (restored[inside] != original[inside]).any()
    seen_model, sizes = _seen(model)
    _restored(seen_model, tmp_path, [hole])
    crop = hole_box(hole, context=CONTEXT, multiple=model.size_multiple)
    assert sizes[0] == crop.size
    assert (crop.size == (SIZE, SIZE)) == whole
