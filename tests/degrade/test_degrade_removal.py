"""real-inpaint: holes of an object's, strokes' or a box's shape in a photo saved as a JPEG."""

import json
from pathlib import Path

import cv2
import pytest
import torch
from helpers import write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade import TASK_NAMES, get_operator
from i2sb_cli.degrade.baselines import baseline_name
from i2sb_cli.degrade.jpeg import jpeg_real
from i2sb_cli.degrade.realworld import Draw
from i2sb_cli.degrade.removal import HOLE_BANDS, box_mask, degrade_removal, object_mask
from i2sb_cli.training.data import Degrader, quantize8

SEEDS = range(120)


def _picture(height: int = 64, width: int = 80, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.rand(1, 3, height // 8, width // 8, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(smooth, size=(height, width), mode="bilinear")


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.4])
def test_object_blob_covers_about_its_fraction_in_one_piece(fraction: float) -> None:
    for seed in range(10):
        mask = object_mask(96, 128, fraction, Draw(seed))
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        # Most of the blob lies inside the picture (its centre keeps 60% of its reach in).
        assert 0.5 * fraction < float(mask.mean()) < 1.2 * fraction
        pieces, _ = cv2.connectedComponents(mask[0, 0].numpy().astype("uint8"))
        assert pieces == 2  # the background and one blob


def test_box_is_one_rectangle_of_its_fraction_inside_the_picture() -> None:
    for seed in range(20):
        mask = box_mask(60, 90, 0.15, Draw(seed))[0, 0]
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all())  # filled: a rectangle
        assert abs(float(mask.mean()) - 0.15) < 0.03


def test_same_seed_same_hole_and_pixels_and_details() -> None:
    x = _picture()
    first, second = degrade_removal(x, 7), degrade_removal(x, 7)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2]
    assert not torch.equal(first[1], degrade_removal(x, 8)[1])


def test_every_kind_drawn_in_its_band_and_most_known_pixels_are_jpeg() -> None:
    x = _picture()
    made = [get_operator("real-inpaint")(x, seed=seed) for seed in SEEDS]
    kinds = [d.details["hole_kind"] for d in made]
    assert {"object", "strokes", "box"} == set(kinds)
    assert 0.35 < kinds.count("object") / len(kinds) < 0.65
    for d in made:
        low, high = HOLE_BANDS[d.details["hole_kind"]]
        assert 0.4 * low <= d.details["hole_fraction"] <= high + 0.01
    qualities = [d.details["jpeg_quality"] for d in made]
    jpegs = [q for q in qualities if q is not None]
    assert 0.8 < len(jpegs) / len(qualities) < 0.98
    assert min(jpegs) >= 60 and max(jpegs) <= 95


def test_the_hole_is_white_and_the_known_pixels_are_the_jpeg() -> None:
    x = _picture()
    seed = next(s for s in SEEDS if degrade_removal(x, s)[2]["jpeg_quality"] is not None)
    picture, mask, details = degrade_removal(x, seed)
    assert torch.equal(picture[mask.expand_as(picture) > 0], torch.ones(int(mask.sum()) * 3))
    known = jpeg_real(x, details["jpeg_quality"])
    assert torch.equal(picture * (1 - mask), known * (1 - mask))
    assert not torch.equal(known, x)


def test_registry_names_it_an_inpainting_task_with_telea_as_baseline() -> None:
    assert "real-inpaint" in TASK_NAMES
    operator = get_operator("real-inpaint")
    assert operator.family == "inpaint" and operator.seeded and not operator.paper
    assert baseline_name("real-inpaint") == "telea"


def test_training_keeps_the_jpeg_known_pixels_and_noise_in_the_hole() -> None:
    x0 = torch.cat([_picture(seed=k) for k in range(4)])
    x1, mask, _ = Degrader(["real-inpaint"])(x0, torch.Generator().manual_seed(0))
    assert mask is not None and x1.shape == x0.shape
    kept = mask.expand_as(x0) == 0
    # Outside the hole x1 is the 8-bit picture a JPEG gave (or the clean one for a tenth).
    assert torch.equal(x1[kept], quantize8(x1)[kept])
    assert (x1[kept] - x0[kept]).abs().max() > 1 / 255  # the JPEG changed some known pixel
    assert x1[~kept].abs().max() > 1  # standard normal noise in the hole, not white


def test_paper_inpainting_training_input_is_unchanged_by_the_operator_picture() -> None:
    # The Degrader now takes the known pixels from the operator's picture; for the paper's
    # tasks that is the clean picture, so x1 keeps its exact values.
    x0 = torch.cat([_picture(seed=k) for k in range(2)])
    generator = torch.Generator().manual_seed(3)
    x1, mask, _ = Degrader(["inpaint-freeform1020"])(x0, generator)
    kept = mask.expand_as(x0) == 0
    assert torch.equal(x1[kept], quantize8(x0)[kept])


def test_degrade_command_writes_pairs_masks_and_the_draws(tmp_path: Path) -> None:
    write_picture(tmp_path / "in" / "a.png", (64, 48), seed=1)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["degrade", str(tmp_path / "in"), "-o", str(out), "--task", "real-inpaint"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert record["task"] == "real-inpaint" and record["hole_kind"] in ("object", "strokes", "box")
    assert "jpeg_quality" in record and 0 < record["hole_fraction"] < 0.5
    with Image.open(out / record["degraded"]) as degraded:
        assert degraded.size == (64, 48)
    assert (out / record["mask"]).is_file()
