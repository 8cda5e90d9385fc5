"""Habits of other restoration tools in `i2sb restore` (issue 17): --outscale, chained tasks
(--task jpeg,sr4x), --mask-dilate and --mask-feather, masks of another size."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, make_inpaint_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.degrade.masks import dilate_mask
from i2sb_cli.errors import UsageError
from i2sb_cli.models import registry
from i2sb_cli.pictures.files import read_metadata
from i2sb_cli.pictures.resize import resize_pixels
from i2sb_cli.restoring.chain import StageSpec, plan_chain, with_jpeg_cleaning


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "sr": make_checkpoint(folder / "tiny-sr4x.safetensors"),
        "jpeg": make_checkpoint(folder / "tiny-jpeg.safetensors", name="tiny-jpeg", task="jpeg-10"),
        "inpaint": make_inpaint_checkpoint(folder / "tiny-inpaint.safetensors"),
    }


@pytest.fixture
def bundled(models, tmp_path, monkeypatch) -> None:
    """The tiny jpeg and sr4x models as the bundled models of their families."""
    folder = tmp_path / "weights"
    folder.mkdir()
    entries = []
    for key, family, task in (("jpeg", "jpeg", "jpeg-10"), ("sr", "sr4x", "sr4x-bicubic")):
        model = folder / models[key].name
        model.write_bytes(models[key].read_bytes())
        entries.append(
            {
                "name": model.stem,
                "file": model.name,
                "family": family,
                "tasks": [task],
                "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                "size": model.stat().st_size,
                "licence": "MIT",
                "default_nfe": 2,
                "summary": "test",
            }
        )
    (folder / registry.MANIFEST).write_text(json.dumps({"models": entries}))
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    registry.bundled_models.cache_clear()
    yield
    registry.bundled_models.cache_clear()


def restore(*args: str | Path):
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# --- --outscale --------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "size"), [("2", (20, 12)), ("1.5", (15, 9)), ("3", (30, 18))])
def test_outscale_sizes_the_sr4x_result_and_is_recorded(tmp_path, models, scale, size):
    source = write_picture(tmp_path / "small.png", (10, 6))
    target = tmp_path / "out.png"
    options = ("--model", models["sr"], "--nfe", 1, "--outscale", scale, "--json")
    result = restore(source, *options, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert _size(target) == size
    assert read_metadata(target)["i2sb:outscale"] == scale
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["outscale"] == float(scale)


def test_outscale_resizes_the_models_own_result(tmp_path, models):
    source = write_picture(tmp_path / "small.png", (10, 6))
    native, half, four = tmp_path / "native.png", tmp_path / "half.png", tmp_path / "four.png"
    options = ("--model", models["sr"], "--nfe", 1)
    kept = restore(source, *options, "-o", native, "--json")
    assert kept.exit_code == 0, kept.stderr
    assert json.loads(kept.stdout)["outscale"] is None
    assert restore(source, *options, "--outscale", 2, "-o", half).exit_code == 0
    assert restore(source, *options, "--outscale", 4, "-o", four).exit_code == 0
    # The model's own scale is no resize at all; 2x is the 4x result averaged 2 x 2.
    assert np.array_equal(read_pixels(native), read_pixels(four))
    big = torch.from_numpy(read_pixels(native).astype(np.float32)).permute(2, 0, 1)[None]
    expected = resize_pixels(big / 127.5 - 1, (12, 20))
    expected = ((expected[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert np.abs(read_pixels(half) - expected).max() <= 1
    assert "i2sb:outscale" not in read_metadata(native)


def test_outscale_enlarges_other_families(tmp_path, models):
    source = write_picture(tmp_path / "photo.png", (10, 6))
    target = tmp_path / "out.png"
    result = restore(source, "--model", models["jpeg"], "--nfe", 1, "--outscale", 2, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert _size(target) == (20, 12)


@pytest.mark.parametrize("scale", ["0", "-1", "100", "nan"])
def test_bad_outscale_is_a_usage_error(tmp_path, models, scale):
    source = write_picture(tmp_path / "small.png", 8)
    result = restore(source, "--model", models["sr"], "--outscale", scale)
    assert result.exit_code == 2, result.stderr
    assert "--outscale" in result.stderr
    assert not (tmp_path / "small_restored.png").exists()


# --- chains ------------------------------------------------------------------------------------


def test_chain_cleans_then_enlarges_and_records_both_stages(tmp_path, bundled):
    source = write_picture(tmp_path / "web.jpg", (10, 6))
    target = tmp_path / "out.png"
    result = restore(
        source, "--task", "jpeg,sr4x", "--nfe", "1,2", "--json", "--seed", 5, "-o", target
    )
    assert result.exit_code == 0, result.stderr
    assert _size(target) == (40, 24)
    assert "then tiny-sr4x" in result.stderr
    metadata = read_metadata(target)
    assert metadata["i2sb:model"] == "tiny-jpeg,tiny-sr4x"
    assert metadata["i2sb:task"] == "jpeg-10,sr4x-bicubic"
    assert metadata["i2sb:nfe"] == "1,2"
    assert metadata["i2sb:seed"] == "5"
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["model"] == "tiny-jpeg,tiny-sr4x"
    assert [(s["model"], s["nfe"]) for s in record["stages"]] == [
        ("tiny-jpeg", 1),
        ("tiny-sr4x", 2),
    ]
    seeds = [s["seed"] for s in record["stages"]]
    assert seeds[0] == record["seed"] and seeds[0] != seeds[1]
    assert metadata["i2sb:image-seed"] == f"{seeds[0]},{seeds[1]}"
    assert record["model_sha256"] == ",".join(s["model_sha256"] for s in record["stages"])


def test_sr4x_cleans_a_jpeg_first_and_leaves_other_pictures_to_sr4x_alone(tmp_path, bundled):
    """--task sr4x runs the jpeg family's model first on a picture saved as JPEG, at that
    model's defaults (--nfe is the enlarging's), and not at all on a picture that never was a
    JPEG, which comes out as sr4x alone makes it, seed included."""
    folder = tmp_path / "in"
    write_picture(folder / "web.jpg", (10, 6))
    write_picture(folder / "plain.png", (10, 6), seed=1)
    cleaned, plain = tmp_path / "cleaned", tmp_path / "plain"

    result = restore(folder, "--task", "sr4x", "--nfe", 3, "--json", "-o", cleaned)
    alone = restore(folder, "--task", "sr4x", "--nfe", 3, "--no-clean-jpeg", "--json", "-o", plain)

    assert result.exit_code == 0, result.stderr
    assert alone.exit_code == 0, alone.stderr
    assert "on pictures saved as JPEG only" in result.stderr
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    web, png = records["web.jpg"], records["plain.png"]
    assert web["model"] == "tiny-jpeg,tiny-sr4x"
    assert [(s["model"], s["nfe"]) for s in web["stages"]] == [("tiny-jpeg", 2), ("tiny-sr4x", 3)]
    assert web["told_jpeg_quality_from"] == "file"
    assert read_metadata(cleaned / "web.jpg")["i2sb:model"] == "tiny-jpeg,tiny-sr4x"
    assert png["model"] == "tiny-sr4x" and len(png["stages"]) == 1
    assert png["told_jpeg_quality"] is None
    assert read_metadata(cleaned / "plain.png")["i2sb:model"] == "tiny-sr4x"
    by_sr4x_alone = {Path(r["input"]).name: r for r in map(json.loads, alone.stdout.splitlines())}
    assert by_sr4x_alone["web.jpg"]["model"] == "tiny-sr4x"
    # the stage asked for keeps its seed, with or without the cleaning before it
    assert web["seed"] == by_sr4x_alone["web.jpg"]["seed"] == web["stages"][1]["seed"]
    assert np.array_equal(read_pixels(cleaned / "plain.png"), read_pixels(plain / "plain.png"))
    assert not np.array_equal(read_pixels(cleaned / "web.jpg"), read_pixels(plain / "web.jpg"))
    planned = restore(folder, "--task", "sr4x", "--ot-ode", "--dry-run", "-o", tmp_path / "plan")
    assert planned.exit_code == 0, planned.stderr
    assert "stage 1: tiny-jpeg" in planned.stderr
    assert "stochastic, on pictures saved as JPEG only" in planned.stderr  # its own sampler


def test_only_the_sr4x_familys_own_model_gets_a_jpeg_cleaning_first():
    sr4x = [StageSpec("sr4x")]
    assert with_jpeg_cleaning(sr4x) == [StageSpec("jpeg", jpeg_only=True), StageSpec("sr4x")]
    assert with_jpeg_cleaning(plan_chain("sr4x,deblur", None, "4"))[0].jpeg_only
    for kept in (
        [StageSpec("sr4x-bicubic")],  # a paper task says exactly what the input went through
        [StageSpec("sr4x", "my.safetensors")],
        [StageSpec("jpeg"), StageSpec("sr4x")],
        [StageSpec(None, "my.safetensors")],
        [StageSpec("sr4x")] * 4,  # no room for a fifth stage
    ):
        assert with_jpeg_cleaning(kept) == kept


def test_chain_by_models_starts_with_its_first_models_seed(tmp_path, models):
    """--model A,B is a chain too; its first stage samples with the seed the first model
    alone would use, so that adding a stage leaves the first one's noise as it was."""
    source = write_picture(tmp_path / "web.png", 8)
    chained, alone = tmp_path / "chained.png", tmp_path / "alone.png"
    both = f"{models['jpeg']},{models['sr']}"
    result = restore(source, "--model", both, "--nfe", 1, "-o", chained)
    assert result.exit_code == 0, result.stderr
    assert restore(source, "--model", models["jpeg"], "--nfe", 1, "-o", alone).exit_code == 0
    assert _size(chained) == (32, 32)
    first_seed = read_metadata(chained)["i2sb:image-seed"].split(",")[0]
    assert first_seed == read_metadata(alone)["i2sb:image-seed"]
    assert read_metadata(chained)["i2sb:nfe"] == "1,1"  # one --nfe for every stage


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--task", "jpeg,inpaint"], "first stage"),
        (["--task", "jpeg,nope"], "--task"),
        (["--task", "jpeg,sr4x", "--model", "MODEL"], "--model"),
        (["--task", "jpeg,sr4x", "--nfe", "1,2,3"], "--nfe"),
        (["--task", "jpeg,sr4x", "--nfe", "1,x"], "--nfe"),
        (["--task", "jpeg,sr4x,jpeg,sr4x,jpeg"], "at most"),
        (["--task", "jpeg,sr4x", "--outscale", "0"], "--outscale"),
    ],
)
def test_chain_usage_errors(tmp_path, models, options, named):
    source = write_picture(tmp_path / "small.png", 8)
    options = [str(models["sr"]) if o == "MODEL" else o for o in options]
    result = restore(source, *options)
    assert result.exit_code == 2, result.stderr
    assert named in result.stderr
    assert not (tmp_path / "small_restored.png").exists()


def test_plan_chain_reads_one_item_per_stage():
    assert plan_chain("jpeg,sr4x", None, "10,2") == [
        StageSpec("jpeg", None, 10),
        StageSpec("sr4x", None, 2),
    ]
    assert plan_chain("jpeg,sr4x", ",my.safetensors", "5") == [
        StageSpec("jpeg", None, 5),
        StageSpec("sr4x", "my.safetensors", 5),
    ]
    assert plan_chain(None, "a,b", ",3") == [StageSpec(None, "a", None), StageSpec(None, "b", 3)]
    assert plan_chain("sr4x", None, None) == [StageSpec("sr4x", None, None)]
    with pytest.raises(UsageError, match="neither"):
        plan_chain(None, "a,", None)


def test_a_model_file_with_a_comma_is_one_model(tmp_path, models):
    odd = tmp_path / "sr,v2.safetensors"
    odd.write_bytes(models["sr"].read_bytes())
    assert plan_chain(None, str(odd), None) == [StageSpec(None, str(odd), None)]


# --- masks -------------------------------------------------------------------------------------


def _square_hole(size: int, start: int, stop: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[start:stop, start:stop] = 255
    return mask


def _changed(source: Path, target: Path) -> np.ndarray:
    return np.abs(read_pixels(source).astype(int) - read_pixels(target)).max(axis=2) > 0


def test_mask_dilate_grows_the_restored_area(tmp_path, models):
    source = write_picture(tmp_path / "photo.png", 16)
    Image.fromarray(_square_hole(16, 6, 10)).save(tmp_path / "mask.png")
    plain, grown = tmp_path / "plain.png", tmp_path / "grown.png"
    options = ("--model", models["inpaint"], "--mask", tmp_path / "mask.png")
    assert restore(source, *options, "-o", plain).exit_code == 0
    result = restore(source, *options, "--mask-dilate", 2, "-o", grown)
    assert result.exit_code == 0, result.stderr
    hole = torch.from_numpy(_square_hole(16, 6, 10) > 0).float()[None, None]
    dilated = dilate_mask(hole, 2)[0, 0].bool().numpy()
    assert not _changed(source, plain)[~hole[0, 0].bool().numpy()].any()
    assert not _changed(source, grown)[~dilated].any()  # outside the grown hole: untouched
    assert _changed(source, grown).sum() > _changed(source, plain).sum()
    assert _changed(source, grown)[dilated].mean() > 0.9
    assert read_metadata(grown)["i2sb:mask-dilate"] == "2"


def test_mask_feather_fades_the_border_only(tmp_path, models):
    source = write_picture(tmp_path / "photo.png", 16)
    Image.fromarray(_square_hole(16, 3, 13)).save(tmp_path / "mask.png")
    hard, soft = tmp_path / "hard.png", tmp_path / "soft.png"
    options = ("--model", models["inpaint"], "--mask", tmp_path / "mask.png")
    assert restore(source, *options, "-o", hard).exit_code == 0
    assert restore(source, *options, "--mask-feather", 2, "-o", soft).exit_code == 0
    original, hard_pixels, soft_pixels = (
        read_pixels(p).astype(float) for p in (source, hard, soft)
    )
    # Deeper than 2 pixels the restoration is whole; outside the hole the original stays.
    assert np.array_equal(soft_pixels[5:11, 5:11], hard_pixels[5:11, 5:11])
    outside = _square_hole(16, 3, 13) == 0
    assert np.array_equal(soft_pixels[outside], original[outside])
    # The hole's first row mixes 1/3 of the restoration with 2/3 of the original.
    mixed = original[3, 5:11] * 2 / 3 + hard_pixels[3, 5:11] / 3
    assert np.abs(soft_pixels[3, 5:11] - mixed).max() <= 1
    assert read_metadata(soft)["i2sb:mask-feather"] == "2"


def test_mask_of_another_size_is_resized_with_a_note(tmp_path, models):
    source = write_picture(tmp_path / "photo.png", 16)
    small = _square_hole(16, 4, 12)
    Image.fromarray(small).save(tmp_path / "mask.png")
    Image.fromarray(np.repeat(np.repeat(small, 2, 0), 2, 1)).save(tmp_path / "big.png")
    same, resized = tmp_path / "same.png", tmp_path / "resized.png"
    options = ("--model", models["inpaint"])
    assert restore(source, *options, "--mask", tmp_path / "mask.png", "-o", same).exit_code == 0
    result = restore(source, *options, "--mask", tmp_path / "big.png", "-o", resized)
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "resized" in line]
    assert len(notes) == 1 and "32x32" in notes[0] and "16x16" in notes[0]
    assert np.array_equal(read_pixels(same), read_pixels(resized))


def test_mask_options_are_for_inpainting(tmp_path, models):
    source = write_picture(tmp_path / "small.png", 8)
    for option in ("--mask-dilate", "--mask-feather"):
        result = restore(source, "--model", models["sr"], option, 2)
        assert result.exit_code == 2, result.stderr
        assert option in result.stderr
