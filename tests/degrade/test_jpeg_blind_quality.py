"""The blind JPEG quality estimate from decoded pixels: the quality a picture was compressed at
on textured pictures through Pillow and OpenCV, and None where no JPEG grid is left to see."""

import io

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from i2sb_cli.degrade.jpeg import _zigzag, blind_jpeg_quality

# Measured on these pictures and on nine photos, Pillow and OpenCV alike: exact at every
# quality 10..97 but where libjpeg's tables for neighbouring qualities agree at every measured
# position (49 and 50, 74 and 75 on pictures without fine texture), which puts the estimate 1
# below. Two leaves that margin and still fails a step read at half or double its size.
TOLERANCE = 2


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    """[H, W, 3] uint8: smooth random fields at three scales, discs with sharp edges, noise."""
    generator = torch.Generator().manual_seed(seed)
    field = torch.zeros(1, 3, height, width, dtype=torch.float64)
    for cells, amplitude in ((4, 0.5), (16, 0.25), (64, 0.12)):
        coarse = torch.randn(1, 3, cells, cells, generator=generator, dtype=torch.float64)
        field += amplitude * F.interpolate(coarse, size=(height, width), mode="bicubic")
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    for _ in range(12):
        centre_row, centre_col, radius = torch.rand(3, generator=generator).tolist()
        disc = (rows - centre_row * height) ** 2 + (cols - centre_col * width) ** 2
        inside = (disc < (radius * min(height, width) / 4) ** 2).double()
        colour = torch.rand(3, 1, 1, generator=generator, dtype=torch.float64) * 2 - 1
        field = field * (1 - 0.7 * inside) + 0.7 * inside * colour
    field += 0.03 * torch.randn(field.shape, generator=generator, dtype=torch.float64)
    levels = ((field[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return levels.permute(1, 2, 0).numpy()


def _pillow_jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    """Through Pillow's libjpeg at `quality`, 4:2:0 chroma (its default), and back."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def _opencv_jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    bgr = np.ascontiguousarray(picture[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def _tensor(picture: np.ndarray) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1], the repository's convention."""
    return torch.from_numpy(picture.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """Sides that are not multiples of 8: the partial blocks at the edges are left out."""
    return _textured(250, 301, seed=0)


@pytest.mark.parametrize("quality", [10, 20, 30, 50, 75, 90, 95])
def test_pillow_quality_is_found(picture: np.ndarray, quality: int) -> None:
    estimate = blind_jpeg_quality(_tensor(_pillow_jpeg(picture, quality)))
    assert estimate is not None
    assert abs(estimate - quality) <= TOLERANCE


@pytest.mark.parametrize("quality", [15, 40, 75, 90])
def test_opencv_quality_is_found(quality: int) -> None:
    estimate = blind_jpeg_quality(_tensor(_opencv_jpeg(_textured(256, 256, seed=1), quality)))
    assert estimate is not None
    assert abs(estimate - quality) <= TOLERANCE


def test_batch_of_one_and_single_picture_agree(picture: np.ndarray) -> None:
    pixels = _tensor(_pillow_jpeg(picture, 60))
    assert blind_jpeg_quality(pixels) == blind_jpeg_quality(pixels[0])


def test_never_compressed_is_none(picture: np.ndarray) -> None:
    assert blind_jpeg_quality(_tensor(picture)) is None


def test_resized_after_compression_is_none(picture: np.ndarray) -> None:
    compressed = Image.fromarray(_pillow_jpeg(picture, 50))
    smaller = compressed.resize((271, 225), Image.Resampling.BICUBIC)  # 0.9 of 301 x 250
    assert blind_jpeg_quality(_tensor(np.asarray(smaller))) is None


def test_grid_shifted_after_compression_is_none(picture: np.ndarray) -> None:
    assert blind_jpeg_quality(_tensor(_pillow_jpeg(picture, 50)[3:, 5:])) is None


def test_tiny_picture_is_none() -> None:
    tiny = _pillow_jpeg(_textured(32, 32, seed=2), 30)  # 16 blocks
    assert blind_jpeg_quality(_tensor(tiny)) is None


def test_flat_picture_is_none() -> None:
    flat = _pillow_jpeg(np.full((128, 128, 3), (90, 140, 200), dtype=np.uint8), 30)
    assert blind_jpeg_quality(_tensor(flat)) is None


def test_zigzag_is_libjpegs_natural_order() -> None:
    # jpeg_natural_order (libjpeg jutils.c): the natural index of zigzag position 1, 2, ...
    natural_order = [1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40]
    rows, cols = _zigzag(len(natural_order))
    assert (rows * 8 + cols).tolist() == natural_order


def test_rejects_batches_and_grey_pictures() -> None:
    with pytest.raises(ValueError, match="picture"):
        blind_jpeg_quality(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="picture"):
        blind_jpeg_quality(torch.zeros(1, 64, 64))
