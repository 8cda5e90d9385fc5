"""The blur operators: the official SVD operator against the official outputs and an independent
NumPy construction of the spec's formula, and the plain blur against a direct convolution."""

from pathlib import Path

import numpy as np
import pytest
import torch

from i2sb_cli.degrade import (
    blur,
    blur_gauss,
    blur_uni,
    plain_blur,
    svd_blur,
    svd_deblur,
    wiener_deblur,
)
from i2sb_cli.degrade.blur import gaussian_kernel, official_blur_matrix, uniform_kernel
from i2sb_cli.errors import ImageError


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "corruptions.npz") as data:
        return {k: data[k] for k in ("x0", "blur-uni", "blur-gauss")}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A smooth random 23 x 34 picture in [-1, 1], float64: not 256, not square, and of sides
    whose 1-D matrices have distinct singular values (see the notes in degrade/blur.py)."""
    generator = torch.Generator().manual_seed(3)
    coarse = torch.rand(2, 3, 6, 9, generator=generator, dtype=torch.float64)
    smooth = torch.nn.functional.interpolate(coarse, size=(23, 34), mode="bilinear")
    return smooth * 2 - 1


def _bases(n: int, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, s, V) of the official 1-D matrix by NumPy, s rounded to float32 and truncated."""
    matrix = np.zeros((n, n))
    half = len(kernel) // 2
    for i in range(n):
        for j in range(max(0, i - half), min(n, i + half)):
            matrix[i, j] = kernel[j - i + half]
    u, s, vt = np.linalg.svd(matrix)
    s = s.astype(np.float32)
    s[s < 3e-2] = 0
    return u, s, vt.T


def _reference(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The spec's formula built independently: NumPy SVDs, an explicit rank table, a loop over
    channels. Only the sort call is shared, since its tie order is part of the definition."""
    height, width = x.shape[-2:]
    (u_h, s_h, v_h), (u_w, s_w, v_w) = _bases(height, kernel), _bases(width, kernel)
    products = torch.from_numpy(np.outer(s_h, s_w).reshape(-1))
    ordered, order = torch.sort(products, descending=True)
    rank = np.empty(order.numel(), dtype=np.int64)
    rank[order.numpy()] = np.arange(order.numel())
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        multipliers = ordered.numpy()[(channels * rank + c) % rank.size].reshape(height, width)
        unit = (x[:, c] + 1) / 2
        out[:, c] = 2 * (u_h @ (multipliers * (v_h.T @ unit @ v_w)) @ u_w.T) - 1
    return out


@pytest.mark.parametrize("name", ["uni", "gauss"])
def test_official_operator_matches_golden(golden: dict[str, np.ndarray], name: str) -> None:
    # tests/golden/README.md: mean <= 2e-3 and max <= 3e-2 for an implementation with its own SVD
    # and sort (measured here: mean 4.1e-5 / max 3.8e-4 for uni, 1.6e-6 / 1.3e-5 for gauss).
    operator = blur_uni if name == "uni" else blur_gauss
    error = np.abs(operator(torch.from_numpy(golden["x0"])).numpy() - golden[f"blur-{name}"])
    assert error.mean() <= 2e-3
    assert error.max() <= 3e-2


def test_matrix_uses_k_minus_1_taps_and_zero_borders() -> None:
    matrix = official_blur_matrix(uniform_kernel(), 12)
    assert torch.equal(matrix[5, 1:9], torch.full((8,), 1 / 9, dtype=torch.float64))
    assert matrix[5].count_nonzero() == 8 and matrix[5, 9] == 0  # tap +4 is never used
    assert matrix[0].count_nonzero() == 4 and matrix[11].count_nonzero() == 5
    gauss = official_blur_matrix(gaussian_kernel(), 7)
    assert torch.equal(gauss[3, 1:5], gaussian_kernel()[:4])


@pytest.mark.parametrize("name", ["uni", "gauss"])
def test_formula_on_a_non_square_picture(photo: torch.Tensor, name: str) -> None:
    """The spec's formula, checked where it does not depend on how the sort breaks ties.

    The operator must be diagonal in the SVD bases (V in, U out) of the two 1-D matrices, and
    coefficient (i, j) of channel c must get the multiplier s_sorted[(3 r + c) mod HW], r its
    rank among the products s_h[i] s_w[j]. Products that tie (the block of zeros, values equal
    in float32) may take their ranks in any order (tests/golden/README.md, corruptions.npz), so for
    each group of tied products only the multipliers it receives, as a multiset, are fixed.
    """
    kernel = (uniform_kernel() if name == "uni" else gaussian_kernel()).numpy()
    height, width = photo.shape[-2:]
    (u_h, s_h, v_h), (u_w, s_w, v_w) = _bases(height, kernel), _bases(width, kernel)
    count, channels = height * width, 3
    # Every basis picture V_h e_i e_j^T V_w^T at once, in all three channels, through the
    # operator; read back in the U bases, each must give one number: its multiplier.
    basis = np.einsum("ai,bj->ijab", v_h, v_w).reshape(count, 1, height, width)
    probes = torch.from_numpy(np.repeat(basis, channels, axis=1) * 2 - 1)
    out = (svd_blur(probes, name).numpy() + 1) / 2
    spectra = (u_h.T @ out @ u_w).reshape(count, channels, count)
    measured = spectra[np.arange(count), :, np.arange(count)]  # [coefficient, channel]
    spectra[np.arange(count), :, np.arange(count)] = 0
    assert np.abs(spectra).max() < 1e-9  # diagonal in those bases

    products = np.outer(s_h, s_w).reshape(-1)  # float32, as the operator forms them
    order = np.argsort(-products, kind="stable")
    ordered = products[order].astype(np.float64)
    # Groups of tied products: runs of the sorted values that differ by less than float32
    # rounding of the SVD could make them differ.
    starts = np.flatnonzero(np.r_[True, np.diff(ordered) < -1e-6])
    for first, end in zip(starts, [*starts[1:], count], strict=True):
        members = order[first:end]
        for c in range(channels):
            wanted = np.sort(ordered[(channels * np.arange(first, end) + c) % count])
            got = np.sort(measured[members, c])
            np.testing.assert_allclose(got, wanted, rtol=0, atol=1e-6)
    out32 = svd_blur(photo.float(), name)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), svd_blur(photo, name).numpy(), rtol=0, atol=1e-5)


def test_shift_gives_each_channel_its_own_multipliers(photo: torch.Tensor) -> None:
    grey = photo[:, :1].expand(-1, 3, -1, -1)
    out = svd_blur(grey, "gauss")
    assert not torch.allclose(out[:, 0], out[:, 1])
    # One channel has no shift: the truncated SVD of the 1-D matrices applied on both sides.
    single = svd_blur(photo[:, :1], "gauss")
    expected = _reference(photo[:, :1].numpy(), gaussian_kernel().numpy())
    np.testing.assert_allclose(single.numpy(), expected, rtol=0, atol=1e-9)


def test_tiny_pictures(photo: torch.Tensor) -> None:
    tiny = photo[..., :3, :5]
    assert svd_blur(tiny, "uni").shape == tiny.shape
    assert plain_blur(tiny, "uni").shape == tiny.shape


@pytest.mark.parametrize("name", ["uni", "gauss"])
def test_plain_blur_is_a_mirrored_convolution(photo: torch.Tensor, name: str) -> None:
    kernel = (uniform_kernel() if name == "uni" else gaussian_kernel()).numpy()
    half = len(kernel) // 2
    x = photo.numpy()
    padded = np.pad(x, ((0, 0), (0, 0), (half, half), (half, half)), mode="symmetric")
    expected = np.zeros_like(x)
    for a in range(len(kernel)):
        for b in range(len(kernel)):
            window = padded[..., a : a + x.shape[-2], b : b + x.shape[-1]]
            expected += kernel[a] * kernel[b] * window
    np.testing.assert_allclose(plain_blur(photo, name).numpy(), expected, rtol=0, atol=1e-12)
    constant = torch.full((1, 3, 4, 6), 0.3, dtype=torch.float64)
    np.testing.assert_allclose(plain_blur(constant, name).numpy(), 0.3, rtol=0, atol=1e-12)


def test_official_operator_darkens_but_plain_does_not() -> None:
    grey = torch.zeros(1, 3, 40, 40, dtype=torch.float64)  # mid-grey
    assert svd_blur(grey, "uni")[..., 20, 20].max() < -0.05  # 8 of 9 taps: 8/9 of the light
    assert plain_blur(grey, "uni").abs().max() < 1e-12


def test_moderately_large_non_square_picture() -> None:
    """480 x 640: bases of both sides and one sort of 307,200 products take well under a
    second; the cost is O(H^3 + W^3 + H W (H + W)), never an (H W) x (H W) matrix."""
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(1, 1, 480, 640, generator=generator, dtype=torch.float64) * 2 - 1
    out = svd_blur(x, "gauss")
    # With one channel the operator is the 1-D matrices on both sides, less their singular
    # values below 3e-2 (27 and 37 of them here): close to the direct product on noise.
    rows = official_blur_matrix(gaussian_kernel(), 480)
    cols = official_blur_matrix(gaussian_kernel(), 640)
    direct = 2 * (rows @ ((x[0, 0] + 1) / 2) @ cols.T) - 1
    assert (out[0, 0] - direct).abs().max() < 0.02
    assert (out[0, 0] - direct).abs().mean() < 3e-3


def _wiener_on_the_extension(y: torch.Tensor, kernel: torch.Tensor, nsr: float) -> torch.Tensor:
    """Wiener deconvolution by the definition: the FFT of the whole 2H x 2W mirrored extension,
    the centred kernel laid out circularly, conj(K) / (|K|^2 + nsr), the top-left quarter."""
    height, width = y.shape[-2:]
    half = len(kernel) // 2
    extended = torch.cat([y, y.flip(-2)], dim=-2)
    extended = torch.cat([extended, extended.flip(-1)], dim=-1)
    rows = torch.zeros(2 * height, dtype=torch.float64)
    cols = torch.zeros(2 * width, dtype=torch.float64)
    rows.index_add_(0, torch.arange(-half, half + 1).remainder(2 * height), kernel)
    cols.index_add_(0, torch.arange(-half, half + 1).remainder(2 * width), kernel)
    response = torch.fft.fft(rows)[:, None] * torch.fft.fft(cols)[None, :]
    gain = response.conj() / (response.abs().square() + nsr)
    return torch.fft.ifft2(torch.fft.fft2(extended) * gain).real[..., :height, :width]


@pytest.mark.parametrize("block", [1, 7, 1 << 20])
@pytest.mark.parametrize("name", ["uni", "gauss"])
def test_wiener_by_blocks_of_lines_is_the_whole_picture_filter(
    photo: torch.Tensor, name: str, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of one line, of a few lines (not dividing the sides) and the whole picture.
    monkeypatch.setattr(blur, "_BLOCK", block)
    kernel = uniform_kernel() if name == "uni" else gaussian_kernel()
    blurred = plain_blur(photo, name)
    expected = _wiener_on_the_extension(blurred, kernel, 5e-4)
    np.testing.assert_allclose(wiener_deblur(blurred, name).numpy(), expected, rtol=0, atol=1e-9)
    out32 = wiener_deblur(blurred.float(), name)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=0, atol=1e-5)


def test_svd_operators_refuse_a_side_over_the_limit_before_allocating() -> None:
    # A 3 x 100,000 strip: the SVD of its long side would be 80 GB of float64 (issue 16).
    strip = torch.zeros(1, 3, 3, 100_000)
    for operator in (svd_blur, svd_deblur):
        with pytest.raises(ImageError, match="sides up to 4096"):
            operator(strip, "gauss")


def test_tikhonov_plane_by_plane_is_the_batched_formula(photo: torch.Tensor) -> None:
    y = svd_blur(photo, "gauss")
    u_h, _, v_h = blur._svd("gauss", 23)
    u_w, _, v_w = blur._svd("gauss", 34)
    multipliers = blur._spectrum("gauss", 23, 34, 3).double()
    gain = multipliers / (multipliers.square() + 5e-4)
    expected = 2 * (v_h @ (gain * (u_h.T @ ((y + 1) / 2) @ u_w)) @ v_w.T) - 1
    np.testing.assert_allclose(svd_deblur(y, "gauss").numpy(), expected, rtol=0, atol=1e-12)
    out32 = svd_deblur(y.float(), "gauss")
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=0, atol=1e-5)
