"""The Python API (i2sb_cli.api): the same pixels as `i2sb restore`, from PIL, NumPy and torch."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, make_checkpoint, make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

import i2sb_cli as i2sb
from i2sb_cli.cli.app import app
from i2sb_cli.errors import ImageError, ModelNotFoundError, UsageError
from i2sb_cli.pictures.files import pixel_levels, read_image


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random model of each family."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "sr4x": make_checkpoint(folder / "tiny-sr4x.safetensors"),
        "deblur": make_checkpoint(folder / "tiny-deblur.safetensors", task="blur-uni"),
        "jpeg": make_checkpoint(folder / "tiny-jpeg.safetensors", task="jpeg-10"),
        "inpaint": make_inpaint_checkpoint(folder / "tiny-inpaint.safetensors"),
    }


def _hole(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:12, 3:11] = 255
    return mask


def _command(tmp_path: Path, model: Path, *args: str | Path) -> np.ndarray:
    """What `i2sb restore photo.png --seed 3 ARGS` writes, as uint8 pixels."""
    source = write_picture(tmp_path / "photo.png", 8 if "sr4x" in model.name else 16, seed=4)
    target = tmp_path / "out.png"
    command = ["restore", "--backend", "torch", source, "--model", model, "--seed", "3"]
    result = CliRunner().invoke(app, [*map(str, command), *map(str, args), "-o", str(target)])
    assert result.exit_code == 0, result.stderr
    return read_pixels(target)


@pytest.mark.parametrize("family", ["sr4x", "deblur", "jpeg", "inpaint"])
def test_the_api_restores_the_pixels_the_command_writes(tmp_path, models, family):
    model = models[family]
    extra: list[str | Path] = []
    masks: list[object] = [None] * 3
    if family == "inpaint":
        Image.fromarray(_hole()).save(tmp_path / "mask.png")
        extra = ["--mask", tmp_path / "mask.png"]
        masks = [Image.open(tmp_path / "mask.png"), _hole(), torch.from_numpy(_hole() > 0)]
    expected = _command(tmp_path, model, *extra)
    r = i2sb.load(model, device="cpu")
    assert r.family == family
    source = tmp_path / "photo.png"

    from_pil = r.restore(Image.open(source), seed=3, name="photo.png", mask=masks[0])
    assert isinstance(from_pil, Image.Image)
    assert np.array_equal(np.asarray(from_pil.convert("RGB")), expected)

    from_numpy = r.restore(read_pixels(source), seed=3, name="photo.png", mask=masks[1])
    assert from_numpy.dtype == np.uint8 and np.array_equal(from_numpy, expected)

    pixels = read_image(source).pixels  # [1, 3, H, W] in [-1, 1], as the command reads it
    from_torch = r.restore(pixels, seed=3, name="photo.png", mask=masks[2])
    assert isinstance(from_torch, torch.Tensor) and from_torch.shape[0] == 1
    assert np.array_equal(pixel_levels(from_torch), expected)
    assert r.restore(pixels[0], seed=3, name="photo.png", mask=masks[2]).dim() == 3


def test_a_jpeg_pillow_opened_is_kept_near_its_file_as_the_command_keeps_it(tmp_path, models):
    """The coding of the JPEG image given travels with it (the PNG the API reads it through
    cannot hold it), so that the API keeps the result near the file as restore does."""
    source = tmp_path / "photo.jpg"
    Image.open(write_picture(tmp_path / "p.png", 24, seed=4)).save(source, quality=40)
    r = i2sb.load(models["jpeg"], device="cpu")
    for flags, bins in (([], True), (["--no-jpeg-bins"], False)):
        command = ["restore", "--backend", "torch", source, "--model", models["jpeg"], "--seed", 3]
        target = tmp_path / f"out-{bins}.png"
        result = CliRunner().invoke(app, [*map(str, command), *flags, "-o", str(target)])
        assert result.exit_code == 0, result.stderr
        restored = r.restore(Image.open(source), seed=3, name="photo.jpg", jpeg_bins=bins)
        assert np.array_equal(np.asarray(restored.convert("RGB")), read_pixels(target))
    assert not np.array_equal(read_pixels(tmp_path / "out-True.png"),
                              read_pixels(tmp_path / "out-False.png"))  # fmt: skip


def test_float_arrays_come_back_as_floats(tmp_path, models):
    picture = read_pixels(write_picture(tmp_path / "p.png", 16, seed=1))
    r = i2sb.load(models["jpeg"], device="cpu")
    levels = r.restore(picture, seed=5)
    floats = r.restore(picture.astype(np.float32) / 255, seed=5)
    assert floats.dtype == np.float32 and floats.shape == picture.shape
    assert floats.min() >= 0 and floats.max() <= 1
    # The same picture up to float rounding of its input: at most one level apart.
    assert np.abs(np.round(floats * 255) - levels.astype(float)).max() <= 1


def test_several_pictures_at_once_restore_as_each_alone(tmp_path, models):
    r = i2sb.load(models["sr4x"], device="cpu")
    pictures = [read_pixels(write_picture(tmp_path / f"{i}.png", size, seed=i))
                for i, size in enumerate((8, 8, (8, 12)))]  # fmt: skip
    names = ["a.png", "b.png", "c.png"]
    together = r.restore(pictures, seed=2, name=names, batch_size=2)
    alone = [r.restore(p, seed=2, name=n) for p, n in zip(pictures, names, strict=True)]
    assert [t.shape for t in together] == [(32, 32, 3), (32, 32, 3), (48, 32, 3)]
    assert all(np.array_equal(t, a) for t, a in zip(together, alone, strict=True))
    # One name for a list: the i-th picture is stem-i.
    assert np.array_equal(r.restore(pictures, seed=2, name="x.png")[1], r.restore(
        pictures[1], seed=2, name="x-1.png"))  # fmt: skip


def test_samples_are_k_different_restorations(tmp_path, models):
    picture = Image.open(write_picture(tmp_path / "p.png", 8, seed=3))
    r = i2sb.load(models["sr4x"], device="cpu")
    samples = r.samples(picture, 3, seed=1)
    arrays = [np.asarray(s) for s in samples]
    assert len(arrays) == 3 and all(a.shape == (32, 32, 3) for a in arrays)
    assert all(not np.array_equal(arrays[i], arrays[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    # Sample 0 is the picture's single stochastic restoration, as with --samples.
    assert np.array_equal(arrays[0], np.asarray(r.restore(picture, seed=1, ot_ode=False)))
    # A model trained for the OT-ODE alone refuses the stochastic sampler, as restore does.
    inpaint = i2sb.load(models["inpaint"], device="cpu")
    with pytest.raises(UsageError, match="OT-ODE"):
        inpaint.samples(np.zeros((16, 16, 3), np.uint8), 2, mask=_hole())


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_bad_inputs_raise_one_line_errors(models):
    r = i2sb.load(models["jpeg"], device="cpu")
    grey = np.zeros((16, 16), np.uint8)
    with pytest.raises(UsageError) as error:
        r.restore(grey)
    assert "H x W x 3" in _one_line(error)
    with pytest.raises(ImageError) as error:
        r.restore(np.zeros((16, 16, 3), np.int32))
    assert "int32" in _one_line(error)
    with pytest.raises(ImageError) as error:
        r.restore(np.full((16, 16, 3), 2.0))
    _one_line(error)
    with pytest.raises(UsageError) as error:
        r.restore(torch.zeros(2, 3, 16, 16))
    _one_line(error)
    with pytest.raises(UsageError) as error:
        r.restore("photo.png")
    _one_line(error)
    with pytest.raises(UsageError) as error:
        r.restore(np.zeros((16, 16, 3), np.uint8), mask=_hole())
    assert "inpainting" in _one_line(error)
    with pytest.raises(UsageError) as error:
        r.restore(np.zeros((16, 16, 3), np.uint8), nfe=1000)
    _one_line(error)
    inpaint = i2sb.load(models["inpaint"], device="cpu")
    with pytest.raises(ImageError) as error:
        inpaint.restore(np.zeros((16, 16, 3), np.uint8), mask=_hole(8))
    assert "8x8" in _one_line(error) and "16x16" in str(error.value)
    with pytest.raises(UsageError) as error:
        inpaint.restore(np.zeros((16, 16, 3), np.uint8))
    assert "mask" in _one_line(error)
    with pytest.raises(ModelNotFoundError) as error:
        i2sb.load("no-such-model-anywhere")
    _one_line(error)


def test_the_sampler_and_schedule_are_importable_for_research():
    assert callable(i2sb.bridge.sample) and callable(i2sb.bridge.make_schedule)
    assert callable(i2sb.bridge.nfe_steps)
    assert i2sb.Pipeline.__name__ == "Pipeline"


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, worktree_weights):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using i2sb from Python", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
