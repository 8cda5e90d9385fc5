"""`i2sb restore` end to end with tiny random checkpoints and tiny pictures."""

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    make_checkpoint,
    make_inpaint_checkpoint,
    read_pixels,
    tiny_meta,
    tiny_state,
    write_picture,
)
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli import __version__
from i2sb_cli.cli.app import app
from i2sb_cli.degrade import svd_deblur, wiener_deblur
from i2sb_cli.models import registry
from i2sb_cli.models.checkpoint import save_checkpoint
from i2sb_cli.nets.adm import ADMUNet
from i2sb_cli.pictures.files import read_metadata
from i2sb_cli.pictures.inputs import InputFile
from i2sb_cli.restoring.chain import StageSpec, make_stage
from i2sb_cli.restoring.loop import Job, Restorer, RestoreSettings, image_seed
from i2sb_cli.runtime import agreement
from i2sb_cli.runtime.torch_backend import load_torch_model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "sr": make_checkpoint(folder / "tiny-sr4x.safetensors"),
        "inpaint": make_inpaint_checkpoint(folder / "tiny-inpaint.safetensors"),
    }


def restore(*args: str | Path):
    """Run `i2sb restore ARGS` in-process; stdout and stderr come back separately.

    On the torch backend, whose results the tests compute in-process, unless ARGS name another
    (the last --backend counts): the default, auto, would export every model to ONNX."""
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


def _json_records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def _no_temporary_files(*folders: Path) -> bool:
    return not [p for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- folders, outputs, reporting ---------------------------------------------------------------


def test_folder_with_broken_files(tmp_path, models):
    pictures = tmp_path / "in"
    write_picture(pictures / "a.png", 8, seed=1)
    write_picture(pictures / "b.png", 8, seed=2)
    (pictures / "notes.png").write_text("this is text, not a picture\n")
    good = (pictures / "a.png").read_bytes()
    (pictures / "trunc.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"

    result = restore(pictures, "--model", models["sr"], "-o", out, "--nfe", 1)

    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert Image.open(out / "a.png").size == (32, 32)
    for broken in ("notes.png", "trunc.png"):
        lines = _lines_with(result.stderr, broken)
        assert len(lines) == 1, result.stderr
        assert "failed" in lines[0]
    assert "2 restored, 2 failed" in result.stderr
    assert "" not in result.stderr.splitlines()  # no empty line left by the progress bar
    assert _no_temporary_files(pictures, out)


def test_recursive_json_mirrors_subfolders_in_input_order(tmp_path, models):
    pictures = tmp_path / "in"
    write_picture(pictures / "a.png", 8, seed=1)
    (pictures / "b.png").write_text("broken")
    write_picture(pictures / "c.png", 8, seed=3)
    write_picture(pictures / "sub" / "deeper" / "d.png", 8, seed=4)
    out = tmp_path / "out"

    result = restore(pictures, "-r", "--model", models["sr"], "-o", out, "--json", "--nfe", 1)

    assert result.exit_code == 1, result.stderr
    records = _json_records(result)
    # With --batch-size 1 each picture is reported as it is done, in the input order.
    assert [Path(r["input"]).name for r in records] == ["a.png", "b.png", "c.png", "d.png"]
    assert [r["status"] for r in records] == ["restored", "failed", "restored", "restored"]
    assert records[1]["seed"] is None
    assert "cannot read" in records[1]["error"]
    assert records[0]["error"] is None
    assert Path(records[3]["output"]) == out / "sub" / "deeper" / "d.png"
    assert (out / "sub" / "deeper" / "d.png").is_file()
    assert all(isinstance(r["seed"], int) for r in records if r["status"] == "restored")
    assert "{" not in result.stderr  # data only on stdout, messages only on stderr
    assert "restored" in result.stderr

    flat = restore(pictures, "--model", models["sr"], "-o", tmp_path / "flat", "--nfe", 1)
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["a.png", "c.png"]
    assert flat.exit_code == 1


def test_output_file_for_one_input(tmp_path, models):
    source = write_picture(tmp_path / "small.png", 8)
    target = tmp_path / "result" / "big.png"
    result = restore(source, "--model", models["sr"], "-o", target, "--nfe", 1)
    assert result.exit_code == 0, result.stderr
    assert Image.open(target).size == (32, 32)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.png"]


def test_default_output_next_to_input_skips_existing_unless_overwrite(tmp_path, models):
    source = write_picture(tmp_path / "photo.png", 8)
    target = tmp_path / "photo_restored.png"
    first = restore(source, "--model", models["sr"], "--seed", 1)
    assert first.exit_code == 0, first.stderr
    assert target.is_file()
    before = target.read_bytes()

    again = restore(source, "--model", models["sr"], "--seed", 2, "--json")
    assert again.exit_code == 0
    assert target.read_bytes() == before
    lines = _lines_with(again.stderr, "photo.png")
    assert len(lines) == 1
    assert "skipped" in lines[0]
    assert "--overwrite" in lines[0]
    assert [r["status"] for r in _json_records(again)] == ["skipped"]

    forced = restore(source, "--model", models["sr"], "--seed", 2, "--overwrite")
    assert forced.exit_code == 0, forced.stderr
    assert target.read_bytes() != before
    assert read_metadata(target)["i2sb:seed"] == "2"


# --- super-resolution sizes, seeds, batching, tiling -------------------------------------------


def test_sr4x_sizes_small_and_upsampled(tmp_path, models):
    small = write_picture(tmp_path / "small.png", 16)
    result = restore(small, "--model", models["sr"], "-o", tmp_path / "a.png", "--nfe", 1)
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "a.png").size == (64, 64)

    big = write_picture(tmp_path / "big.png", 64)
    result = restore(
        big, "--model", models["sr"], "-o", tmp_path / "b.png", "--upsampled", "--nfe", 1
    )
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "b.png").size == (64, 64)


def test_seeds_and_batch_size_do_not_change_a_pictures_result(tmp_path, models):
    pictures = tmp_path / "in"
    for index, name in enumerate(("a.png", "b.png", "c.png", "e.png")):
        write_picture(pictures / name, 8, seed=index)
    # A picture of another size between them ends a batch early and runs on its own.
    write_picture(pictures / "d.png", (12, 8), seed=9)

    def run(out: str, *options) -> dict[str, np.ndarray]:
        result = restore(
            pictures, "--model", models["sr"], "-o", tmp_path / out, "--stochastic", *options
        )
        assert result.exit_code == 0, result.stderr
        return {p.name: read_pixels(p) for p in sorted((tmp_path / out).iterdir())}

    one = run("one", "--seed", 5, "--batch-size", 1)
    three = run("three", "--seed", 5, "--batch-size", 3)
    again = run("again", "--seed", 5, "--batch-size", 1)
    other = run("other", "--seed", 6, "--batch-size", 3)
    assert one.keys() == three.keys() == {"a.png", "b.png", "c.png", "d.png", "e.png"}
    assert one["d.png"].shape == (32, 48, 3)
    for name in one:
        np.testing.assert_array_equal(one[name], again[name])
        np.testing.assert_array_equal(one[name], three[name])
        assert np.abs(one[name].astype(int) - other[name].astype(int)).max() > 0
    # Different pictures of one batch get different noise (their own generators).
    metadata = read_metadata(tmp_path / "three" / "a.png")
    assert metadata["i2sb:seed"] == "5"
    assert metadata["i2sb:image-seed"] == str(image_seed(5, "a.png"))
    assert metadata["i2sb:sampler"] == "stochastic"
    assert metadata["i2sb:model"] == "tiny-sr4x"
    assert (
        read_metadata(tmp_path / "three" / "b.png")["i2sb:image-seed"]
        != (metadata["i2sb:image-seed"])
    )


def test_detail_zero_gives_the_one_step_picture_and_is_recorded(tmp_path, models):
    source = write_picture(tmp_path / "small.png", 8)
    outputs = {}
    for label, options in {
        "nfe1": ["--nfe", "1"],
        "nfe3-detail0": ["--nfe", "3", "--detail", "0"],
        "nfe3": ["--nfe", "3"],
        "nfe3-detail0.5": ["--nfe", "3", "--detail", "0.5"],
    }.items():
        target = tmp_path / f"{label}.png"
        result = restore(source, "--model", models["sr"], "-o", target, "--seed", "4", *options)
        assert result.exit_code == 0, result.stderr
        outputs[label] = read_pixels(target).astype(int)
    # NFE 1 returns the posterior mean at step 0, whose tiny std_fwd[0] leaves ~1e-4 of x1 in it.
    assert np.abs(outputs["nfe3-detail0"] - outputs["nfe1"]).max() <= 1
    assert not np.array_equal(outputs["nfe3"], outputs["nfe1"])
    halfway = (outputs["nfe3"] + outputs["nfe1"]) / 2
    inside = [(o > 0) & (o < 255) for o in (outputs["nfe3"], outputs["nfe1"])]
    unclipped = inside[0] & inside[1]  # the mix is taken before the clip to 8 bits
    assert unclipped.mean() > 0.5
    assert np.abs(outputs["nfe3-detail0.5"] - halfway)[unclipped].max() <= 1.5
    assert read_metadata(tmp_path / "nfe3-detail0.5.png")["i2sb:detail"] == "0.5"
    assert read_metadata(tmp_path / "nfe3.png")["i2sb:detail"] == "1"
    assert "detail 0.5" in result.stderr


def test_tiles_on_an_upsampled_picture(tmp_path, models):
    source = write_picture(tmp_path / "wide.png", 48)
    result = restore(
        source,
        "--model",
        models["sr"],
        "-o",
        tmp_path / "out.png",
        "--upsampled",
        "--tile",
        16,
        "--tile-overlap",
        4,
        "--nfe",
        1,
    )
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "out.png").size == (48, 48)
    tiles = ["--upsampled", "--tile", 16, "--tile-overlap", 4, "--nfe", 1]
    batched = restore(source, "--model", models["sr"], "-o", tmp_path / "b.png", *tiles,
                      "--tile-batch", 4)  # fmt: skip
    assert batched.exit_code == 0, batched.stderr
    one, four = read_pixels(tmp_path / "out.png"), read_pixels(tmp_path / "b.png")
    assert np.abs(one.astype(int) - four.astype(int)).max() <= 1


def test_task_resolves_the_bundled_model(tmp_path, models, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    model = folder / "tiny-sr4x.safetensors"
    model.write_bytes(models["sr"].read_bytes())
    entry = {
        "name": "tiny-sr4x",
        "file": model.name,
        "family": "sr4x",
        "tasks": ["sr4x-bicubic"],
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "size": model.stat().st_size,
        "licence": "MIT",
        "default_nfe": 2,
        "summary": "test",
    }
    (folder / registry.MANIFEST).write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    registry.bundled_models.cache_clear()
    try:
        source = write_picture(tmp_path / "small.png", 8)
        result = restore(source, "--task", "sr4x", "-o", tmp_path / "out.png", "--nfe", 1)
        assert result.exit_code == 0, result.stderr
        assert "tiny-sr4x" in result.stderr
        missing = restore(source, "--task", "deblur", "-o", tmp_path / "d.png")
        assert missing.exit_code == 1
        assert "--model" in missing.stderr
    finally:
        registry.bundled_models.cache_clear()


def test_sampling_failure_fails_the_whole_batch_and_writes_nothing(tmp_path, models):
    model = load_torch_model(models["sr"], torch.device("cpu"))

    def broken(x_t, n, cond):
        raise RuntimeError("out of memory\nsecond line")

    stage = make_stage(
        dataclasses.replace(model, denoise=broken), StageSpec(task="sr4x", nfe=2), "sr4x"
    )
    restorer = Restorer([stage], RestoreSettings(batch_size=2))
    jobs = [
        Job(InputFile(write_picture(tmp_path / name, 8), Path(name)), tmp_path / "out" / name)
        for name in ("a.png", "b.png", "c.png")
    ]
    outcomes = list(restorer.run(jobs))
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert all(o.message == "sampling failed: out of memory" for o in outcomes)
    assert not (tmp_path / "out").exists()


# --- inpainting --------------------------------------------------------------------------------


def _hole_mask(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:12, 4:12] = 255
    return mask


def test_inpainting_with_mask_file_keeps_known_pixels(tmp_path, models):
    source = write_picture(tmp_path / "plain.png", 16)
    mask_path = tmp_path / "holes.png"
    Image.fromarray(_hole_mask()).save(mask_path)
    target = tmp_path / "out.png"
    result = restore(source, "--model", models["inpaint"], "--mask", mask_path, "-o", target)
    assert result.exit_code == 0, result.stderr
    before, after = read_pixels(source).astype(int), read_pixels(target).astype(int)
    known = _hole_mask() == 0
    assert np.abs(before[known] - after[known]).max() <= 1
    assert np.abs(before[~known] - after[~known]).max() > 0
    assert read_metadata(target)["i2sb:sampler"] == "ot-ode"


def test_inpainting_mask_folder_matches_pictures_by_name(tmp_path, models):
    pictures, masks = tmp_path / "in", tmp_path / "masks"
    write_picture(pictures / "one.png", 16, seed=1)
    write_picture(pictures / "two.png", 16, seed=2)
    masks.mkdir()
    Image.fromarray(_hole_mask()).save(masks / "one.png")
    Image.fromarray(255 - _hole_mask()).save(masks / "two_mask.png")
    out = tmp_path / "out"
    result = restore(pictures, "--model", models["inpaint"], "--mask", masks, "-o", out)
    assert result.exit_code == 0, result.stderr
    known = _hole_mask() == 0
    one = np.abs(read_pixels(pictures / "one.png").astype(int) - read_pixels(out / "one.png"))
    two = np.abs(read_pixels(pictures / "two.png").astype(int) - read_pixels(out / "two.png"))
    assert one[known].max() <= 1
    assert two[~known].max() <= 1
    assert one[~known].max() > 1
    assert two[known].max() > 1


def test_inpainting_mask_from_alpha_and_missing_mask(tmp_path, models):
    pictures = tmp_path / "in"
    rgba = np.asarray(Image.open(write_picture(pictures / "holes.png", 16, mode="RGBA")))
    rgba = rgba.copy()
    rgba[..., 3] = 255 - _hole_mask()  # transparent = hole
    Image.fromarray(rgba, "RGBA").save(pictures / "holes.png")
    write_picture(pictures / "plain.png", 16, seed=2)
    out = tmp_path / "out"

    result = restore(pictures, "--model", models["inpaint"], "-o", out)

    assert result.exit_code == 1
    lines = _lines_with(result.stderr, "plain.png")
    assert len(lines) == 1
    assert "--mask" in lines[0]
    assert not (out / "plain.png").exists()
    after = read_pixels(out / "holes.png").astype(int)
    known = _hole_mask() == 0
    assert np.abs(rgba[..., :3].astype(int)[known] - after[known]).max() <= 1


# --- usage errors, help, version ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--nfe", "0"], "--nfe"),
        (["--nfe", "1000"], "--nfe"),
        (["--detail", "1.5"], "--detail"),
        (["--task", "nope"], "--task"),
        (["--device", "tpu"], "--device"),
        (["--batch-size", "0"], "--batch-size"),
        (["--tile", "17"], "--tile"),
        (["--tile", "16", "--tile-overlap", "16"], "--tile-overlap"),
        (["--task", "inpaint"], "inpaint"),
        (["--mask", "MASK"], "--mask"),
        (["--mask", "absent.png"], "--mask"),
    ],
)
def test_usage_errors(tmp_path, models, options, named):
    source = write_picture(tmp_path / "small.png", 8)
    Image.fromarray(_hole_mask(8)).save(tmp_path / "mask.png")
    options = [str(tmp_path / "mask.png") if o == "MASK" else o for o in options]
    result = restore(source, "--model", models["sr"], *options)
    assert result.exit_code == 2, result.stderr
    assert named in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "small_restored.png").exists()


def test_nfe_beyond_the_models_interval_is_a_usage_error(tmp_path):
    model = make_checkpoint(tmp_path / "short.safetensors", interval=10)
    source = write_picture(tmp_path / "small.png", 8)
    result = restore(source, "--model", model, "--nfe", 10)
    assert result.exit_code == 2, result.stderr
    assert "--nfe" in result.stderr
    assert "interval 10" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, models):
    source = write_picture(tmp_path / "small.png", 8)
    result = restore(source, "--model", models["sr"], "--device", "cuda")
    assert result.exit_code == 2
    assert "--device" in result.stderr


def test_missing_input_is_a_usage_error(tmp_path, models):
    result = restore(tmp_path / "absent.png", "--model", models["sr"])
    assert result.exit_code == 2
    assert "absent.png" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"i2sb {__version__}"


def test_python_dash_m_help():
    done = subprocess.run(
        [sys.executable, "-m", "i2sb_cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "restore" in done.stdout


@pytest.mark.slow
def test_onnxruntime_backend_gives_the_torch_picture_for_the_same_seed(models, tmp_path):
    pytest.importorskip("onnxruntime")
    source = write_picture(tmp_path / "in.png", size=(16, 16))
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        outputs[backend] = tmp_path / f"{backend}.png"
        result = restore(
            source,
            "-o",
            outputs[backend],
            "--model",
            models["sr"],
            "--backend",
            backend,
            "--seed",
            "3",
            "--device",
            "cpu",
        )
        assert result.exit_code == 0, result.stderr
    difference = abs(
        read_pixels(outputs["torch"]).astype(int) - read_pixels(outputs["onnxruntime"])
    )
    assert difference.max() <= 2  # float rounding moves a pixel by a level or two at most


def test_backend_and_precision_errors_are_usage_errors(models, tmp_path):
    source = write_picture(tmp_path / "in.png", size=(16, 16))
    for option, value in (("--backend", "tensorrt"), ("--precision", "fp16")):
        result = restore(
            source,
            "-o",
            tmp_path / "o.png",
            "--model",
            models["sr"],
            "--device",
            "cpu",
            option,
            value,
        )
        assert result.exit_code == 2, result.stderr
        assert option in result.stderr


# --- models that start from the classical restoration ------------------------------------------


@pytest.mark.parametrize(
    ("task", "classical"),
    [("deblur", wiener_deblur), ("blur-gauss", svd_deblur)],
)
def test_classical_start_of_an_untrained_model_is_the_baseline(tmp_path, task, classical):
    """An untrained network outputs zero (ADM's zeroed last layers), so the OT-ODE result is x1
    itself: Wiener deconvolution for a family request (the model's real-world degradation),
    the paper operator's own Tikhonov inverse for a paper task name."""
    checkpoint = _untrained_classical_deblur(tmp_path)
    source = write_picture(tmp_path / "blurry.png", 24)
    target = tmp_path / "out.png"
    result = restore(source, "--model", checkpoint, "--task", task, "--nfe", "2", "-o", target)
    assert result.exit_code == 0, result.stderr
    named = "blur-gauss" if task == "blur-gauss" else "blur-gauss-plain"
    assert f"from the classical restoration of {named}" in result.stderr
    pixels = torch.from_numpy(read_pixels(source).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = ((classical(pixels, "gauss").clamp(-1, 1) + 1) * 127.5).round()
    expected = expected[0].permute(1, 2, 0).numpy()
    assert np.abs(read_pixels(target).astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
    ("task", "model"),
    [("deblur", "deblur-blind"), ("blur-gauss", "deblur-tiny"), ("blur-uni", "deblur-tiny")],
)
def test_deblur_is_blind_and_a_paper_blur_keeps_its_kernels_model(
    tmp_path, worktree_weights, task, model
):
    """--task deblur: a blur of no known kernel, so the blind model from the picture itself; a
    paper task name names its kernel, so deblur-tiny from that kernel's Tikhonov inverse."""
    source = write_picture(tmp_path / "blurry.png", 32)
    target = tmp_path / "out.png"
    result = restore(source, "--task", task, "--nfe", "1", "--backend", "torch", "-o", target)
    assert result.exit_code == 0, result.stderr
    assert read_metadata(target)["i2sb:model"] == model
    classical = f"from the classical restoration of {task}"
    assert (classical in result.stderr) == (task != "deblur")


def _untrained_classical_deblur(folder):
    """A deblur checkpoint that starts from the classical restoration and, untrained, returns it."""
    meta = tiny_meta(
        name="tiny-deblur",
        task="deblur",
        beta_max=1.0,
        ot_ode=True,
        start="classical",
        degradation="blur-gauss-plain",
    )
    checkpoint = folder / "deblur.safetensors"
    save_checkpoint(checkpoint, ADMUNet(meta.config).state_dict(), meta)
    return checkpoint


def test_a_picture_too_wide_for_the_paper_blur_fails_alone(tmp_path):
    """Issue 16: the Tikhonov start of --task blur-gauss needs the SVD of a side x side matrix;
    a 3 x 100,000 strip fails on one line instead of allocating 80 GB, the next picture goes on."""
    checkpoint = _untrained_classical_deblur(tmp_path)
    strip = np.random.default_rng(0).integers(0, 256, (3, 100_000, 3), dtype=np.uint8)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    good = write_picture(tmp_path / "good.png", 24)
    out = tmp_path / "out"
    args = ("--model", checkpoint, "--task", "blur-gauss", "--nfe", "1", "-o", out)
    result = restore(tmp_path / "strip.png", good, *args)
    assert result.exit_code == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "strip.png" in failed[0] and "up to 4096" in failed[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


@pytest.mark.slow
def test_the_default_backend_is_auto_and_the_output_records_it(models, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    # Which runtime is faster is the machine's business (test_agreement.py): fixed here.
    monkeypatch.setattr(
        agreement, "call_ms", lambda model: 2.0 if model.backend == "torch" else 1.0
    )
    source = write_picture(tmp_path / "in.png", size=(16, 16))
    target = tmp_path / "out.png"
    args = ["restore", source, "-o", target, "--model", models["sr"], "--device", "cpu"]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    announced = next(i for i, line in enumerate(lines) if "for ONNX Runtime" in line)
    assert announced < next(i for i, line in enumerate(lines) if "with onnxruntime fp32" in line)
    assert read_metadata(target)["i2sb:backend"] == "onnxruntime fp32"
    torch_run = restore(
        source, "-o", tmp_path / "t.png", "--model", models["sr"], "--device", "cpu"
    )
    assert read_metadata(tmp_path / "t.png")["i2sb:backend"] == "torch fp32"
    assert "with torch fp32" in torch_run.stderr


def test_stochastic_is_refused_for_a_model_trained_for_the_ot_ode_sampler(tmp_path):
    meta = tiny_meta(name="ode", task="blur-gauss", beta_max=1.0, ot_ode=True)
    meta = dataclasses.replace(meta, training={"steps_done": 1, "tasks": ["blur-blind"]})
    checkpoint = tmp_path / "ode.safetensors"
    save_checkpoint(checkpoint, tiny_state(meta), meta)
    source = write_picture(tmp_path / "a.png", 16)
    refused = restore(source, "-o", tmp_path / "s.png", "--model", checkpoint, "--stochastic")
    assert refused.exit_code == 2
    assert "trained for the OT-ODE sampler" in refused.stderr
    assert not (tmp_path / "s.png").exists()
    ode = restore(source, "-o", tmp_path / "o.png", "--model", checkpoint, "--ot-ode")
    assert ode.exit_code == 0, ode.stderr
    both = dataclasses.replace(meta, training={**meta.training, "ot_ode_share": 0.5})
    save_checkpoint(checkpoint, tiny_state(both), both)
    noisy = restore(source, "-o", tmp_path / "s.png", "--model", checkpoint, "--stochastic")
    assert noisy.exit_code == 0, noisy.stderr


def test_a_paper_task_the_model_was_not_trained_on_runs_with_a_note(tmp_path, models):
    source = write_picture(tmp_path / "small.png", (8, 8))
    other = restore(source, "--model", models["sr"], "--task", "sr4x-pool", "--nfe", 1)
    assert other.exit_code == 0, other.stderr
    (note,) = _lines_with(other.stderr, "note:")
    assert "trained on sr4x-bicubic, not sr4x-pool" in note
    same = restore(source, "--model", models["sr"], "--task", "sr4x-bicubic", "--nfe", 1)
    assert same.exit_code == 0, same.stderr
    assert not _lines_with(same.stderr, "note:")
