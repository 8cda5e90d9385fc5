"""`i2sb restore --save-trajectory` and `--samples`: looking at the bridge, end to end with a
tiny random checkpoint."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import UsageError
from i2sb_cli.pictures.files import read_metadata
from i2sb_cli.pictures.inputs import InputFile
from i2sb_cli.restoring.chain import StageSpec, make_stage
from i2sb_cli.restoring.loop import Job, Restorer, RestoreSettings, image_seed, sample_seed
from i2sb_cli.runtime.torch_backend import load_torch_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("models") / "tiny-sr4x.safetensors")


def restore(*args: str | Path | int):
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _counted_restore(model: Path, tmp_path: Path, out: str, **settings) -> tuple[int, np.ndarray]:
    """Restore one picture through the library with a denoiser that counts its calls."""
    loaded = load_torch_model(model, torch.device("cpu"))
    calls = []

    def counting(x_t: torch.Tensor, n: int, cond: torch.Tensor | None) -> torch.Tensor:
        calls.append(n)
        return loaded.denoise(x_t, n, cond)

    counted = dataclasses.replace(loaded, denoise=counting)
    stage = make_stage(counted, StageSpec(task="sr4x", nfe=3), "sr4x")
    restorer = Restorer([stage], RestoreSettings(**settings))
    source = InputFile(write_picture(tmp_path / "a.png", 8), Path("a.png"))
    (outcome,) = restorer.run([Job(source, tmp_path / out / "a.png")])
    assert outcome.status == "restored", outcome.message
    return len(calls), read_pixels(tmp_path / out / "a.png")


# --- trajectory ----------------------------------------------------------------------------


def test_trajectory_costs_no_network_call_and_changes_nothing(model: Path, tmp_path: Path):
    plain_calls, plain = _counted_restore(model, tmp_path, "plain")
    calls, pixels = _counted_restore(model, tmp_path, "traced", trajectory=tmp_path / "t")
    assert calls == plain_calls == 3
    np.testing.assert_array_equal(pixels, plain)
    assert {p.name for p in (tmp_path / "t").iterdir()} == {
        "a_trajectory.png",
        "a_trajectory.gif",
    }


def test_save_trajectory_writes_a_strip_and_an_animation_per_picture(model: Path, tmp_path: Path):
    write_picture(tmp_path / "in" / "a.png", 8, seed=1)
    write_picture(tmp_path / "in" / "sub" / "b.png", (12, 8), seed=2)
    traces = tmp_path / "traces"
    result = restore(
        tmp_path / "in", "-r", "--model", model, "-o", tmp_path / "out", "--nfe", 4,
        "--save-trajectory", traces,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = sorted(p.relative_to(traces).as_posix() for p in traces.rglob("*"))
    assert files == [
        "a_trajectory.gif",
        "a_trajectory.png",
        "sub",
        "sub/b_trajectory.gif",
        "sub/b_trajectory.png",
    ]
    # sr4x: the 12x8 picture is sampled at 48x32; x1 and 4 steps in two rows (state, estimate).
    assert Image.open(traces / "sub" / "b_trajectory.png").size == (5 * 48, 2 * 32)
    with Image.open(traces / "sub" / "b_trajectory.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (48, 32)
    assert not [p for p in traces.rglob("*") if p.name.endswith(".tmp")]


# --- several samples -----------------------------------------------------------------------


def _records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_samples_do_not_depend_on_the_batch_size_and_extend_a_single_run(
    model: Path, tmp_path: Path
):
    pictures = tmp_path / "in"
    write_picture(pictures / "a.png", 8, seed=1)
    write_picture(pictures / "b.png", 8, seed=2)

    def run(out: str, *options) -> dict[str, np.ndarray]:
        result = restore(pictures, "--model", model, "-o", tmp_path / out, "--nfe", 2, *options)
        assert result.exit_code == 0, result.stderr
        return {p.name: read_pixels(p) for p in sorted((tmp_path / out).iterdir())}

    single = run("single")
    one = run("one", "--samples", 3, "--batch-size", 1)
    two = run("two", "--samples", 3, "--batch-size", 2)
    assert set(single) == {"a.png", "b.png"}
    assert (
        set(one) == set(two) == {f"{n}_{s}.png" for n in "ab" for s in ("s0", "s1", "s2", "spread")}
    )
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])
    # Sample 0 is the single restoration; the others are drawn with other noise.
    np.testing.assert_array_equal(one["a_s0.png"], single["a.png"])
    assert np.abs(one["a_s1.png"].astype(int) - one["a_s0.png"].astype(int)).max() > 0
    assert one["a_spread.png"].shape == one["a_s0.png"].shape == (32, 32, 3)
    metadata = read_metadata(tmp_path / "one" / "a_s1.png")
    assert metadata["i2sb:image-seed"] == str(sample_seed(0, "a.png", 1))
    assert sample_seed(0, "a.png", 0) == image_seed(0, "a.png")


def test_samples_json_names_the_files_and_the_mean_spread(model: Path, tmp_path: Path):
    source = write_picture(tmp_path / "a.png", 8, seed=1)
    out = tmp_path / "out"
    result = restore(source, "--model", model, "-o", out, "--nfe", 2, "--samples", 2, "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = _records(result)
    assert record["output"] == str(out / "a_spread.png")
    assert record["samples"] == [str(out / "a_s0.png"), str(out / "a_s1.png")]
    assert record["spread_mean"] > 0
    # The spread map is written last: when it exists, a rerun skips the picture.
    again = restore(source, "--model", model, "-o", out, "--nfe", 2, "--samples", 2, "--json")
    assert [r["status"] for r in _records(again)] == ["skipped"]
    # One sample: today's output, no spread.
    single = restore(source, "--model", model, "-o", tmp_path / "one", "--nfe", 1, "--json")
    (record,) = _records(single)
    assert record["samples"] == [] and record["spread_mean"] is None
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["a.png"]


def test_samples_refusals(model: Path, tmp_path: Path):
    source = write_picture(tmp_path / "a.png", 8)

    def refused(*options: str | Path) -> str:
        result = CliRunner().invoke(
            app,
            ["restore", "--backend", "torch", "-", "--nfe", "1", *map(str, options)],
            input=source.read_bytes(),
        )
        assert result.exit_code == 2
        assert "seed 0:" not in result.stderr  # refused before the run's header
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        return error

    out = tmp_path / "out.png"
    assert "needs the stochastic sampler" in refused(
        "--model", model, "--ot-ode", "--samples", 2, "-o", out
    )
    # Refused before the model is even looked for: this one does not exist.
    for options in (["--samples", 2, "-o", "-"], ["--samples", 2]):  # stdin goes to stdout
        error = refused("--model", tmp_path / "missing.safetensors", *options)
        assert "writes several files" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_restorer_needs_a_stage_and_the_stochastic_sampler_for_samples(model: Path):
    loaded = load_torch_model(model, torch.device("cpu"))
    with pytest.raises(ValueError, match="at least one stage"):
        Restorer([])
    stage = make_stage(loaded, StageSpec(task="sr4x", nfe=1), "sr4x", ot_ode=True)
    Restorer([stage])  # one restoration per picture: the OT-ODE gives it
    with pytest.raises(UsageError, match="needs the stochastic sampler"):
        Restorer([stage], RestoreSettings(samples=2))


def test_samples_refuse_files_that_would_coincide(model: Path, tmp_path: Path):
    """Every file of the plan, samples and spread maps included, is checked before the model
    loads: a.jpg and a.png both want out/a_spread.png, and a's sample 0 next to it would be the
    input a_restored_s0.png."""
    write_picture(tmp_path / "in" / "a.png", 8)
    write_picture(tmp_path / "in" / "a.jpg", 8)
    missing = tmp_path / "missing.safetensors"
    result = restore(tmp_path / "in", "-o", tmp_path / "out", "--model", missing, "--samples", 2)
    assert result.exit_code == 2
    assert f"would both be written to {tmp_path / 'out' / 'a_spread.png'}" in result.stderr
    assert not (tmp_path / "out").exists()

    (tmp_path / "in" / "a.jpg").unlink()
    write_picture(tmp_path / "in" / "a_restored_s0.png", 8)
    # Named on the command line: found in the folder, it would be left out as a's earlier result.
    named = [tmp_path / "in" / "a.png", tmp_path / "in" / "a_restored_s0.png"]
    result = restore(*named, "--model", missing, "--samples", 2)
    assert result.exit_code == 2
    assert "would overwrite the input" in result.stderr and "a_restored_s0.png" in result.stderr
    # Distinct names restore: an input called a_s0.png gets a_s0_s0.png, never a's a_s0.png.
    (tmp_path / "in" / "a_restored_s0.png").rename(tmp_path / "in" / "a_s0.png")
    result = restore(tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--nfe", 1,
                     "--samples", 2)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_s0.png", "a_s0_s0.png", "a_s0_s1.png", "a_s0_spread.png", "a_s1.png", "a_spread.png",
    ]  # fmt: skip
