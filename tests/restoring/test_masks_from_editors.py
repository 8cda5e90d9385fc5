"""Masks as people make them in an image editor (issue 32): any format, soft or JPEG edges,
white or transparent for the hole, cut into a clean hole by a measured threshold and growth
that the picture's line, its --json record and its metadata show; masks of another shape."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import make_checkpoint, make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade.masks import dilate_mask
from i2sb_cli.errors import ImageError
from i2sb_cli.pictures.files import MaskLevels, mask_levels, read_image, read_metadata
from i2sb_cli.restoring.holes import MASK_THRESHOLD, SOFT_MASK_GROWTH, cut_hole, fit_mask

SIZE = 32


@pytest.fixture(scope="module")
def inpaint(tmp_path_factory) -> Path:
    return make_inpaint_checkpoint(tmp_path_factory.mktemp("models") / "inpaint.safetensors")


def restore(*args: str | Path):
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _square(start: int = 10, stop: int = 20, size: int = SIZE) -> np.ndarray:
    """The exact hole: a bool square."""
    hole = np.zeros((size, size), bool)
    hole[start:stop, start:stop] = True
    return hole


def _soft(hole: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The hole as a soft brush paints it: white on black, its edge blurred."""
    level = cv2.GaussianBlur(hole.astype(np.float32) * 255, (0, 0), sigma)
    return np.round(level).clip(0, 255).astype(np.uint8)


def _changed(source: Path, target: Path) -> np.ndarray:
    return (read_pixels(source) != read_pixels(target)).any(axis=2)


def _line(result) -> str:
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("restored")]
    return line


def _expected_hole(mask: Path, **options) -> np.ndarray:
    """The hole the command should cut from a mask file (as holes.cut_hole cuts it)."""
    levels = mask_levels(read_image(mask))
    hole, _ = cut_hole(levels, source="mask", feather=0, named="mask", **options)
    return hole[0, 0].bool().numpy()


# --- soft masks: a low threshold and a growth, shown ---------------------------------------------


def test_a_soft_jpeg_mask_is_cut_and_grown_by_default(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "mask.jpg"
    Image.fromarray(_soft(_square())).convert("RGB").save(mask, quality=80)
    target = tmp_path / "out.png"
    result = restore(source, "--model", inpaint, "--mask", mask, "-o", target, "--json")
    assert result.exit_code == 0, result.stderr
    described = (
        f"mask: soft edges, hole >= {MASK_THRESHOLD:g} of white, grown {SOFT_MASK_GROWTH} px"
    )
    assert described in _line(result)
    record = json.loads(result.stdout)["mask"]
    assert record == {
        "hole": "white",
        "source": "mask",
        "threshold": MASK_THRESHOLD,
        "dilate": SOFT_MASK_GROWTH,
        "feather": 0,
        "soft_edges": True,
    }
    metadata = read_metadata(target)
    assert metadata["i2sb:mask-threshold"] == f"{MASK_THRESHOLD:g}"
    assert metadata["i2sb:mask-dilate"] == str(SOFT_MASK_GROWTH)
    assert metadata["i2sb:mask-hole"] == "mask white"
    expected = _expected_hole(mask, threshold=None, dilate=None)
    changed = _changed(source, target)
    assert not changed[~expected].any()  # nothing outside the cut hole
    assert changed[_square()].all()  # and no rim of the exact hole left
    grown = dilate_mask(torch.from_numpy(_square()).float()[None, None], 1)[0, 0].bool().numpy()
    assert changed[grown].all()  # grown beyond the exact hole


def test_mask_dilate_0_means_no_growth(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "mask.png"
    Image.fromarray(_soft(_square())).save(mask)
    target = tmp_path / "out.png"
    options = ("--model", inpaint, "--mask", mask, "-o", target, "--json")
    result = restore(source, *options, "--mask-dilate", 0)
    assert result.exit_code == 0, result.stderr
    assert "not grown" in _line(result) and json.loads(result.stdout)["mask"]["dilate"] == 0
    assert read_metadata(target)["i2sb:mask-dilate"] == "0"
    cut = _expected_hole(mask, threshold=None, dilate=0)
    assert np.array_equal(_changed(source, target), cut)


def test_mask_threshold_and_dilate_override_the_defaults(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "mask.png"
    Image.fromarray(_soft(_square())).save(mask)
    target = tmp_path / "out.png"
    options = ("--model", inpaint, "--mask", mask, "-o", target, "--json")
    result = restore(source, *options, "--mask-threshold", 0.5, "--mask-dilate", 1)
    assert result.exit_code == 0, result.stderr
    assert "hole >= 0.5 of white, grown 1 px" in _line(result)
    record = json.loads(result.stdout)["mask"]
    assert (record["threshold"], record["dilate"]) == (0.5, 1)
    assert read_metadata(target)["i2sb:mask-threshold"] == "0.5"
    cut = _expected_hole(mask, threshold=0.5, dilate=1)
    assert np.array_equal(_changed(source, target), cut)


def test_a_two_level_mask_is_taken_as_it_is(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "mask.png"
    Image.fromarray(_square().astype(np.uint8) * 255).save(mask)
    target = tmp_path / "out.png"
    result = restore(source, "--model", inpaint, "--mask", mask, "-o", target, "--json")
    assert result.exit_code == 0, result.stderr
    assert "mask: hard edges" in _line(result) and "not grown" in _line(result)
    assert json.loads(result.stdout)["mask"]["soft_edges"] is False
    assert np.array_equal(_changed(source, target), _square())


@pytest.mark.parametrize(
    ("suffix", "options"), [(".bmp", {}), (".tif", {}), (".webp", {"lossless": True})]
)
def test_a_mask_of_any_lossless_format_marks_the_same_hole(tmp_path, inpaint, suffix, options):
    source = write_picture(tmp_path / "photo.png", SIZE)
    reference, target = tmp_path / "reference.png", tmp_path / "out.png"
    Image.fromarray(_soft(_square())).save(tmp_path / "mask.png")
    mask = tmp_path / f"mask{suffix}"
    Image.fromarray(_soft(_square())).save(mask, **options)
    first = restore(source, "--model", inpaint, "--mask", tmp_path / "mask.png", "-o", reference)
    assert first.exit_code == 0, first.stderr
    result = restore(source, "--model", inpaint, "--mask", mask, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(read_pixels(reference), read_pixels(target))


# --- transparency --------------------------------------------------------------------------------


def test_a_mask_of_one_colour_marks_its_hole_by_transparency(tmp_path, inpaint):
    """An opaque white layer with the hole erased (soft eraser): the colour says nothing."""
    source = write_picture(tmp_path / "photo.png", SIZE)
    rgba = np.full((SIZE, SIZE, 4), 255, np.uint8)
    rgba[..., 3] = 255 - _soft(_square())
    mask = tmp_path / "erased.png"
    Image.fromarray(rgba, "RGBA").save(mask)
    target = tmp_path / "out.png"
    result = restore(source, "--model", inpaint, "--mask", mask, "-o", target, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"hole >= {MASK_THRESHOLD:g} of the mask's transparency" in _line(result)
    assert json.loads(result.stdout)["mask"]["hole"] == "transparency"
    assert read_metadata(target)["i2sb:mask-hole"] == "mask transparency"
    changed = _changed(source, target)
    assert changed[_square()].all() and not changed[:4].any()


def test_white_strokes_on_a_transparent_layer_mark_the_hole_in_white(tmp_path, inpaint):
    """Transparent pixels stored black, the strokes white: the colour marks the hole."""
    source = write_picture(tmp_path / "photo.png", SIZE)
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[_square()] = 255
    mask = tmp_path / "layer.png"
    Image.fromarray(rgba, "RGBA").save(mask)
    target = tmp_path / "out.png"
    result = restore(source, "--model", inpaint, "--mask", mask, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert f"hole >= {MASK_THRESHOLD:g} of white" in _line(result)
    assert np.array_equal(_changed(source, target), _square())


def test_the_pictures_own_transparency_is_named_on_its_line(tmp_path, inpaint):
    rgba = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(_square(), 0, 255)
    source = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(source)
    result = restore(source, "--model", inpaint, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"hole >= {MASK_THRESHOLD:g} of the picture's transparency, not grown" in _line(result)
    assert json.loads(result.stdout)["mask"]["source"] == "picture"


# --- sizes and refusals --------------------------------------------------------------------------


def test_a_mask_of_another_shape_is_refused_or_stretched(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "wide.png"
    Image.fromarray(np.repeat(_square().astype(np.uint8) * 255, 2, axis=1)).save(mask)
    target = tmp_path / "out.png"
    refused = restore(source, "--model", inpaint, "--mask", mask, "-o", target)
    assert refused.exit_code == 1 and not target.exists()
    (line,) = [text for text in refused.stderr.splitlines() if "another shape" in text]
    assert "64x32" in line and "32x32" in line and "--mask-resize" in line
    stretched = restore(source, "--model", inpaint, "--mask", mask, "-o", target, "--mask-resize")
    assert stretched.exit_code == 0, stretched.stderr
    assert "mask 64x32 resized to the picture's 32x32" in _line(stretched)
    assert np.array_equal(_changed(source, target), _square())


def test_a_mask_within_one_percent_of_the_shape_is_resized(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", (200, 100))
    hole = np.zeros((101, 200), np.uint8)  # 1.98 against 2: 1 % off
    hole[40:60, 80:120] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    result = restore(source, "--model", inpaint, "--mask", tmp_path / "mask.png", "--nfe", 1)
    assert result.exit_code == 0, result.stderr
    assert "mask 200x101 resized to the picture's 200x100" in _line(result)


def test_a_soft_mask_that_covers_all_once_grown_is_refused(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "mask.png"
    Image.fromarray(_soft(_square(2, 30))).save(mask)
    result = restore(source, "--model", inpaint, "--mask", mask)
    assert result.exit_code == 1
    (line,) = [text for text in result.stderr.splitlines() if "whole picture" in text]
    assert f"once grown {SOFT_MASK_GROWTH} px" in line and "--mask-dilate" in line
    assert not (tmp_path / "photo_restored.png").exists()
    assert restore(source, "--model", inpaint, "--mask", mask, "--mask-dilate", 0).exit_code == 0


def test_a_mask_of_no_hole_is_refused(tmp_path, inpaint):
    source = write_picture(tmp_path / "photo.png", SIZE)
    mask = tmp_path / "faint.png"
    Image.fromarray(np.full((SIZE, SIZE), 40, np.uint8)).save(mask)  # 0.16 of white
    result = restore(source, "--model", inpaint, "--mask", mask)
    assert result.exit_code == 1
    (line,) = [text for text in result.stderr.splitlines() if "marks no hole" in text]
    assert f"hole >= {MASK_THRESHOLD:g} of white" in line and "--mask-threshold" in line


@pytest.mark.parametrize("option", [["--mask-dilate", "0"], ["--mask-resize"]])
def test_mask_options_are_refused_outside_inpainting(tmp_path, option):
    model = make_checkpoint(tmp_path / "sr.safetensors")
    result = restore(write_picture(tmp_path / "small.png", 8), "--model", model, *option)
    assert result.exit_code == 2 and option[0] in result.stderr


# --- the pieces ----------------------------------------------------------------------------------


def test_soft_edges_are_levels_between_the_extremes() -> None:
    two = torch.tensor([0.0, 0.0, 0.78, 0.78]).reshape(1, 1, 1, 4)
    assert not MaskLevels(two, "white").soft
    assert MaskLevels(torch.tensor([0.0, 0.4, 1.0]).reshape(1, 1, 1, 3), "white").soft


def test_fit_mask_resizes_the_same_shape_and_refuses_another() -> None:
    mask = MaskLevels(torch.zeros(1, 1, 50, 100), "white")
    resized, note = fit_mask(mask, (25, 50), stretch=False, named="m")
    assert resized.level.shape[-2:] == (25, 50) and "100x50" in note
    with pytest.raises(ImageError, match="another shape"):
        fit_mask(mask, (50, 50), stretch=False, named="m")
    assert fit_mask(mask, (50, 50), stretch=True, named="m")[0].level.shape[-2:] == (50, 50)
