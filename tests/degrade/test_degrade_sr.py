"""The 4x super-resolution operators against the official outputs and independent formulas."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from i2sb_cli.degrade import (
    bicubic_downsample4,
    nearest_upsample4,
    pool_downsample4,
    sr4x_bicubic,
    sr4x_pool,
)


@pytest.fixture(scope="module")
def corruptions(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "corruptions.npz") as data:
        return {k: data[k] for k in ("x0", "sr4x-pool", "sr4x-bicubic")}


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    return np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )


def _bicubic_reference(x: np.ndarray) -> np.ndarray:
    """The spec's formula in float64, tap by tap: each output sums 16 x 16 reflected inputs."""
    kernel = _keys((np.arange(16) - 7.5) / 4)
    kernel /= kernel.sum()

    def taps(n: int) -> np.ndarray:
        j = 4 * np.arange(-(-n // 4))[:, None] + 2 + np.arange(-8, 8)
        j = np.where(j < 0, -j - 1, j)
        return np.where(j >= n, 2 * n - 1 - j, j)

    rows, cols = taps(x.shape[-2]), taps(x.shape[-1])
    patches = x[..., rows[:, :, None, None], cols[None, None, :, :]]  # [..., h, 16, w, 16]
    return np.einsum("m,n,...pmqn->...pq", kernel, kernel, patches.astype(np.float64))


@pytest.fixture(scope="module")
def photo(corruptions: dict[str, np.ndarray]) -> torch.Tensor:
    """A 70 x 99 crop of the golden batch: neither side is a multiple of 4."""
    return torch.from_numpy(corruptions["x0"][:, :, 37:107, 101:200].copy())


def test_pool_matches_official(corruptions: dict[str, np.ndarray]) -> None:
    out = sr4x_pool(torch.from_numpy(corruptions["x0"]))
    np.testing.assert_allclose(out.numpy(), corruptions["sr4x-pool"], rtol=0, atol=1e-6)


def test_bicubic_matches_official(corruptions: dict[str, np.ndarray]) -> None:
    out = sr4x_bicubic(torch.from_numpy(corruptions["x0"]))
    np.testing.assert_allclose(out.numpy(), corruptions["sr4x-bicubic"], rtol=0, atol=1e-5)


def test_shapes_at_any_size(photo: torch.Tensor) -> None:
    assert pool_downsample4(photo).shape == (2, 3, 18, 25)
    assert bicubic_downsample4(photo).shape == (2, 3, 18, 25)
    assert nearest_upsample4(pool_downsample4(photo)).shape == (2, 3, 72, 100)
    assert sr4x_pool(photo).shape == photo.shape
    assert sr4x_bicubic(photo).shape == photo.shape


@pytest.mark.parametrize("size", [(70, 99), (1, 1), (3, 6), (5, 17)])
@pytest.mark.parametrize("op", [pool_downsample4, bicubic_downsample4, sr4x_pool, sr4x_bicubic])
def test_constant_stays_constant(
    size: tuple[int, int], op: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    # Every output pixel is a weighted mean whose weights sum to 1, even where the taps fold
    # back more than once on a picture smaller than the kernel.
    x = torch.full((1, 2, *size), 0.37, dtype=torch.float64)
    np.testing.assert_allclose(op(x).numpy(), 0.37, rtol=0, atol=1e-12)


def test_bicubic_matches_direct_formula_on_multiple_of_4(photo: torch.Tensor) -> None:
    crop = photo[..., :68, :96]
    out = bicubic_downsample4(crop.double())
    np.testing.assert_allclose(out.numpy(), _bicubic_reference(crop.numpy()), rtol=0, atol=1e-12)
    out32 = bicubic_downsample4(crop)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), _bicubic_reference(crop.numpy()), atol=1e-5)


def test_bicubic_reflects_at_the_true_edge(photo: torch.Tensor) -> None:
    out = bicubic_downsample4(photo.double())
    np.testing.assert_allclose(out.numpy(), _bicubic_reference(photo.numpy()), rtol=0, atol=1e-12)


def test_pool_reads_the_symmetric_extension(photo: torch.Tensor) -> None:
    x = photo.double().numpy()
    padded = np.pad(x, ((0, 0), (0, 0), (0, 2), (0, 1)), mode="symmetric")  # to 72 x 100
    expected = padded.reshape(2, 3, 18, 4, 25, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(pool_downsample4(photo.double()).numpy(), expected, atol=1e-12)


def test_paper_form_is_upsampled_low_res_cropped(photo: torch.Tensor) -> None:
    low = bicubic_downsample4(photo)
    assert torch.equal(sr4x_bicubic(photo), nearest_upsample4(low)[..., :70, :99])
    assert torch.equal(nearest_upsample4(low)[..., 4 * 3 + 2, 4 * 5 + 1], low[..., 3, 5])


def test_inputs_are_left_alone(photo: torch.Tensor) -> None:
    before = photo.clone()
    sr4x_pool(photo)
    sr4x_bicubic(photo)
    assert torch.equal(photo, before)


def test_rejects_non_image_tensors() -> None:
    with pytest.raises(ValueError):
        sr4x_pool(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError):
        bicubic_downsample4(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
