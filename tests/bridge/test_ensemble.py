"""Mirror self-ensemble of a denoiser (bridge/ensemble.py) and `restore --ensemble`."""

import pytest
import torch
from helpers import make_checkpoint, read_pixels, write_picture
from typer.testing import CliRunner

from i2sb_cli.bridge import mirror_ensemble
from i2sb_cli.cli.app import app
from i2sb_cli.pictures.files import read_metadata


def _left_heavy(x_t: torch.Tensor, n: int, cond: torch.Tensor | None) -> torch.Tensor:
    """A denoiser that is not mirror-equivariant: each pixel plus its left neighbour (and cond)."""
    shifted = torch.roll(x_t, shifts=1, dims=-1)
    return x_t + shifted + (0 if cond is None else cond)


def test_one_copy_is_the_denoiser_itself():
    assert mirror_ensemble(_left_heavy, 1) is _left_heavy


def test_two_copies_average_the_picture_and_its_left_right_mirror():
    x, cond = torch.randn(2, 3, 5, 7), torch.randn(2, 3, 5, 7)
    mirrored = torch.flip(_left_heavy(torch.flip(x, (-1,)), 3, torch.flip(cond, (-1,))), (-1,))
    want = (_left_heavy(x, 3, cond) + mirrored) / 2
    assert torch.allclose(mirror_ensemble(_left_heavy, 2)(x, 3, cond), want)
    # Here the neighbour term becomes the mean of the left and right neighbours.
    both = x + (torch.roll(x, 1, -1) + torch.roll(x, -1, -1)) / 2 + cond
    assert torch.allclose(mirror_ensemble(_left_heavy, 2)(x, 3, cond), both, atol=1e-6)


def test_four_copies_average_all_mirrors_and_keep_an_equivariant_denoiser():
    x = torch.randn(1, 3, 4, 6)
    flips = [(), (-1,), (-2,), (-2, -1)]
    want = (
        sum(
            torch.flip(_left_heavy(torch.flip(x, d), 0, None), d) if d else _left_heavy(x, 0, None)
            for d in flips
        )
        / 4
    )
    assert torch.allclose(mirror_ensemble(_left_heavy, 4)(x, 0, None), want)

    def equivariant(x_t, n, cond):
        return 0.5 * x_t

    assert torch.allclose(mirror_ensemble(equivariant, 4)(x, 0, None), 0.5 * x)


def test_other_copy_counts_are_refused():
    with pytest.raises(ValueError, match="copies"):
        mirror_ensemble(_left_heavy, 3)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble")
    return {
        "plain": make_checkpoint(folder / "plain.safetensors", cond_x1=True),
        "two": make_checkpoint(folder / "two.safetensors", cond_x1=True, default_ensemble=2),
    }


def restore(*args):
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def test_restore_ensemble_is_recorded_and_the_models_default_is_used(tmp_path, checkpoints):
    source = write_picture(tmp_path / "in.png", (12, 10))
    outputs = {}
    for label, model, options in [
        ("plain", checkpoints["plain"], ()),
        ("asked", checkpoints["plain"], ("--ensemble", 2)),
        ("default", checkpoints["two"], ()),
        ("overridden", checkpoints["two"], ("--ensemble", 1)),
    ]:
        outputs[label] = tmp_path / f"{label}.png"
        result = restore(source, "--model", model, "--nfe", 2, *options, "-o", outputs[label])
        assert result.exit_code == 0, result.stderr
    ensembles = {label: read_metadata(path)["i2sb:ensemble"] for label, path in outputs.items()}
    assert ensembles == {"plain": "1", "asked": "2", "default": "2", "overridden": "1"}
    announced = restore(source, "--model", checkpoints["two"], "-o", tmp_path / "again.png")
    assert "2 mirror images" in announced.stderr
    # The same weights: --ensemble 2 on the plain model is the two-copy model's default.
    assert (read_pixels(outputs["asked"]) == read_pixels(outputs["default"])).all()
    assert (read_pixels(outputs["plain"]) == read_pixels(outputs["overridden"])).all()
    assert (read_pixels(outputs["plain"]) != read_pixels(outputs["asked"])).any()


def test_restore_refuses_an_ensemble_it_cannot_make(tmp_path, checkpoints):
    source = write_picture(tmp_path / "in.png", 8)
    result = restore(source, "--model", checkpoints["plain"], "--ensemble", 3)
    assert result.exit_code == 2
    assert "--ensemble" in result.stderr and "1, 2, 4" in result.stderr
    assert not (tmp_path / "in_restored.png").exists()
