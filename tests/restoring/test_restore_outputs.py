"""`i2sb restore`'s inputs, outputs and formats: reruns over a folder, --suffix, output-name
templates, --dry-run, transparency (inpainting holes, --background) and compression kept."""

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    make_inpaint_checkpoint,
    read_pixels,
    tiny_meta,
    tiny_state,
    write_picture,
)
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli import restore as restore_command
from i2sb_cli.cli.app import app
from i2sb_cli.models import registry
from i2sb_cli.models.checkpoint import save_checkpoint
from i2sb_cli.pictures.files import read_metadata


@pytest.fixture(scope="module")
def inpaint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    return make_inpaint_checkpoint(
        folder / "tiny-inpaint.safetensors", task="inpaint-freeform1020", default_nfe=1
    )


@pytest.fixture
def no_loading(monkeypatch):
    """Make loading a model fail the test: what it guards must happen before."""

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(restore_command, "load_model", load)


def restore(*args: str | Path):
    """`i2sb restore ARGS` on the torch backend (auto would export each model to ONNX)."""
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _failures(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("failed")]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- reruns: earlier results are not inputs ----------------------------------------------------


def test_a_folder_restored_twice_leaves_out_its_own_results(tmp_path, sr):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8, seed=1)
    write_picture(album / "b.png", 8, seed=2)
    first = restore(album, "--model", sr, "--nfe", 1)
    assert first.exit_code == 0, first.stderr
    assert _files(album) == ["a.png", "a_restored.png", "b.png", "b_restored.png"]

    again = restore(album, "--model", sr, "--nfe", 1, "--json")

    assert again.exit_code == 0, again.stderr
    assert [(Path(r["input"]).name, r["status"]) for r in _records(again)] == [
        ("a.png", "skipped"),
        ("b.png", "skipped"),
    ]
    assert "left out 2 earlier result(s)" in again.stderr
    assert _files(album) == ["a.png", "a_restored.png", "b.png", "b_restored.png"]

    # A result named on the command line is restored: the user asked for it.
    named = restore(album / "a_restored.png", "--model", sr, "--nfe", 1)
    assert named.exit_code == 0, named.stderr
    assert (album / "a_restored_restored.png").is_file()


def test_results_in_the_output_folder_or_with_our_metadata_are_left_out(tmp_path, sr):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8, seed=1)
    inside = restore(album, "-r", "--model", sr, "--nfe", 1, "-o", album / "out")
    assert inside.exit_code == 0, inside.stderr
    x4 = restore(album, "--model", sr, "--nfe", 1, "--suffix", "_x4")
    assert x4.exit_code == 0, x4.stderr
    assert _files(album) == ["a.png", "a_x4.png", "out/a.png"]

    # Another suffix, and the -o folder under the input folder: a_x4.png carries i2sb's
    # metadata, out/a.png lies in the output folder.
    again = restore(album, "-r", "--model", sr, "--nfe", 1, "-o", album / "out", "--json")
    assert again.exit_code == 0, again.stderr
    assert [Path(r["input"]).name for r in _records(again)] == ["a.png"]
    assert "left out 2" in again.stderr

    # A pattern, like a folder, finds pictures; those found here are all results.
    found = [str(album / "*_x4.png"), album / "out"]
    only_results = restore(*found, "--model", sr, "-o", tmp_path / "x")
    assert only_results.exit_code == 2
    assert "nothing to restore" in only_results.stderr
    assert "name files" in only_results.stderr


# --- --suffix and output-name templates -------------------------------------------------------


def test_suffix_names_outputs_beside_inputs_and_in_a_folder(tmp_path, sr):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8)
    beside = restore(album, "--model", sr, "--nfe", 1, "--suffix", "_x4")
    assert beside.exit_code == 0, beside.stderr
    assert (album / "a_x4.png").is_file()
    folder = restore(album, "--model", sr, "--nfe", 1, "--suffix", "_x4", "-o", tmp_path / "out")
    assert folder.exit_code == 0, folder.stderr
    assert _files(tmp_path / "out") == ["a_x4.png"]

    to_a_file = restore(album / "a.png", "--model", sr, "--suffix", "_x", "-o", tmp_path / "f.png")
    assert to_a_file.exit_code == 2
    assert "--suffix" in to_a_file.stderr


def test_output_name_template(tmp_path, sr):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8, seed=1)
    write_picture(album / "sub" / "b.jpg", 8, seed=2)
    template = str(tmp_path / "out" / "{parent}" / "{stem}_x4.{ext}")

    result = restore(album, "-r", "--model", sr, "--nfe", 1, "-o", template)

    assert result.exit_code == 0, result.stderr
    assert _files(tmp_path / "out") == ["a_x4.png", "sub/b_x4.jpg"]
    named = restore(album / "a.png", "--model", sr, "-o", tmp_path / "n" / "{name}.{ext}")
    assert named.exit_code == 0, named.stderr
    assert _files(tmp_path / "n") == ["a.png.png"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{stem}_{size}.png", "{stem}, {ext}, {name}, {parent}"),
        ("{stem", "not a template"),
        ("{stem}_x4", "picture extension"),
        ("same.{ext}", "would both be written"),
    ],
)
def test_template_errors_are_usage_errors_before_anything_runs(
    tmp_path, sr, no_loading, template, message
):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8, seed=1)
    write_picture(album / "b.png", 8, seed=2)
    result = restore(album, "--model", sr, "-o", tmp_path / "out" / template)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_documents_templates_suffix_background_and_dry_run():
    result = CliRunner().invoke(app, ["restore", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("{stem}", "{ext}", "{name}", "{parent}", "--suffix", "--background", "--dry-run"):
        assert text in result.stdout, text


# --- --dry-run ---------------------------------------------------------------------------------


def test_dry_run_lists_the_plan_without_loading_or_writing(tmp_path, sr, no_loading):
    album = tmp_path / "album"
    write_picture(album / "a.png", 8, seed=1)
    write_picture(album / "b.png", 8, seed=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"done before")

    result = restore(album, "--model", sr, "-o", out, "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    records = _records(result)
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [
        ("a.png", "planned"),
        ("b.png", "skipped"),
    ]
    assert records[0]["output"] == str(out / "a.png")
    assert records[0]["model"] == "tiny-sr4x"
    assert "tiny-sr4x (sr4x-bicubic) from" in result.stderr
    assert str(sr) in result.stderr
    assert "would restore" in result.stderr and "would skip" in result.stderr
    assert _files(out) == ["b.png"]


def test_dry_run_checks_and_names_every_stage_of_a_chain(tmp_path, sr, same_size, no_loading):
    source = write_picture(tmp_path / "a.png", 8)
    chain = f"{same_size},{sr}"

    result = restore(source, "--task", "jpeg,sr4x", "--model", chain, "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    assert "stage 1: tiny-jpeg (jpeg-10) from" in result.stderr
    assert "stage 2: tiny-sr4x (sr4x-bicubic) from" in result.stderr
    assert _records(result)[0]["model"] == "tiny-jpeg,tiny-sr4x"
    wrong = restore(source, "--task", "jpeg,deblur", "--model", chain, "--dry-run")
    assert wrong.exit_code == 2
    assert "tiny-sr4x restores sr4x-bicubic pictures, not the deblur family" in wrong.stderr
    assert "would restore" not in wrong.stderr


def test_dry_run_states_how_each_stage_would_sample(tmp_path, sr, same_size, no_loading):
    source = write_picture(tmp_path / "a.png", 8)

    defaults = restore(source, "--model", sr, "--dry-run")
    chosen = restore(
        source, "--task", "jpeg,sr4x", "--model", f"{same_size},{sr}", "--dry-run",
        "--nfe", "3,5", "--detail", "0.5", "--ensemble", "2", "--ot-ode",
    )  # fmt: skip

    assert defaults.exit_code == 0, defaults.stderr
    assert f"tiny-sr4x (sr4x-bicubic) from {sr}, NFE 2, stochastic" in defaults.stderr
    assert chosen.exit_code == 0, chosen.stderr
    assert "stage 1: tiny-jpeg (jpeg-10) from" in chosen.stderr
    assert ", NFE 3, detail 0.5, 2 mirror images, OT-ODE" in chosen.stderr
    assert ", NFE 5, detail 0.5, 2 mirror images, OT-ODE" in chosen.stderr


def test_dry_run_refuses_what_the_run_would_refuse_and_notes_an_untrained_task(
    tmp_path, no_loading
):
    meta = tiny_meta(name="ode", task="blur-gauss", beta_max=1.0, ot_ode=True)
    meta = dataclasses.replace(meta, training={"steps_done": 1, "tasks": ["blur-gauss"]})
    checkpoint = tmp_path / "ode.safetensors"
    save_checkpoint(checkpoint, tiny_state(meta), meta)
    source = write_picture(tmp_path / "a.png", 16)

    refused = restore(source, "--model", checkpoint, "--stochastic", "--dry-run")
    other_task = restore(source, "--model", checkpoint, "--task", "blur-uni", "--dry-run")

    assert refused.exit_code == 2
    assert "trained for the OT-ODE sampler" in refused.stderr
    assert "would restore" not in refused.stderr
    assert other_task.exit_code == 0, other_task.stderr
    assert "note: ode was trained on blur-gauss, not blur-uni" in other_task.stderr
    assert "would restore" in other_task.stderr


def test_dry_run_names_a_model_still_to_download(tmp_path, monkeypatch, no_loading):
    folder = tmp_path / "weights"
    folder.mkdir()
    entry = {
        "name": "far-sr4x",
        "url": "https://example.invalid/far-sr4x.safetensors",
        "sha256": hashlib.sha256(b"x").hexdigest(),
        "size": 1,
        "family": "sr4x",
        "tasks": ["sr4x-bicubic"],
        "licence": "MIT",
        "default_nfe": 2,
        "summary": "test",
    }
    (folder / registry.MANIFEST).write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    monkeypatch.delenv("I2SB_OFFLINE")
    source = write_picture(tmp_path / "a.png", 8)

    result = restore(source, "--model", "far-sr4x", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert "far-sr4x (sr4x), not downloaded yet" in result.stderr
    assert "https://example.invalid/far-sr4x.safetensors" in result.stderr
    assert "would restore" in result.stderr


# --- transparency: inpainting holes, --background ---------------------------------------------


def test_the_readme_inpainting_recipe_fills_the_hole_opaque(tmp_path, inpaint):
    write_picture(tmp_path / "photos" / "p.png", 16)
    runner = CliRunner()
    holes = tmp_path / "holes"
    degraded = runner.invoke(
        app,
        ["degrade", str(tmp_path / "photos"), "-o", str(holes), "--task", "inpaint-freeform1020"],
    )
    assert degraded.exit_code == 0, degraded.stderr
    assert Image.open(holes / "degraded" / "p.png").mode == "RGBA"  # the hole is transparent

    filled = tmp_path / "filled"
    result = restore(
        holes / "degraded", "-o", filled, "--model", inpaint, "--mask", holes / "masks"
    )

    assert result.exit_code == 0, result.stderr
    assert Image.open(filled / "p.png").mode == "RGB"


def test_inpainting_without_any_possible_mask_stops_before_loading(tmp_path, inpaint, no_loading):
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "photo.jpg")
    result = restore(tmp_path / "photo.jpg", "--model", inpaint)
    assert result.exit_code == 2
    assert "inpainting needs a mask" in result.stderr
    assert "--mask" in result.stderr
    assert not (tmp_path / "photo_restored.jpg").exists()


def test_a_picture_without_a_mask_among_others_fails_named_once(tmp_path, inpaint):
    album = tmp_path / "album"
    rgba = _half_transparent(16)
    rgba[:, :4, 3] = 255  # a hole, and something to restore it from
    album.mkdir()
    Image.fromarray(rgba).save(album / "holes.png")
    write_picture(album / "plain.png", 16)
    result = restore(album, "--model", inpaint, "-o", tmp_path / "out")
    assert result.exit_code == 1
    [line] = _failures(result)
    assert line.count("plain.png") == 1
    assert "inpainting needs a mask" in line
    assert _files(tmp_path / "out") == ["holes.png"]


def _half_transparent(size: int) -> np.ndarray:
    rgba = np.random.default_rng(2).integers(0, 256, (size, size, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[:, size // 2 :, 3] = 255
    return rgba


def test_transparency_bound_for_jpeg_needs_a_background(tmp_path, same_size):
    source = tmp_path / "logo.png"
    Image.fromarray(_half_transparent(8)).save(source)
    target = tmp_path / "logo.jpg"

    refused = restore(source, "--model", same_size, "-o", target, "--nfe", 1)

    assert refused.exit_code == 1
    [line] = _failures(refused)
    assert "--background" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logo.png"]

    flattened = restore(source, "--model", same_size, "-o", target, "--background", "white")
    assert flattened.exit_code == 0, flattened.stderr
    with Image.open(target) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
    pixels = read_pixels(target).astype(int)
    assert pixels[:, :2].min() >= 240  # the transparent half is the white under it (JPEG: almost)
    grey = restore(
        source, "--model", same_size, "-o", tmp_path / "g.png", "--background", "#808080"
    )
    assert grey.exit_code == 0, grey.stderr
    assert Image.open(tmp_path / "g.png").mode == "RGB"
    assert np.abs(read_pixels(tmp_path / "g.png")[:, :3].astype(int) - 128).max() <= 1

    bad = restore(source, "--model", same_size, "--background", "nope")
    assert bad.exit_code == 2
    assert "--background" in bad.stderr


# --- compression kept --------------------------------------------------------------------------


def _webp_kind(path: Path) -> bytes:
    """The kind of a WebP's bitstream chunk: b"VP8 " lossy, b"VP8L" lossless."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    start = 12
    while data[start : start + 4] not in (b"VP8 ", b"VP8L"):
        size = int.from_bytes(data[start + 4 : start + 8], "little")
        start += 8 + size + size % 2
    return data[start : start + 4]


def _photo(size: int = 32) -> np.ndarray:
    """A smooth picture, which lossy coders compress far better than lossless ones."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x * 7, y * 7, (x + y) * 3], axis=2).astype(np.uint8)


def test_webp_keeps_lossy_or_lossless_and_quality_overrides(tmp_path, same_size):
    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(_photo()).save(album / "lossy.webp", quality=60)
    Image.fromarray(_photo()).save(album / "lossless.webp", lossless=True)
    out = tmp_path / "out"
    result = restore(album, "--model", same_size, "--nfe", 1, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert _webp_kind(out / "lossy.webp") == b"VP8 "
    assert _webp_kind(out / "lossless.webp") == b"VP8L"
    assert read_metadata(out / "lossy.webp")["i2sb:model"] == "tiny-jpeg"

    told = restore(album, "--model", same_size, "--nfe", 1, "-o", tmp_path / "q", "--quality", 80)
    assert told.exit_code == 0, told.stderr
    assert _webp_kind(tmp_path / "q" / "lossless.webp") == b"VP8 "


@pytest.mark.parametrize("compression", ["tiff_lzw", "raw", "packbits", "tiff_adobe_deflate"])
def test_tiff_keeps_its_compression(tmp_path, same_size, compression):
    source = tmp_path / "scan.tif"
    Image.fromarray(_photo(16)).save(source, compression=compression)
    result = restore(source, "--model", same_size, "--nfe", 1)
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "scan_restored.tif") as image:
        assert image.info["compression"] == compression
        image.load()
    assert read_metadata(tmp_path / "scan_restored.tif")["i2sb:model"] == "tiny-jpeg"


def test_a_tiff_in_a_compression_we_cannot_write_gets_deflate(tmp_path, same_size):
    buffer = io.BytesIO()
    Image.fromarray(_photo(16)).save(buffer, "TIFF", compression="jpeg")
    (tmp_path / "scan.tif").write_bytes(buffer.getvalue())
    result = restore(tmp_path / "scan.tif", "--model", same_size, "--nfe", 1)
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "scan_restored.tif") as image:
        assert image.info["compression"] == "tiff_adobe_deflate"
