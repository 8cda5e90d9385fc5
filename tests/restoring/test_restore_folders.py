"""`i2sb restore` over real-world folders and scripts: junk and broken files, reruns after an
interruption, stdin and stdout, JSON records, exit codes, formats, grey, alpha, masks, limits."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.pictures import files as images
from i2sb_cli.pictures.files import read_image


@pytest.fixture(scope="module")
def inpaint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    return make_inpaint_checkpoint(folder / "tiny-inpaint.safetensors", default_nfe=1)


def restore(*args: str | Path, stdin: bytes | None = None):
    """`i2sb restore ARGS` on the torch backend (auto would export each model to ONNX)."""
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)], input=stdin)


def _records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _temporary_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


# --- batches: junk, broken files, reruns -----------------------------------------------------


def test_files_that_are_not_pictures_are_skipped_quietly(tmp_path, sr):
    pictures = tmp_path / "in"
    write_picture(pictures / "a.png", 8)
    write_picture(pictures / "sub" / "b.jpg", 8)
    junk = [".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt", "._a.png", "a.png.xmp"]
    for name in [*junk, "sub/.DS_Store", "sub/README.md"]:
        (pictures / name).write_bytes(b"\x00\x05\x16\x07 not a picture")
    out = tmp_path / "out"

    result = restore(pictures, "-r", "--model", sr, "-o", out, "--nfe", 1)

    assert result.exit_code == 0, result.stderr
    assert "2 restored" in result.stderr and "failed" not in result.stderr
    assert not any(name in result.stderr for name in [*junk, "README"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["a.png", "sub/b.jpg"]


def test_broken_files_are_reported_and_the_batch_goes_on(tmp_path, sr):
    pictures = tmp_path / "in"
    good = write_picture(pictures / "good.png", 8).read_bytes()
    (pictures / "empty.png").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, "JPEG")
    (pictures / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    (pictures / "text.png").write_text("a text file with a picture's name\n")
    (pictures / "lying.jpg").write_bytes(good)  # a PNG under a .jpg name
    out = tmp_path / "out"

    result = restore(pictures, "--model", sr, "-o", out, "--nfe", 1, "--json")

    assert result.exit_code == 1, result.stderr
    status = {Path(r["input"]).name: (r["status"], r["error"]) for r in _records(result)}
    assert status["good.png"] == ("restored", None)
    assert status["lying.jpg"] == ("restored", None)  # read by content, written as its name says
    assert "the file is empty" in status["empty.png"][1]
    assert "damaged or truncated JPEG data" in status["cut.jpg"][1]
    assert "not a JPEG, PNG, WebP, TIFF or BMP picture" in status["text.png"][1]
    assert Image.open(out / "lying.jpg").format == "JPEG"
    for name in ("empty.png", "cut.jpg", "text.png"):
        assert len([line for line in result.stderr.splitlines() if name in line]) == 1


def test_interrupted_run_leaves_whole_files_and_a_rerun_continues(tmp_path, sr, monkeypatch):
    pictures = tmp_path / "in"
    for index, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        write_picture(pictures / name, 8, seed=index)
    out = tmp_path / "out"
    encode, calls = images.encode_picture, []

    def interrupted_on_the_third(file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            file.write(b"\x89PNG half a picture")
            raise KeyboardInterrupt
        encode(file, *args, **kwargs)

    monkeypatch.setattr(images, "encode_picture", interrupted_on_the_third)
    first = restore(pictures, "--model", sr, "-o", out, "--nfe", 1)
    assert first.exit_code == 130
    assert "interrupted" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporary file
    assert read_image(out / "b.png").size == (32, 32)
    written = {name: (out / name).read_bytes() for name in ("a.png", "b.png")}

    monkeypatch.setattr(images, "encode_picture", encode)
    again = restore(pictures, "--model", sr, "-o", out, "--nfe", 1, "--json", "--skip-existing")
    assert again.exit_code == 0, again.stderr
    assert [r["status"] for r in _records(again)] == ["skipped", "skipped", "restored", "restored"]
    assert all(r["error"] is None for r in _records(again))
    assert all((out / name).read_bytes() == data for name, data in written.items())
    assert not _temporary_files(out)


def test_file_names_are_not_rich_markup(tmp_path, sr):
    pictures = tmp_path / "in"
    write_picture(pictures / "photo [edit].png", 8)
    (pictures / "x [bold].png").write_text("broken")
    result = restore(pictures, "--model", sr, "-o", tmp_path / "out", "--nfe", 1)
    assert result.exit_code == 1
    for name in ("photo [edit].png", "x [bold].png"):
        assert len([line for line in result.stderr.splitlines() if name in line]) == 1
    assert (tmp_path / "out" / "photo [edit].png").is_file()


# --- stdin, stdout, JSON, exit codes ---------------------------------------------------------


def test_stdin_to_stdout(tmp_path, sr):
    data = _png_bytes(np.full((8, 8, 3), 120, np.uint8))

    piped = restore("-", "--model", sr, "--nfe", 1, stdin=data)
    assert piped.exit_code == 0, piped.stderr
    with Image.open(io.BytesIO(piped.stdout_bytes)) as picture:
        assert picture.format == "PNG" and picture.size == (32, 32)
    assert "stdout" in piped.stderr

    as_jpeg = restore("-", "--model", sr, "--nfe", 1, "-o", "-", "--format", "jpg", stdin=data)
    assert as_jpeg.exit_code == 0, as_jpeg.stderr
    assert Image.open(io.BytesIO(as_jpeg.stdout_bytes)).format == "JPEG"

    to_folder = restore("-", "--model", sr, "--nfe", 1, "-o", tmp_path / "out", stdin=data)
    assert to_folder.exit_code == 0, to_folder.stderr
    assert read_image(tmp_path / "out" / "stdin.png").size == (32, 32)

    empty = restore("-", "--model", sr, "--nfe", 1, stdin=b"")
    assert empty.exit_code == 1
    assert "cannot read stdin: the file is empty" in empty.stderr


def test_a_file_to_stdout_and_stdout_usage_errors(tmp_path, sr):
    source = write_picture(tmp_path / "photo.jpg", 8)
    result = restore(source, "--model", sr, "--nfe", 1, "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert Image.open(io.BytesIO(result.stdout_bytes)).format == "PNG"

    other = write_picture(tmp_path / "other.png", 8)
    for options in (["-o", "-", "--json"], ["-o", "-", other]):
        refused = restore(source, "--model", sr, *options)
        assert refused.exit_code == 2, refused.stderr
        assert refused.stdout == ""


def test_json_records_name_the_model_exactly(tmp_path, sr):
    source = write_picture(tmp_path / "photo.png", 8)
    result = restore(source, "--model", sr, "--nfe", 1, "--json", "--seed", 3)
    assert result.exit_code == 0, result.stderr
    (record,) = _records(result)
    assert set(record) == {
        "input",
        "output",
        "status",
        "error",
        "seed",
        "seconds",
        "model",
        "model_sha256",
        "samples",
        "outscale",
        "spread_mean",
        "stages",
        "jpeg_quality",
        "told_jpeg_quality",
        "told_jpeg_quality_from",
        "jpeg_slack",
        "mask",
    }
    # One restoration: no samples and no spread (restore --samples K fills them), no resize;
    # no inpainting hole.
    assert record["samples"] == [] and record["spread_mean"] is None
    assert record["outscale"] is None and record["mask"] is None
    (stage,) = record["stages"]
    assert stage["model_sha256"] == record["model_sha256"] and stage["seed"] == record["seed"]
    assert record["model_sha256"] == hashlib.sha256(sr.read_bytes()).hexdigest()
    assert record["output"] == str(tmp_path / "photo_restored.png")
    assert isinstance(record["seed"], int) and record["seconds"] >= 0
    metadata = images.read_metadata(tmp_path / "photo_restored.png")
    assert metadata["i2sb:model-sha256"] == record["model_sha256"]
    assert record["jpeg_quality"] is None and "i2sb:input-jpeg-quality" not in metadata


def test_a_jpeg_inputs_declared_quality_is_reported(tmp_path, same_size):
    source = tmp_path / "web.jpg"
    Image.fromarray(read_pixels(write_picture(tmp_path / "p.png", 16))).save(source, quality=75)
    result = restore(source, "--model", same_size, "--nfe", 1, "--json", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.stderr
    (record,) = _records(result)
    assert record["jpeg_quality"] == 75
    assert images.read_metadata(tmp_path / "out.png")["i2sb:input-jpeg-quality"] == "75"
    line = restore(source, "--model", same_size, "--nfe", 1, "-o", tmp_path / "again.png")
    assert "JPEG quality 75" in line.stderr


def test_exit_codes_are_in_the_help():
    result = CliRunner().invoke(app, ["restore", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes: 0 when every picture was restored or skipped; 1 when some" in text
    assert "2 for a usage error" in text and "130 when interrupted" in text


def test_max_pixels_refuses_or_allows_a_large_picture(tmp_path, sr):
    source = write_picture(tmp_path / "big.png", 16)
    refused = restore(source, "--model", sr, "--nfe", 1, "--max-pixels", 255)
    assert refused.exit_code == 1
    assert "decompression bombs" in refused.stderr and "--max-pixels 256" in refused.stderr
    allowed = restore(source, "--model", sr, "--nfe", 1, "--max-pixels", 256)
    assert allowed.exit_code == 0, allowed.stderr


# --- formats, grey, alpha ---------------------------------------------------------------------


def test_outputs_keep_the_format_and_depth_unless_told(tmp_path, sr):
    pictures = tmp_path / "in"
    for name in ("a.jpg", "b.webp", "c.bmp", "d.tif"):
        write_picture(pictures / name, 8)
    wide = np.random.default_rng(0).integers(0, 65536, (8, 8), dtype=np.uint16)
    Image.fromarray(wide).save(pictures / "e.png")  # 16-bit grey
    kept = restore(pictures, "--model", sr, "-o", tmp_path / "kept", "--nfe", 1)
    assert kept.exit_code == 0, kept.stderr
    formats = {p.name: Image.open(p).format for p in (tmp_path / "kept").iterdir()}
    assert formats == {"a.jpg": "JPEG", "b.webp": "WEBP", "c.bmp": "BMP", "d.tif": "TIFF"} | {
        "e.png": "PNG"
    }
    grey16 = read_image(tmp_path / "kept" / "e.png")
    assert grey16.bit_depth == 16 and grey16.grey and grey16.size == (32, 32)

    as_png = restore(pictures, "--model", sr, "-o", tmp_path / "png", "--format", "PNG", "--nfe", 1)
    assert as_png.exit_code == 0, as_png.stderr
    assert sorted(p.suffix for p in (tmp_path / "png").iterdir()) == [".png"] * 5
    assert read_image(tmp_path / "png" / "e.png").bit_depth == 16

    low = restore(pictures / "a.jpg", "--model", sr, "-o", tmp_path / "low.jpg", "--quality", 20)
    assert low.exit_code == 0, low.stderr
    assert (tmp_path / "low.jpg").stat().st_size < (tmp_path / "kept" / "a.jpg").stat().st_size
    clash = restore(pictures / "a.jpg", "--model", sr, "-o", tmp_path / "x.jpg", "--format", "png")
    assert clash.exit_code == 2 and "--format" in clash.stderr


def test_grey_pictures_stay_grey(tmp_path, sr):
    grey = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey).save(tmp_path / "grey.jpg")
    for name in ("grey.png", "grey.jpg"):
        result = restore(tmp_path / name, "--model", sr, "--nfe", 1)
        assert result.exit_code == 0, result.stderr
        with Image.open(tmp_path / name.replace("grey", "grey_restored")) as out:
            assert out.mode == "L" and out.size == (32, 32), name


def _half_transparent(size: int) -> np.ndarray:
    rgba = np.random.default_rng(2).integers(0, 256, (size, size, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[:, size // 2 :, 3] = 255
    return rgba


def test_alpha_is_interpolated_for_sr4x_and_copied_otherwise(tmp_path, sr, same_size):
    source = tmp_path / "cutout.png"
    Image.fromarray(_half_transparent(8)).save(source)
    bigger = restore(source, "--model", sr, "-o", tmp_path / "sr.png", "--nfe", 1)
    assert bigger.exit_code == 0, bigger.stderr
    alpha = np.asarray(Image.open(tmp_path / "sr.png"))[..., 3]
    assert alpha.shape == (32, 32)
    assert alpha[:, :14].max() == 0 and alpha[:, 18:].min() == 255  # a plain bilinear ramp
    assert 0 < alpha[0, 16] < 255

    same = restore(source, "--model", same_size, "-o", tmp_path / "same.tif", "--nfe", 1)
    assert same.exit_code == 0, same.stderr
    copied = np.asarray(Image.open(tmp_path / "same.tif"))[..., 3]
    assert np.array_equal(copied, _half_transparent(8)[..., 3])


def test_alpha_fails_where_the_format_cannot_hold_it(tmp_path, sr):
    pictures = tmp_path / "in"
    pictures.mkdir()
    Image.fromarray(_half_transparent(8)).save(pictures / "cutout.png")
    write_picture(pictures / "plain.png", 8)
    out = tmp_path / "out"

    first = restore(pictures, "--model", sr, "-o", out, "--format", "jpg", "--nfe", 1, "--json")
    assert first.exit_code == 1, first.stderr
    records = {Path(r["input"]).name: r for r in _records(first)}
    assert records["cutout.png"]["output"] == str(out / "cutout.jpg")
    assert "--background" in records["cutout.png"]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["plain.jpg"]

    again = restore(pictures, "--model", sr, "-o", out, "--format", "jpg", "--nfe", 1, "--json")
    assert [r["status"] for r in _records(again)] == ["failed", "skipped"]


# --- masks ------------------------------------------------------------------------------------


def _mask(level: int, background: int = 0) -> np.ndarray:
    mask = np.full((16, 16), background, np.uint8)
    mask[4:12, 4:12] = level
    return mask


def test_mask_threshold_invert_and_empty_masks(tmp_path, inpaint):
    pictures, masks = tmp_path / "in", tmp_path / "masks"
    for name in ("faint.png", "inverted.png", "blank.png", "small.png"):
        write_picture(pictures / name, 16, seed=len(name))
    masks.mkdir()
    Image.fromarray(_mask(40)).save(masks / "faint.png")  # a hole at 0.16 of white
    Image.fromarray(_mask(0, background=255)).save(masks / "inverted.png")  # black = hole
    Image.fromarray(_mask(0)).save(masks / "blank.png")
    Image.fromarray(_mask(255)[::2, ::2]).save(masks / "small.png")  # half the picture's size
    options = ["--model", inpaint, "--mask", masks, "--json"]

    default = restore(pictures, *options, "-o", tmp_path / "a")
    assert default.exit_code == 1
    errors = {Path(r["input"]).name: r["error"] for r in _records(default)}
    assert "marks no hole" in errors["faint.png"] and "--mask-threshold" in errors["faint.png"]
    assert "marks no hole" in errors["blank.png"]
    assert errors["small.png"] is None  # resized to the picture, not refused
    assert errors["inverted.png"] is None  # not inverted, the white frame is the hole

    lower = restore(pictures / "faint.png", *options, "-o", tmp_path / "b", "--mask-threshold", 0.1)
    assert lower.exit_code == 0, lower.stderr
    changed = read_pixels(tmp_path / "b" / "faint.png") != read_pixels(pictures / "faint.png")
    assert changed.any(axis=2)[4:12, 4:12].all()
    assert not changed.any(axis=2)[_mask(1) == 0].any()

    inverted = restore(pictures / "inverted.png", *options, "-o", tmp_path / "c", "--invert-mask")
    assert inverted.exit_code == 0, inverted.stderr
    changed = read_pixels(tmp_path / "c" / "inverted.png") != read_pixels(pictures / "inverted.png")
    assert changed.any(axis=2)[4:12, 4:12].all()  # inverted: the black square is the hole
    assert not changed.any(axis=2)[_mask(1) == 0].any()


def test_a_mask_file_keeps_the_pictures_own_transparency(tmp_path, inpaint):
    source = tmp_path / "cutout.png"
    Image.fromarray(_half_transparent(16)).save(source)
    Image.fromarray(_mask(255)).save(tmp_path / "mask.png")
    result = restore(source, "--model", inpaint, "--mask", tmp_path / "mask.png")
    assert result.exit_code == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "cutout_restored.png"))
    assert np.array_equal(out[..., 3], _half_transparent(16)[..., 3])


@pytest.mark.parametrize("option", [["--invert-mask"], ["--mask-threshold", "0.3"]])
def test_mask_options_outside_inpainting_are_usage_errors(tmp_path, sr, option):
    source = write_picture(tmp_path / "small.png", 8)
    result = restore(source, "--model", sr, *option)
    assert result.exit_code == 2
    assert option[0] in result.stderr
