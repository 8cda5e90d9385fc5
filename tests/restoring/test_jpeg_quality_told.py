"""A jpeg model told each picture's JPEG quality (condition "jpeg-quality"): where restore and
the API take the quality from (--jpeg-quality, the file's tables, the pixels, the unknown
default), how they say it, and that the model hears it."""

import json

import numpy as np
import pytest
from helpers import make_checkpoint, read_pixels
from PIL import Image
from typer.testing import CliRunner

import i2sb_cli as i2sb
from i2sb_cli.cli.app import app
from i2sb_cli.models.condition import UNKNOWN_JPEG_QUALITY
from i2sb_cli.pictures import files as images


@pytest.fixture(scope="module")
def told(tmp_path_factory):
    return make_checkpoint(
        tmp_path_factory.mktemp("told") / "told.safetensors",
        name="tiny-jpeg-told",
        task="jpeg",
        cond_x1=True,
        condition="jpeg-quality",
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A textured 96x96 picture, never compressed: enough 8x8 blocks for a blind estimate."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((96, 96), Image.BICUBIC), np.int16)
    pixels = np.clip(big + rng.integers(-20, 21, big.shape), 1, 254).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _jpeg(photo, path, quality):
    with Image.open(photo) as image:
        image.save(path, quality=quality)
    return path


def restore(*args):
    command = ["restore", *map(str, args), "--backend", "torch", "--json"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.stderr
    return result, json.loads(result.stdout.splitlines()[0])


def test_a_jpeg_file_tells_its_own_quality(told, photo, tmp_path):
    source = _jpeg(photo, tmp_path / "web.jpg", 30)
    result, record = restore(source, "--model", told, "-o", tmp_path / "out.png")
    assert record["jpeg_quality"] == 30
    assert (record["told_jpeg_quality"], record["told_jpeg_quality_from"]) == (30, "file")
    assert "told JPEG quality 30 (the file's tables)" in result.stderr
    metadata = images.read_metadata(tmp_path / "out.png")
    assert metadata["i2sb:told-jpeg-quality"] == "30 (file)"


def test_a_png_that_was_a_jpeg_tells_the_quality_its_pixels_show(told, photo, tmp_path):
    once = _jpeg(photo, tmp_path / "once.jpg", 30)
    with Image.open(once) as image:
        image.save(tmp_path / "screenshot.png")
    result, record = restore(tmp_path / "screenshot.png", "--model", told, "-o", tmp_path / "o.png")
    assert record["jpeg_quality"] is None and record["told_jpeg_quality_from"] == "pixels"
    assert abs(record["told_jpeg_quality"] - 30) <= 2
    assert "estimated from the pixels" in result.stderr


def test_a_picture_that_never_was_a_jpeg_is_told_the_unknown_quality(told, photo, tmp_path):
    result, record = restore(photo, "--model", told, "-o", tmp_path / "o.png")
    assert record["told_jpeg_quality"] == UNKNOWN_JPEG_QUALITY
    assert record["told_jpeg_quality_from"] == "unknown"
    assert "the middle of the trained range" in result.stderr


def test_the_option_overrides_and_the_model_hears_it(told, photo, tmp_path):
    source = _jpeg(photo, tmp_path / "web.jpg", 30)
    outputs = {}
    for quality in (10, 90):
        out = tmp_path / f"q{quality}.png"
        _, record = restore(source, "--model", told, "--jpeg-quality", quality, "-o", out)
        assert (record["told_jpeg_quality"], record["told_jpeg_quality_from"]) == (
            quality,
            "option",
        )
        outputs[quality] = read_pixels(out)
    assert not np.array_equal(outputs[10], outputs[90])
    refused = CliRunner().invoke(app, ["restore", str(source), "--jpeg-quality", "0"])
    assert refused.exit_code == 2 and "--jpeg-quality takes" in refused.stderr


def test_a_blind_model_is_told_nothing(photo, tmp_path):
    blind = make_checkpoint(tmp_path / "blind.safetensors", task="jpeg", cond_x1=True)
    source = _jpeg(photo, tmp_path / "web.jpg", 30)
    result, record = restore(source, "--model", blind, "-o", tmp_path / "o.png")
    assert record["told_jpeg_quality"] is None and record["jpeg_quality"] == 30
    assert "told JPEG" not in result.stderr and "JPEG quality 30" in result.stderr


def test_the_api_tells_a_jpeg_images_quality_as_the_command_does(told, photo, tmp_path):
    source = _jpeg(photo, tmp_path / "web.jpg", 30)
    out = tmp_path / "cli.png"
    restore(source, "--model", told, "-o", out)
    pipeline = i2sb.load(str(told), device="cpu")
    with Image.open(source) as image:
        restored = pipeline.restore(image, name="web.jpg")
    assert np.array_equal(np.asarray(restored.convert("RGB")), read_pixels(out))
    with Image.open(source) as image:
        louder = pipeline.restore(image, name="web.jpg", jpeg_quality=90)
    assert not np.array_equal(np.asarray(louder.convert("RGB")), read_pixels(out))


@pytest.mark.slow  # an ONNX export: about 50 s on a busy 2-core machine
def test_onnx_runtime_hears_the_quality_as_torch_does(told, photo, tmp_path):
    source = _jpeg(photo, tmp_path / "web.jpg", 30)
    pixels = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.png"
        command = ["restore", str(source), "--model", str(told), "--backend", backend]
        result = CliRunner().invoke(app, [*command, "--jpeg-quality", "20", "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        pixels[backend] = read_pixels(out).astype(int)
    assert np.abs(pixels["torch"] - pixels["onnxruntime"]).max() <= 2
