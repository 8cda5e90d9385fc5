"""Side-by-side grids of restorations (evaluation/compare.py)."""

import shutil
from pathlib import Path

import pytest
from helpers import write_picture
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import UsageError
from i2sb_cli.evaluation.compare import comparison_grid, row_tiles
from i2sb_cli.evaluation.metrics import PSNR_CAP
from i2sb_cli.evaluation.score import read_manifest


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A degrade folder of two 32x24 pictures, sr4x-bicubic."""
    root = tmp_path_factory.mktemp("pairs")
    for seed, name in enumerate("ab"):
        write_picture(root / "clean" / f"{name}.png", (32, 24), seed=seed)
    args = ["degrade", str(root / "clean"), "-o", str(root / "deg"), "--task", "sr4x-bicubic"]
    assert CliRunner().invoke(app, args).exit_code == 0
    return root / "deg"


def test_grid_has_a_row_per_picture_and_a_column_per_method(pairs: Path, tmp_path: Path) -> None:
    # A "restoration" that is the original itself scores the PSNR cap in its tile.
    perfect = tmp_path / "perfect"
    for record in read_manifest(pairs):
        (perfect / record.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.clean, perfect / record.name)
    grid = comparison_grid(pairs, [("perfect", perfect), ("again", perfect)], tile_width=64)
    # input | bicubic | perfect | again | original; 32x24 pictures are 48 px tall at width 64.
    assert grid.size == (5 * 64, 2 * 48)
    one = comparison_grid(pairs, [("perfect", perfect)], names=["b.png"], crop=16, tile_width=64)
    assert one.size == (4 * 64, 64)
    tiles = row_tiles(read_manifest(pairs)[0], [("perfect", perfect)])
    assert [t.label for t in tiles] == ["input", "bicubic", "perfect", "original"]
    assert tiles[2].psnr == PSNR_CAP and tiles[1].psnr < PSNR_CAP and tiles[3].psnr is None
    assert all(t.picture.shape == (1, 3, 24, 32) for t in tiles)


def test_grid_refuses_unknown_pictures_and_missing_restorations(
    pairs: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=r"no picture named nope\.png"):
        comparison_grid(pairs, [], names=["nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no restoration of a\.png"):
        comparison_grid(pairs, [("x", tmp_path / "empty")])


def compare(*args: str | Path):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def test_compare_command_writes_the_grid(pairs: Path, tmp_path: Path) -> None:
    perfect = tmp_path / "perfect"
    for record in read_manifest(pairs):
        (perfect / record.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.clean, perfect / record.name)
    grid = tmp_path / "grid.png"
    result = compare(pairs, "-o", grid, "--column", f"ours={perfect}", "--tile-width", 64)
    assert result.exit_code == 0, result.stderr
    assert Image.open(grid).size == (4 * 64, 2 * 48)
    one = tmp_path / "one.png"
    args = ["--column", f"ours={perfect}", "--names", "b.png", "--crop", 16, "--tile-width", 64]
    result = compare(pairs, "-o", one, *args)
    assert result.exit_code == 0, result.stderr
    assert Image.open(one).size == (4 * 64, 64)
    # A file is a column of one picture: e.g. the samples of `restore --samples`.
    sample = perfect / "b.png"
    result = compare(pairs, "-o", one, "--column", f"s0={sample}", "--column", f"s1={sample}",
                     "--names", "b.png", "--tile-width", 64)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert Image.open(one).width == 5 * 64
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--column", "nolabel"], "LABEL=FOLDER"),
        (["--column", "x=/no/such/folder"], "is neither a folder nor a file"),
        (["--column", f"x={__file__}"], "shows one picture, and 2 are asked for"),
        (["--names", "nope.png"], "no picture named nope.png"),
    ],
)
def test_compare_command_usage_errors(
    pairs: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = compare(pairs, "-o", tmp_path / "grid.png", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "grid.png").exists()


def test_compare_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["compare", "--help"])
    assert result.exit_code == 0
    assert "i2sb compare pairs/ -o grid.png --column" in result.stdout
