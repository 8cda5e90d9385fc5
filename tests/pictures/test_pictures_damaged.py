"""Reading and writing when things go wrong: damaged, empty, lying and huge files; failed and
interrupted writes. Every failure is an ImageError (or a UsageError for a bad option) that
names the file and says why, and no write leaves a partial file behind."""

import io
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from i2sb_cli.errors import ImageError, UsageError
from i2sb_cli.pictures import files as images
from i2sb_cli.pictures.files import default_max_pixels, encode_image, read_image, write_image


def _rgb8(height: int = 12, width: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _levels(pixels: torch.Tensor, top: int) -> np.ndarray:
    return ((pixels[0].permute(1, 2, 0).numpy() + 1) / 2 * top).round().astype(np.int64)


def _wide_png() -> bytes:
    """A 16-bit colour PNG, which OpenCV decodes."""
    ok, data = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint16))
    assert ok
    return data.tobytes()


def _encoded(fmt: str, rgb: np.ndarray | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_rgb8(64, 64) if rgb is None else rgb).save(buffer, fmt)
    return buffer.getvalue()


# --- failures ------------------------------------------------------------------------------


def test_unreadable_files_raise_image_error_saying_why(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("hello, not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(_encoded("PNG")[: len(_encoded("PNG")) // 2])
    (tmp_path / "cut.jpg").write_bytes(_encoded("JPEG")[:300])
    (tmp_path / "cut.webp").write_bytes(_encoded("WEBP")[:200])
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "cut16.png").write_bytes(_wide_png()[:-20])
    expected = {
        "text.png": "not a JPEG, PNG, WebP, TIFF or BMP picture",
        "empty.jpg": "the file is empty",
        "cut.png": "damaged or truncated PNG data",
        "cut.jpg": "damaged or truncated JPEG data",
        "cut.webp": "damaged or truncated WebP data",
        "cut16.png": "damaged or truncated PNG data",
        "missing.png": "no such file",
        "folder.png": "it is a folder",
    }
    for name, why in expected.items():
        with pytest.raises(ImageError, match=re.escape(f"cannot read {tmp_path / name}: {why}")):
            read_image(tmp_path / name)


def test_damaged_16bit_png_is_reported_quietly(tmp_path: Path, capfd) -> None:
    damaged = bytearray(_wide_png())
    damaged[60] ^= 0xFF  # inside the pixel data: a CRC mismatch
    with pytest.raises(ImageError, match="damaged"):
        read_image("damaged.png", data=bytes(damaged))
    assert capfd.readouterr().err == ""  # no libpng or OpenCV chatter on stderr


def test_lying_extension_is_read_by_content(tmp_path: Path) -> None:
    rgb = _rgb8()
    (tmp_path / "really-a-png.jpg").write_bytes(_encoded("PNG", rgb))
    (tmp_path / "really-a-jpeg.png").write_bytes(_encoded("JPEG", rgb))
    picture = read_image(tmp_path / "really-a-png.jpg")
    assert np.array_equal(_levels(picture.pixels, 255), rgb)  # lossless: it was a PNG
    assert read_image(tmp_path / "really-a-jpeg.png").size == (12, 17)


def test_bytes_are_read_like_a_file(tmp_path: Path) -> None:
    rgb = _rgb8()
    picture = read_image("stdin", data=_encoded("PNG", rgb))
    assert np.array_equal(_levels(picture.pixels, 255), rgb)
    assert picture.path == Path("stdin")
    with pytest.raises(ImageError, match="cannot read stdin: the file is empty"):
        read_image("stdin", data=b"")


def test_only_the_listed_formats_are_decoded(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()).save(tmp_path / "x.ppm")
    with pytest.raises(ImageError, match="not a JPEG, PNG"):
        read_image(tmp_path / "x.ppm")
    Image.fromarray(_rgb8()).save(tmp_path / "x.gif")
    assert read_image(tmp_path / "x.gif").size == (12, 17)


def test_bomb_guard_stays_on_but_large_pictures_open_quietly(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(_rgb8(40, 40)).save(tmp_path / "large.png")  # over the warning limit
    Image.fromarray(_rgb8(50, 50)).save(tmp_path / "bomb.png")  # over twice the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "large.png").size == (40, 40)
    with pytest.raises(ImageError, match=r"50x50 is 2,500 pixels, over the limit of 2,000"):
        read_image(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own setting is left as it was


def test_max_pixels_raises_or_lowers_the_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(_rgb8(50, 50)).save(tmp_path / "bomb.png")
    assert read_image(tmp_path / "bomb.png", max_pixels=2500).size == (50, 50)
    with pytest.raises(ImageError, match=r"decompression bombs.*--max-pixels 2500"):
        read_image(tmp_path / "bomb.png", max_pixels=2499)
    with pytest.raises(ImageError, match="limit of 100"):
        read_image(tmp_path / "bomb.png", max_pixels=100)
    assert default_max_pixels() == 2000


def test_unknown_extension_and_bad_depth(tmp_path: Path) -> None:
    pixels = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ImageError, match=r"unknown extension; use one of .*\.png"):
        write_image(tmp_path / "x.gif", pixels)
    with pytest.raises(UsageError, match="bit depth"):
        write_image(tmp_path / "x.png", pixels, bit_depth=12)
    with pytest.raises(UsageError, match="quality"):
        write_image(tmp_path / "x.jpg", pixels, quality=0)
    write_image(tmp_path / "x.jpg", pixels, bit_depth=16)  # JPEG is always 8-bit
    assert read_image(tmp_path / "x.jpg").bit_depth == 8
    assert list(tmp_path.iterdir()) == [tmp_path / "x.jpg"]


# --- atomic writes -------------------------------------------------------------------------


def test_write_creates_folders_and_leaves_only_the_result(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.png"
    write_image(target, torch.zeros(1, 3, 4, 4))
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]


def test_failed_encoder_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    seen: list[str] = []

    def broken_save(self, fp, *args, **kwargs) -> None:
        fp.write(b"\x89PNG half a picture")
        seen.extend(p.name for p in tmp_path.iterdir())
        raise OSError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match=r"cannot write .*out\.png: disk on fire"):
        write_image(tmp_path / "out.png", torch.zeros(1, 3, 4, 4))
    # While writing, only a hidden temporary file existed, never the final name.
    assert len(seen) == 1 and re.fullmatch(r"\.out\.png\.[^.]+.*-\d+\.[0-9a-f]+\.tmp", seen[0])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def no_replace(src, dst) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(images.os, "replace", no_replace)
    with pytest.raises(ImageError, match="read-only"):
        write_image(target, torch.zeros(1, 3, 4, 4))
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"previous"


def test_interrupted_write_cleans_up_and_reraises(tmp_path: Path, monkeypatch) -> None:
    def interrupted(self, fp, *args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "out.webp", torch.zeros(1, 3, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_an_image_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "file" / "out.png", torch.zeros(1, 3, 2, 2))


def test_values_are_clamped_and_rounded(tmp_path: Path) -> None:
    levels = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0, float("nan")])
    # 0.4 and 0.6 of a level from 100: rounding, not truncation.
    levels = torch.cat([levels, (torch.tensor([100.4, 100.6]) / 255) * 2 - 1])
    pixels = levels.reshape(1, 1, 1, -1).expand(1, 3, 1, -1)
    write_image(tmp_path / "v.png", pixels)
    with Image.open(tmp_path / "v.png") as out:
        assert np.asarray(out)[0, :, 0].tolist() == [0, 0, 128, 255, 255, 128, 100, 101]


def test_encode_image_gives_the_bytes_write_image_writes(tmp_path: Path) -> None:
    pixels = torch.rand(1, 3, 5, 6) * 2 - 1
    metadata = {"i2sb:seed": "3"}
    for fmt, name in [("PNG", "a.png"), ("JPEG", "a.jpg"), ("TIFF", "a.tif")]:
        write_image(tmp_path / name, pixels, metadata=metadata)
        assert encode_image(fmt, pixels, metadata=metadata) == (tmp_path / name).read_bytes()
