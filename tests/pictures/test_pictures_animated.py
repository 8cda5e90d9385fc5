"""Pictures that would lose data or flood the log (issue 16): animated GIF and WebP files, and
a decompression bomb's error in `i2sb degrade`."""

import json
import struct
import zlib
from pathlib import Path

import pytest
from helpers import make_checkpoint
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import ImageError
from i2sb_cli.pictures.files import read_image


def _animation(path: Path) -> Path:
    frames = [Image.new("RGB", (16, 12), colour) for colour in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_pictures_are_refused_not_cut_to_one_frame(tmp_path, suffix):
    animated = _animation(tmp_path / f"anim{suffix}")
    with pytest.raises(ImageError, match=r"animated (GIF|WebP) of 3 frames"):
        read_image(animated)
    still = tmp_path / f"still{suffix}"
    Image.new("RGB", (16, 12), "red").save(still)
    assert read_image(still).size == (12, 16)


def test_a_tiff_of_several_pages_is_refused_not_cut_to_its_first(tmp_path):
    paged = _animation(tmp_path / "scan.tif")
    with pytest.raises(ImageError, match=r"a TIFF of 3 pages.*split the pages"):
        read_image(paged)
    one = tmp_path / "one.tif"
    Image.new("RGB", (16, 12), "red").save(one)
    assert read_image(one).size == (12, 16)


def test_restore_reports_an_animation_and_goes_on(tmp_path):
    model = make_checkpoint(tmp_path / "tiny.safetensors")
    (tmp_path / "in").mkdir()
    animated = _animation(tmp_path / "in" / "anim.webp")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "in" / "still.png")
    args = ["restore", str(tmp_path / "in"), "--model", str(model), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--nfe", "1", "--json", "--backend", "torch"])
    assert result.exit_code == 1
    statuses = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert statuses["still.png"]["status"] == "restored"
    assert statuses[animated.name]["status"] == "failed"
    assert "animated WebP of 3 frames" in statuses[animated.name]["error"]


def _bomb_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces width x height pixels, with a scrap of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1000))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_degrade_reports_a_decompression_bomb_in_one_line(tmp_path):
    bomb = _bomb_header(tmp_path / "a-rather-long-name-for-a-bomb.png", 40_000, 40_000)
    args = ["degrade", str(bomb), "-o", str(tmp_path / "out"), "--task", "blur-gauss-plain"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    (line,) = [text for text in result.stderr.splitlines() if "bomb" in text]
    assert line.startswith("failed") and bomb.name in line and "--max-pixels" in line


def test_a_dry_run_says_a_decompression_bomb_would_be_refused(tmp_path):
    bomb = _bomb_header(tmp_path / "bomb.png", 40_000, 40_000)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "fine.png")
    model = make_checkpoint(tmp_path / "tiny.safetensors")
    args = ["restore", str(bomb), str(tmp_path / "fine.png"), "--model", str(model), "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    (line,) = [text for text in result.stderr.splitlines() if "bomb.png" in text]
    assert "would refuse" in line and "1,600,000,000 pixels" in line and "--max-pixels" in line
    assert "1 to restore, 0 to skip, 1 to refuse" in result.stderr
