"""`i2sb degrade` end to end, and the round trip through `i2sb restore`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade import TASK_NAMES, get_operator
from i2sb_cli.pictures.files import read_image, read_mask, read_metadata
from i2sb_cli.restoring.loop import image_seed


def run(*args: str | Path):
    return CliRunner().invoke(app, [*map(str, args)])


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_picture(folder / "a.png", (50, 37), seed=1)
    write_picture(folder / "sub" / "b.png", (33, 40), seed=2)
    return folder


def test_help_lists_every_task() -> None:
    result = run("degrade", "--help")
    assert result.exit_code == 0
    for name in TASK_NAMES:
        assert name in result.output


def test_sr4x_writes_the_low_res_picture_and_a_manifest(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out"
    result = run("degrade", photos, "-r", "-o", out, "--task", "sr4x-bicubic", "--exact")
    assert result.exit_code == 0, result.output
    records = _manifest(out)
    assert [r["name"] for r in records] == ["a.png", "sub/b.png"]
    first = records[0]
    assert first["degraded"] == "degraded/a.png" and first["clean"] == "../photos/a.png"
    assert (first["size"], first["degraded_size"], first["form"]) == ([37, 50], [10, 13], "low-res")
    assert first["image_seed"] == image_seed(0, "a.png") and first["mask"] is None

    clean = read_image(out / first["clean"]).pixels
    expected = get_operator("sr4x-bicubic")(clean).picture
    exact = np.load(out / first["exact"])
    np.testing.assert_allclose(exact, expected[0].numpy(), rtol=0, atol=1e-6)
    # The PNG holds the values rounded to 8 bits.
    levels = ((expected[0].clamp(-1, 1) + 1) / 2 * 255).round().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(read_pixels(out / "degraded" / "a.png"), levels)
    assert read_metadata(out / "degraded" / "a.png")["i2sb:degradation"] == "sr4x-bicubic"

    up = tmp_path / "up"
    assert (
        run("degrade", photos / "a.png", "-o", up, "--task", "sr4x-pool", "--upsampled").exit_code
        == 0
    )
    assert read_pixels(up / "degraded" / "a.png").shape == (37, 50, 3)


def test_exact_values_keep_what_png_clips(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out"
    args = ("degrade", photos / "a.png", "-o", out, "--task", "jpeg-5", "--exact")
    assert run(*args, "--bit-depth", "16").exit_code == 0
    exact = np.load(out / "exact" / "a.npy")
    expected = get_operator("jpeg-5")(read_image(photos / "a.png").pixels).picture[0].numpy()
    np.testing.assert_allclose(exact, expected, rtol=0, atol=1e-6)
    assert read_image(out / "degraded" / "a.png").bit_depth == 16


def test_grey_source_gives_rgb_pairs(tmp_path: Path) -> None:
    write_picture(tmp_path / "grey.png", (20, 24), seed=3, mode="RGB")
    Image.open(tmp_path / "grey.png").convert("L").save(tmp_path / "grey.png")
    out = tmp_path / "out"
    assert run("degrade", tmp_path / "grey.png", "-o", out, "--task", "blur-uni").exit_code == 0
    pixels = read_pixels(out / "degraded" / "grey.png").astype(int)
    assert Image.open(out / "degraded" / "grey.png").mode == "RGB"
    assert (pixels[..., 0] != pixels[..., 1]).any()


def test_same_seed_same_files(tmp_path: Path, photos: Path) -> None:
    outputs = {}
    for name, seed in (("one", 4), ("two", 4), ("three", 5)):
        out = tmp_path / name
        args = ("degrade", photos, "-r", "-o", out, "--task", "inpaint-freeform2030")
        assert run(*args, "--seed", seed).exit_code == 0
        outputs[name] = [(out / "masks" / n).read_bytes() for n in ("a.png", "sub/b.png")]
    assert outputs["one"] == outputs["two"]
    assert outputs["one"] != outputs["three"]


def test_inpainting_round_trip_through_restore(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out"
    result = run("degrade", photos, "-r", "-o", out, "--task", "inpaint-freeform1020")
    assert result.exit_code == 0, result.output
    records = _manifest(out)
    for record in records:
        mask = read_mask(out / record["mask"], tuple(record["size"]))
        assert 0.1 <= mask.mean().item() <= 0.2
        assert record["hole_fraction"] == pytest.approx(mask.mean().item(), abs=1e-6)
        # The hole is white, and transparent so that restore finds it without --mask.
        degraded = read_image(out / record["degraded"])
        assert torch.equal(degraded.alpha < 0.5, mask.bool())
        assert (degraded.pixels * mask).eq(mask).all()

    model = make_inpaint_checkpoint(tmp_path / "tiny-inpaint.safetensors")
    common = ("--task", "inpaint", "--model", model, "--nfe", 1, "-r", "--backend", "torch")
    flagged = run(
        "restore", out / "degraded", "--mask", out / "masks", "-o", tmp_path / "r1", *common
    )
    assert flagged.exit_code == 0, flagged.output
    plain = run("restore", out / "degraded", "-o", tmp_path / "r2", *common)
    assert plain.exit_code == 0, plain.output
    for record in records:
        restored = read_pixels(tmp_path / "r1" / record["name"])
        assert np.array_equal(restored, read_pixels(tmp_path / "r2" / record["name"]))
        # The manifest pairs each restoration with its clean original.
        assert restored.shape == read_pixels(out / record["clean"]).shape


def test_user_masks_from_a_folder(tmp_path: Path, photos: Path) -> None:
    masks = tmp_path / "holes"
    write_picture(masks / "a_mask.png", (50, 37), seed=9)
    write_picture(masks / "sub" / "b.png", (33, 40), seed=8)
    out = tmp_path / "out"
    args = ("degrade", photos, "-r", "-o", out, "--task", "inpaint-mask", "--no-alpha-hole")
    assert run(*args, "--mask", masks).exit_code == 0
    expected = read_mask(masks / "a_mask.png", (37, 50))
    assert torch.equal(read_mask(out / "masks" / "a.png", (37, 50)), expected)
    assert read_image(out / "degraded" / "a.png").alpha is None


def test_usage_errors_and_broken_files(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out"
    assert run("degrade", photos, "-o", out, "--task", "jpeg-0").exit_code == 2
    assert run("degrade", photos, "-o", out, "--task", "inpaint-mask").exit_code == 2
    assert run("degrade", photos, "-o", out, "--task", "blur-uni", "--upsampled").exit_code == 2

    (photos / "broken.png").write_text("not a picture")
    result = run("degrade", photos, "-o", out, "--task", "blur-gauss-plain")
    assert result.exit_code == 1
    assert "broken.png" in result.output
    assert [r["name"] for r in _manifest(out)] == ["a.png"]
    again = run("degrade", photos / "a.png", "-o", out, "--task", "blur-gauss-plain")
    assert again.exit_code == 2 and "--overwrite" in again.output
    args = ("degrade", photos / "a.png", "-o", out, "--task", "blur-uni", "--overwrite")
    assert run(*args).exit_code == 0
    assert _manifest(out)[0]["task"] == "blur-uni"


def test_a_picture_too_wide_for_the_svd_blur_fails_alone(tmp_path: Path, photos: Path) -> None:
    # Issue 16: a 3 x 100,000 strip would need the SVD of a 100,000 x 100,000 matrix (80 GB).
    strip = np.random.default_rng(0).integers(0, 256, (3, 100_000, 3), dtype=np.uint8)
    Image.fromarray(strip).save(photos / "strip.png")
    out = tmp_path / "out"
    result = run("degrade", photos, "-o", out, "--task", "blur-gauss")
    assert result.exit_code == 1
    # The message itself, wherever the console wraps it (one line: issue 16 item 10).
    words = " ".join(result.stderr.split())
    assert "strip.png: blur-gauss: the paper's operator needs the SVD of a 100000 x" in words
    assert "Traceback" not in result.output
    assert [r["name"] for r in _manifest(out)] == ["a.png"]
