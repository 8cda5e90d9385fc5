"""`i2sb restore --save-trajectory` and `--samples`: looking at the bridge, end to end with a
tiny random checkpoint."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, read_pixels, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.pictures.inputs import InputFile
from i2sb_cli.restore import Job, Restorer, RestoreSettings
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

    restorer = Restorer(
        dataclasses.replace(loaded, denoise=counting),
        RestoreSettings(family="sr4x", nfe=3, **settings),
    )
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
