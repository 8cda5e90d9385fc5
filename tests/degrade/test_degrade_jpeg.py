"""The JPEG operators: the numerical JPEG against the official outputs and an independent NumPy
construction of the spec's formula; the real JPEG against Pillow."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from i2sb_cli.degrade import jpeg_numerical, jpeg_real, quantisation_tables
from i2sb_cli.degrade.jpeg import CHROMA_TABLE, LUMA_TABLE, estimate_quality


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "corruptions.npz") as data:
        return {k: data[k] for k in ("x0", "jpeg-5", "jpeg-10")}


@pytest.fixture(scope="module")
def photo(golden: dict[str, np.ndarray]) -> torch.Tensor:
    """A 37 x 50 crop of the golden batch: neither side is a multiple of 8."""
    return torch.from_numpy(golden["x0"][:, :, 90:127, 30:80].copy())


def _reference(x: np.ndarray, quality: int) -> np.ndarray:
    """The spec's numerical JPEG for sides that are multiples of 16, written out with NumPy:
    DCT-II from its cosine sum, block by block."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = [
        np.clip(np.floor((scale * np.array(t, dtype=np.float64) + 50) / 100), 1, 255)
        for t in (LUMA_TABLE, CHROMA_TABLE)
    ]
    n = np.arange(8)
    dct = np.sqrt(2 / 8) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 16)
    dct[0] = np.sqrt(1 / 8)
    forward = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]])
    pixels = (x.astype(np.float64) + 1) / 2 * 255
    ycc = np.einsum("ij,bjhw->bihw", forward, pixels)
    ycc[:, 1:] += 128
    planes = [ycc[:, :1], ycc[:, 1:, ::2, ::2]]
    for plane, table in zip(planes, tables, strict=True):
        for r in range(0, plane.shape[-2], 8):
            for c in range(0, plane.shape[-1], 8):
                block = plane[..., r : r + 8, c : c + 8] - 128
                coefficients = np.round(dct @ block @ dct.T / table) * table
                plane[..., r : r + 8, c : c + 8] = dct.T @ coefficients @ dct + 128
    chroma = planes[1].repeat(2, axis=-2).repeat(2, axis=-1)
    decoded = np.concatenate([planes[0], chroma], axis=1)
    decoded[:, 1:] -= 128
    rgb = np.einsum("ij,bjhw->bihw", np.linalg.inv(forward), decoded)
    return rgb / 255 * 2 - 1


@pytest.mark.parametrize("quality", [5, 10])
def test_numerical_jpeg_matches_golden(golden: dict[str, np.ndarray], quality: int) -> None:
    # tests/golden/README.md: 1e-4 on at least 99.9% of values, or everywhere with a float64 DCT
    # (measured here: 4.8e-7 everywhere).
    out = jpeg_numerical(torch.from_numpy(golden["x0"]), quality)
    assert out.dtype == torch.float32
    error = np.abs(out.numpy() - golden[f"jpeg-{quality}"])
    assert (error <= 1e-4).mean() >= 0.999
    assert error.max() <= 1e-4


def test_tables_follow_the_ijg_scaling() -> None:
    luma, chroma = quantisation_tables(50)
    assert luma.tolist() == [list(row) for row in LUMA_TABLE]
    assert chroma.tolist() == [list(row) for row in CHROMA_TABLE]
    assert quantisation_tables(100)[0].eq(1).all()
    assert quantisation_tables(1)[1].eq(255).all()
    luma5, _ = quantisation_tables(5)
    assert luma5[0, 0] == 160 and luma5[0, 2] == 100  # floor((1000 t + 50) / 100)
    with pytest.raises(ValueError):
        quantisation_tables(0)


@pytest.mark.parametrize("quality", [7, 75])
def test_formula_on_a_non_square_multiple_of_16(photo: torch.Tensor, quality: int) -> None:
    x = photo[..., :32, :48].double()
    out = jpeg_numerical(x, quality)
    np.testing.assert_allclose(out.numpy(), _reference(x.numpy(), quality), rtol=0, atol=1e-9)


def test_other_sizes_read_a_mirrored_extension(photo: torch.Tensor) -> None:
    padded = np.pad(photo.numpy(), ((0, 0), (0, 0), (0, 11), (0, 14)), mode="symmetric")
    expected = jpeg_numerical(torch.from_numpy(padded), 10)[..., :37, :50]
    out = jpeg_numerical(photo, 10)
    assert out.shape == photo.shape
    np.testing.assert_array_equal(out.numpy(), expected.numpy())


def test_numerical_jpeg_is_lossy_but_close(photo: torch.Tensor) -> None:
    out = jpeg_numerical(photo, 10)
    assert 0.01 < (out - photo).abs().mean() < 0.2
    grey = photo[:, :1].expand(-1, 3, -1, -1)  # no chroma to decimate
    assert torch.allclose(jpeg_numerical(grey, 100), grey, atol=0.02)


def test_real_jpeg_is_a_pillow_round_trip(photo: torch.Tensor) -> None:
    out = jpeg_real(photo, 30)
    assert out.shape == photo.shape and out.dtype == photo.dtype
    levels = ((photo[1] + 1) / 2 * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="JPEG", quality=30, subsampling=2)
    expected = np.asarray(Image.open(buffer).convert("RGB")).astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)
    assert torch.equal(jpeg_real(photo, 30), out)
    assert out.min() >= -1 and out.max() <= 1


def test_rejects_bad_input(photo: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        jpeg_numerical(photo[:, :1], 10)
    with pytest.raises(ValueError):
        jpeg_real(photo, 101)


@pytest.mark.parametrize("quality", [5, 10, 15, 40, 50, 75, 90, 95, 100])
def test_a_jpeg_files_quality_is_read_back_from_its_tables(quality: int) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    tables = Image.open(buffer).quantization
    assert estimate_quality([tables[k] for k in sorted(tables)]) == (quality, True)
    # OpenCV's libjpeg scales the same tables.
    ok, encoded = cv2.imencode(".jpg", np.asarray(picture), [cv2.IMWRITE_JPEG_QUALITY, quality])
    tables = Image.open(io.BytesIO(encoded.tobytes())).quantization
    assert ok and estimate_quality([tables[k] for k in sorted(tables)]) == (quality, True)


def test_other_encoders_tables_get_the_nearest_quality() -> None:
    luma, chroma = quantisation_tables(60)
    nudged = (luma.flatten() + 1).clamp(max=255).int().tolist()
    assert estimate_quality([nudged, chroma.flatten().int().tolist()]) == (60, False)
    with pytest.raises(ValueError, match="64 entries"):
        estimate_quality([[1, 2, 3]])
