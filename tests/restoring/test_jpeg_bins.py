"""A jpeg model's result kept near its JPEG file's DCT coefficients (restoring/jpeg_bins.py):
the file's coding as read (tables, sampling, orientation), the projection's own properties, and
the restore command that applies it, says so, and can leave it off."""

import itertools
import json

import numpy as np
import pytest
import torch
from helpers import make_checkpoint
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.pictures import files as images
from i2sb_cli.restoring import jpeg_bins
from i2sb_cli.restoring.jpeg_bins import (
    HIGH_QUALITY,
    LOW_QUALITY,
    SLACK_AT_HIGH_QUALITY,
    SLACK_AT_LOW_QUALITY,
    keep_near_file,
    slack_for_quality,
)

ORIENTATION = 0x0112


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colours with grain: a picture whose JPEG has both blocks and texture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.int16)
    return np.clip(big + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)


def _jpeg(path, pixels, *, quality=30, subsampling=2, orientation=1, grey=False):
    image = Image.fromarray(pixels).convert("L" if grey else "RGB")
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, quality=quality, subsampling=subsampling, exif=exif.tobytes())
    return path


def _levels(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.double().clamp(-1, 1) + 1) * 127.5


def test_the_slack_follows_the_files_quality():
    assert slack_for_quality(1) == slack_for_quality(LOW_QUALITY) == SLACK_AT_LOW_QUALITY
    assert slack_for_quality(100) == slack_for_quality(HIGH_QUALITY) == SLACK_AT_HIGH_QUALITY
    slacks = [slack_for_quality(q) for q in range(1, 101)]
    assert all(a >= b for a, b in itertools.pairwise(slacks))
    assert 0 < SLACK_AT_HIGH_QUALITY < SLACK_AT_LOW_QUALITY <= 0.5


@pytest.mark.parametrize(
    ("subsampling", "grey", "expected"),
    [
        (0, False, ((1, 1), (1, 1), (1, 1))),
        (1, False, ((1, 1), (1, 2), (1, 2))),
        (2, False, ((1, 1), (2, 2), (2, 2))),
        (2, True, ((1, 1),)),
    ],
)
def test_a_jpeg_files_coding_is_read(tmp_path, subsampling, grey, expected):
    path = _jpeg(tmp_path / "a.jpg", _photo(40, 56), subsampling=subsampling, grey=grey)
    picture = images.read_image(path)
    with Image.open(path) as image:
        tables = [tuple(image.quantization[key]) for key in sorted(image.quantization)]
    coding = picture.jpeg_coding
    assert coding.subsampling == expected and coding.orientation == 1
    assert coding.tables[0] == tables[0]
    assert all(table == tables[-1] for table in coding.tables[1:])


def test_other_files_have_no_coding(tmp_path):
    pixels = _photo(40, 56)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert images.read_image(tmp_path / "a.png").jpeg_coding is None
    assert images.read_image(tmp_path / "cmyk.jpg").jpeg_coding is None


@pytest.mark.parametrize("subsampling", [0, 2])
@pytest.mark.parametrize("orientation", [1, 3, 6, 7])
def test_no_slack_gives_back_the_file(tmp_path, subsampling, orientation):
    """Whatever it starts from (here a flat grey), a result held to the file's own steps is the
    file again: what would not be if the blocks were taken on the upright picture's grid (its
    sides here are not multiples of 16) or the chroma on another grid than the file's."""
    path = _jpeg(tmp_path / "a.jpg", _photo(45, 61), subsampling=subsampling,
                 orientation=orientation)  # fmt: skip
    picture = images.read_image(path)
    assert picture.jpeg_coding.orientation == orientation
    grey = torch.zeros_like(picture.pixels)
    kept = keep_near_file(grey, picture.pixels, picture.jpeg_coding, 0.0)
    difference = (_levels(kept) - _levels(picture.pixels)).abs()
    # The decoder rounds (and, for 4:2:0, interpolates chroma in its own way): a level or so.
    assert difference.mean() < 0.8 and difference.max() < 12


def test_the_photograph_itself_is_within_half_a_step(tmp_path):
    """The photograph the file was made from lies within its bins: at slack 1/2 it is (nearly)
    left as it is, while the file is far from it."""
    pixels = _photo(48, 64, seed=1)
    path = _jpeg(tmp_path / "a.jpg", pixels, quality=20, subsampling=0)
    picture = images.read_image(path)
    photo = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    kept = keep_near_file(photo, picture.pixels, picture.jpeg_coding, 0.5)
    moved = (_levels(kept) - _levels(photo)).abs().mean()
    assert moved < 0.25 * (_levels(picture.pixels) - _levels(photo)).abs().mean()


def test_keeping_near_the_file_twice_is_keeping_it_once(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", _photo(40, 56, seed=2), subsampling=0)
    picture = images.read_image(path)
    smooth = torch.nn.functional.avg_pool2d(picture.pixels, 5, stride=1, padding=2)
    once = keep_near_file(smooth, picture.pixels, picture.jpeg_coding, 0.2)
    twice = keep_near_file(once, picture.pixels, picture.jpeg_coding, 0.2)
    assert (once - smooth).abs().max() > 0.02
    assert torch.allclose(once, twice, atol=1e-4)


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_bands_give_the_whole_pictures_result(tmp_path, monkeypatch, subsampling):
    """Worked band by band (memory), the result is the one of the picture in one piece."""
    path = _jpeg(tmp_path / "a.jpg", _photo(77, 40), subsampling=subsampling, orientation=6)
    picture = images.read_image(path)
    smooth = torch.nn.functional.avg_pool2d(picture.pixels, 5, stride=1, padding=2)
    monkeypatch.setattr(jpeg_bins, "BAND_ROWS", 10**6)
    whole = keep_near_file(smooth, picture.pixels, picture.jpeg_coding, 0.2)
    monkeypatch.setattr(jpeg_bins, "BAND_ROWS", 16)
    banded = keep_near_file(smooth, picture.pixels, picture.jpeg_coding, 0.2)
    assert torch.allclose(whole, banded, atol=1e-5)


def test_bad_slack_and_sizes_are_refused(tmp_path):
    picture = images.read_image(_jpeg(tmp_path / "a.jpg", _photo(40, 56)))
    with pytest.raises(ValueError, match="slack"):
        keep_near_file(picture.pixels, picture.pixels, picture.jpeg_coding, 0.6)
    with pytest.raises(ValueError, match="restored"):
        keep_near_file(picture.pixels[..., :32], picture.pixels, picture.jpeg_coding, 0.2)


@pytest.fixture(scope="module")
def jpeg_model(tmp_path_factory):
    return make_checkpoint(
        tmp_path_factory.mktemp("bins") / "jpeg.safetensors", name="tiny-jpeg", task="jpeg"
    )


def _restore(*args):
    command = ["restore", *map(str, args), "--backend", "torch", "--json"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.stderr
    return result, json.loads(result.stdout.splitlines()[0])


def test_restore_keeps_a_jpeg_near_its_file_and_says_so(jpeg_model, tmp_path):
    source = _jpeg(tmp_path / "web.jpg", _photo(48, 64), quality=40)
    result, record = _restore(source, "--model", jpeg_model, "-o", tmp_path / "kept.png")
    assert record["jpeg_slack"] == slack_for_quality(40)
    assert f"kept within {slack_for_quality(40):.2f} step of the file's DCT" in result.stderr
    assert images.read_metadata(tmp_path / "kept.png")["i2sb:jpeg-slack"] == "0.20"

    _, free = _restore(source, "--model", jpeg_model, "--no-jpeg-bins", "-o", tmp_path / "f.png")
    assert free["jpeg_slack"] is None
    assert "i2sb:jpeg-slack" not in images.read_metadata(tmp_path / "f.png")
    # The untrained model's result is far from the file, and kept near it, nearer.
    file = _levels(images.read_image(source).pixels)
    kept = _levels(images.read_image(tmp_path / "kept.png").pixels)
    unkept = _levels(images.read_image(tmp_path / "f.png").pixels)
    assert (kept - file).abs().mean() < 0.8 * (unkept - file).abs().mean()


@pytest.mark.parametrize("tasks", ["deblur,jpeg", "jpeg,deblur"])
def test_a_png_or_a_chain_is_not_kept_near_any_file(jpeg_model, tmp_path, tasks):
    """A later stage starts from another picture than the file, and an earlier one hands a
    clean picture on (the file's blocks, kept, would be enlarged into speckle by sr4x)."""
    Image.fromarray(_photo(48, 64)).save(tmp_path / "a.png")
    _, record = _restore(tmp_path / "a.png", "--model", jpeg_model, "-o", tmp_path / "o.png")
    assert record["jpeg_slack"] is None
    deblur = make_checkpoint(tmp_path / "deblur.safetensors", name="tiny-deblur", task="deblur")
    models = {"deblur": deblur, "jpeg": jpeg_model}
    chain = ",".join(str(models[task]) for task in tasks.split(","))
    source = _jpeg(tmp_path / "web.jpg", _photo(48, 64), quality=40)
    _, record = _restore(source, "--task", tasks, "--model", chain, "-o", tmp_path / "c.png")
    assert record["jpeg_slack"] is None
