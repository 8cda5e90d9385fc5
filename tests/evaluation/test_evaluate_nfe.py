"""`i2sb evaluate --nfe`: quality against NFE with one model load, and its plot."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_checkpoint, read_pixels, tiny_meta, tiny_state, write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny sr4x checkpoint and a degrade folder of two 32x32 pictures."""
    root = tmp_path_factory.mktemp("nfe")
    model = make_checkpoint(root / "tiny-sr4x.safetensors")
    write_picture(root / "clean" / "a.png", 32, seed=1)
    write_picture(root / "clean" / "b.png", 32, seed=2)
    made = CliRunner().invoke(
        app, ["degrade", str(root / "clean"), "-o", str(root / "pairs"), "--task", "sr4x-bicubic"]
    )
    assert made.exit_code == 0, made.stderr
    return model, root / "pairs"


def _evaluate(pairs: tuple[Path, Path], *options: str | Path):
    model, folder = pairs
    command = ["evaluate", str(folder), "--model", str(model), "--backend", "torch"]
    return CliRunner().invoke(app, [*command, "--no-perceptual", *map(str, options)])


def test_nfe_sweep_json_has_each_nfes_pictures_then_means(pairs, tmp_path: Path) -> None:
    result = _evaluate(pairs, tmp_path / "restored", "--nfe", "1,2", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["kind"], x["nfe"]) for x in lines] == [
        ("image", 1), ("image", 1), ("mean", 1), ("image", 2), ("image", 2), ("mean", 2),
    ]  # fmt: skip
    for mean in (lines[2], lines[5]):
        assert mean["count"] == 2 and mean["failed"] == 0
        assert set(mean["psnr"]) == set(mean["ssim"]) == {"restored", "baseline", "degraded"}
        assert mean["seconds_per_picture"] > 0
    # The baseline does not depend on the NFE; the restorations do.
    assert lines[2]["psnr"]["baseline"] == lines[5]["psnr"]["baseline"]
    assert lines[2]["psnr"]["restored"] != lines[5]["psnr"]["restored"]
    assert "NFE 1" in result.stderr and "NFE 2" in result.stderr and "bicubic" in result.stderr


def test_nfe_sweep_restores_as_restore_does(pairs, tmp_path: Path) -> None:
    """The sweep runs the restore code with its seeds: its pictures at NFE 2 are those of
    `restore DIR/degraded -o OUT --nfe 2`, and evaluate scores them alike."""
    model, folder = pairs
    result = _evaluate(pairs, tmp_path / "sweep", "--nfe", "2", "--nfe", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["nfe-1", "nfe-2"]
    restored = CliRunner().invoke(
        app,
        ["restore", str(folder / "degraded"), "-o", str(tmp_path / "by-hand"), "--nfe", "2",
         "--model", str(model), "--backend", "torch"],
    )  # fmt: skip
    assert restored.exit_code == 0, restored.stderr
    for name in ("a.png", "b.png"):
        np.testing.assert_array_equal(
            read_pixels(tmp_path / "sweep" / "nfe-2" / name),
            read_pixels(tmp_path / "by-hand" / name),
        )
    scored = CliRunner().invoke(
        app, ["evaluate", str(folder), str(tmp_path / "by-hand"), "--no-perceptual", "--json"]
    )
    by_hand = json.loads(scored.stdout.splitlines()[-1])
    sweep = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["nfe"] for x in sweep if x["kind"] == "mean"] == [1, 2]  # sorted
    assert sweep[-1]["psnr"] == by_hand["psnr"]


def test_plot_draws_the_curves_into_a_png(pairs, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    figure = tmp_path / "curves.png"
    result = _evaluate(pairs, "--nfe", "1 2", "--plot", figure)
    assert result.exit_code == 0, result.stderr
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width > 2 * image.height > 100
    assert not [p for p in tmp_path.iterdir() if p.name != "curves.png"]


def test_nfe_sweep_usage_errors(pairs, tmp_path: Path, monkeypatch) -> None:
    model, folder = pairs

    def error(*options: str | Path) -> str:
        command = ["evaluate", str(folder), "--no-perceptual", *map(str, options)]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.stderr
        (line,) = result.stderr.splitlines()
        return line

    assert "--plot goes with --nfe" in error(tmp_path, "--plot", tmp_path / "p.png")
    assert "give RESTORED_DIR" in error()
    assert "positive whole numbers" in error("--nfe", "1,x")
    assert "less than the model's interval" in error(
        "--nfe", "1000", "--model", model, "--backend", "torch"
    )
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    missing = error("--nfe", "1", "--model", model, "--plot", tmp_path / "p.png")  # before loading
    assert 'pip install "i2sb[plot]"' in missing
    assert not (tmp_path / "p.png").exists()


def test_the_sweep_refuses_what_restore_refuses(pairs, tmp_path: Path) -> None:
    """The sweep prepares its model as restore does: a model trained for the OT-ODE alone
    refuses --stochastic in both, with the same line."""
    _, folder = pairs
    meta = tiny_meta(ot_ode=True)
    ot_only = dataclasses.replace(meta, training={"steps": 10, "ot_ode_share": 1.0})
    model = tmp_path / "ot-only.safetensors"
    save_checkpoint(model, tiny_state(meta), ot_only)
    swept = _evaluate((model, folder), "--nfe", "2", "--stochastic")
    picture = next((folder / "degraded").iterdir())
    restored = CliRunner().invoke(
        app, ["restore", str(picture), "--model", str(model), "--stochastic", "-o",
              str(tmp_path / "r.png"), "--backend", "torch"],
    )  # fmt: skip
    assert swept.exit_code == restored.exit_code == 2
    assert swept.stderr.splitlines()[-1] == restored.stderr.splitlines()[-1]
    assert "OT-ODE" in swept.stderr
