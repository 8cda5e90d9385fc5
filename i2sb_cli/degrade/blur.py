"""The paper's deblurring operators, `blur-uni` and `blur-gauss`, and a plain blur beside them.

The official operator (docs/spec.md section 4, inherited from DDRM) is not a convolution. It
builds, per axis, a zero-padded matrix A of only K-1 of the K kernel taps (rows read columns
j in [i - K//2, i + K//2)), takes its SVD A = U diag(s) V^T, zeroes singular values below 3e-2,
and scales the 2-D spectrum of each channel c with a shifted ordering:

    Y_c = U_h (M_c * (V_h^T X_c V_w)) U_w^T,   M_c[i, j] = s_sorted[(C r(i, j) + c) mod (H W)],

where s_sorted are the products s_h[i] s_w[j] sorted in descending order and r(i, j) is the
rank of (i, j) in that order (flat index i W + j). The picture is mapped to [0, 1] first and
back after: y = 2 A((x + 1) / 2) - 1. Official checkpoints were trained on exactly this, so
`svd_blur` reproduces it; the 3r + c shift is the official indexing slip for C = 3 channels.

Any size: the operator is defined per axis, so H x W pictures use an H x H and a W x W matrix
(the official code knew only square pictures; for H = W this is its operator). Nothing is
padded; the zero borders are part of the operator. Cost: an SVD per distinct side, one sort of
H W products, four matrix products per channel, O(H^3 + W^3 + H W (H + W)); the bases and
multipliers are cached per size. For some sizes (19 to 22, 27 to 30, ... for the uniform kernel)
the 1-D matrix has repeated singular values whose multipliers differ; the result then depends
on the basis the SVD picks within them, in the official operator as here.

How the spectrum is ordered decides the multiplier each coefficient gets (tests/golden/README.md,
corruptions.npz). We take the SVD in float64 (reproducible across machines, unlike the float32
SVD whose last bits change with the LAPACK thread count), round the singular values to float32
and form their products in float32 as the official code does, so that exact ties stay exact,
and sort them with the official call `torch.sort(descending=True)` on the CPU. That sort is not
stable; on the CPU it breaks ties the same way in the official run and here, which keeps us
within 4e-4 of the official output instead of 1e-2 with a stable sort.

`plain_blur` is the physically correct blur a user meets in practice: a separable convolution
with all K taps, centred, reading mirrored (half-sample symmetric) pixels beyond the borders,
so that brightness is kept everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ImageError
from .sr import reflect_index

ZERO = 3e-2
"""Singular values below this are set to 0 (the official `Deblurring` default)."""

MAX_SVD_SIDE = 4096
"""The longest side the SVD operators take. Their n x n matrices are dense and their shifted
spectrum mixes the whole picture, so they cannot run by blocks: a side of n costs about
5 n^2 float64 values in the SVD (0.7 GB at 4096, 400 GB at 100,000) and O(n^3) time."""


def uniform_kernel() -> Tensor:
    """The `blur-uni` kernel: 9 taps of 1/9 (float64)."""
    return torch.full((9,), 1 / 9, dtype=torch.float64)


def gaussian_kernel() -> Tensor:
    """The `blur-gauss` kernel: exp(-0.5 (x / 10)^2) at x = -2..2, normalised (float64)."""
    x = torch.arange(-2, 3, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / 10) ** 2)
    return kernel / kernel.sum()


KERNELS = {"uni": uniform_kernel, "gauss": gaussian_kernel}


def _kernel(name: str) -> Tensor:
    if name not in KERNELS:
        raise ValueError(f"unknown blur kernel {name!r}; choose one of {', '.join(KERNELS)}")
    return KERNELS[name]()


def _check(x: Tensor) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point [B, C, H, W] tensor, got {x.dtype} {x.shape}")


def official_blur_matrix(kernel: Tensor, n: int) -> Tensor:
    """The official 1-D [n, n] matrix: A[i, j] = kernel[j - i + K//2] for j in [i - K//2,
    i + K//2) inside [0, n); the last tap is never used and the borders read zeros."""
    half = len(kernel) // 2
    rows = torch.arange(n)[:, None]
    cols = rows + torch.arange(-half, half)[None, :]
    taps = kernel[: 2 * half].expand(n, -1)
    inside = (cols >= 0) & (cols < n)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix[rows.expand_as(cols)[inside], cols[inside]] = taps[inside].to(torch.float64)
    return matrix


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=8)
def _svd(name: str, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(U, s, V) of the official 1-D matrix in float64; s rounded to float32 and truncated.

    On one thread: LAPACK's last bits depend on its thread count (tests/golden/README.md), so this
    gives every machine the same bases, and the SVD gains little from threads but loses much
    when the cores are busy (2000 x 2000 on 2 loaded cores: 4.5 s on one thread, 30 s on two).
    A side over MAX_SVD_SIDE is an ImageError: one picture fails, the rest of a batch goes on.
    """
    if n > MAX_SVD_SIDE:
        raise ImageError(
            f"blur-{name}: the paper's operator needs the SVD of a {n} x {n} matrix for a side "
            f"of {n} pixels; it takes sides up to {MAX_SVD_SIDE} (blur-{name}-plain, a "
            "convolution, and restore --task deblur take any size)"
        )
    with _one_thread():
        u, s, vh = torch.linalg.svd(official_blur_matrix(_kernel(name), n))
    singulars = s.float()
    singulars[singulars < ZERO] = 0
    return u, singulars, vh.T.contiguous()


@functools.lru_cache(maxsize=4)
def _spectrum(name: str, height: int, width: int, channels: int) -> Tensor:
    """The per-channel multipliers M [C, H, W] (float32) of the official shifted ordering."""
    s_h, s_w = _svd(name, height)[1], _svd(name, width)[1]
    products = (s_h[:, None] * s_w[None, :]).reshape(-1)
    # The official call, on the CPU: see the module notes on how its tie order matters.
    ordered, order = torch.sort(products, descending=True)
    count = products.numel()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count)
    # One channel at a time: the [C, H W] index table would be 400 MB at 4096 x 4096.
    multipliers = torch.empty(channels, count)
    for c in range(channels):
        multipliers[c] = ordered[(channels * rank + c) % count]
    return multipliers.reshape(channels, height, width)


def svd_blur(x: Tensor, kernel: str) -> Tensor:
    """The official operator `blur-<kernel>` (kernel "uni" or "gauss") on [B, C, H, W] in [-1, 1].

    Computed in x's dtype and device; the bases and spectrum are built once per size in float64
    on the CPU and cached.
    """
    _check(x)
    height, width = x.shape[-2:]
    u_h, _, v_h = _svd(kernel, height)
    u_w, _, v_w = _svd(kernel, width)
    multipliers = _spectrum(kernel, height, width, x.shape[1])
    u_h, v_h, u_w, v_w, multipliers = (
        t.to(dtype=x.dtype, device=x.device) for t in (u_h, v_h, u_w, v_w, multipliers)
    )
    unit = (x + 1) / 2  # the official operator works in [0, 1]
    blurred = u_h @ (multipliers * (v_h.T @ unit @ v_w)) @ u_w.T
    return blurred * 2 - 1


def blur_uni(x: Tensor) -> Tensor:
    """The paper's `blur-uni`: the official SVD operator of the 9-tap uniform kernel."""
    return svd_blur(x, "uni")


def blur_gauss(x: Tensor) -> Tensor:
    """The paper's `blur-gauss`: the official SVD operator of the 5-tap Gaussian (sigma 10)."""
    return svd_blur(x, "gauss")


def plain_blur(x: Tensor, kernel: str) -> Tensor:
    """A physically correct blur with the same kernel: separable convolution with all K taps,
    centred (K odd), borders mirrored by half-sample symmetric reflection. Constants stay
    constant; unlike `svd_blur` nothing darkens."""
    _check(x)
    taps = _kernel(kernel).to(dtype=x.dtype, device=x.device)
    half = len(taps) // 2
    batch, channels, height, width = x.shape
    rows = reflect_index(torch.arange(-half, height + half, device=x.device), height)
    cols = reflect_index(torch.arange(-half, width + half, device=x.device), width)
    padded = x[..., rows, :][..., cols].reshape(batch * channels, 1, len(rows), len(cols))
    # The kernels are symmetric, so convolution and correlation agree.
    out = F.conv2d(padded, taps.view(1, 1, -1, 1))
    out = F.conv2d(out, taps.view(1, 1, 1, -1))
    return out.reshape(batch, channels, height, width)


TIKHONOV = 5e-4
"""Default regulariser of `svd_deblur`: the best compromise of both kernels on held-out 256x256
photos blurred and stored as 8-bit PNG, where rounding is the only noise (blur-uni peaks at
3e-4, blur-gauss at 1e-3; 5e-4 is within 0.15 dB of both)."""

WIENER = 5e-4
"""Default noise-to-signal ratio of `wiener_deblur`, tuned the same way (within 0.25 dB of the
best value for both kernels)."""


def svd_deblur(y: Tensor, kernel: str, reg: float = TIKHONOV) -> Tensor:
    """The Tikhonov-regularised inverse of `svd_blur`, through the operator's own SVD.

    `svd_blur` maps each channel to Y_c = U_h (M_c * (V_h^T X_c V_w)) U_w^T, so the spectrum of
    the blurred picture is U_h^T Y_c U_w = M_c * (V_h^T X_c V_w). Tikhonov divides by M_c where
    it is large and fades out where it is small: X_c = V_h (M_c / (M_c^2 + reg) * (U_h^T Y_c U_w))
    V_w^T; coefficients the operator zeroed stay zero. Works in [0, 1] like the operator and
    returns [-1, 1] values, unclamped, in y's dtype and device.
    """
    _check(y)
    height, width = y.shape[-2:]
    u_h, _, v_h = _svd(kernel, height)
    u_w, _, v_w = _svd(kernel, width)
    multipliers = _spectrum(kernel, height, width, y.shape[1])
    out = torch.empty(y.shape, dtype=y.dtype)
    # One channel at a time in float64: a 4096 x 4096 plane is 134 MB where the whole picture's
    # float64 temporaries would be gigabytes.
    planes = y.detach().cpu().flatten(0, 1)
    for index, target in enumerate(out.flatten(0, 1)):
        multiplier = multipliers[index % y.shape[1]].double()
        gain = multiplier / (multiplier.square() + reg)
        unit = (planes[index].double() + 1) / 2
        target.copy_((v_h @ (gain * (u_h.T @ unit @ u_w)) @ v_w.T) * 2 - 1)
    return out.to(y.device)


def wiener_deblur(y: Tensor, kernel: str, nsr: float = WIENER) -> Tensor:
    """Wiener deconvolution of `plain_blur` with its known kernel; [-1, 1] in and out, unclamped.

    `plain_blur` reads mirrored pixels beyond the borders, so it is exactly a circular
    convolution of the picture's 2H x 2W mirrored extension: there the Fourier transform
    diagonalises it and the Wiener filter R / (R^2 + nsr) inverts it with no border artefacts
    (the kernel is symmetric, so its response R is real). On a half-sample symmetric extension
    that Fourier transform is the DCT-II of the picture itself (`_dct`), which needs no
    extension in memory. The DCT is separable, so it runs on blocks of whole rows, then of
    whole columns, each exact with no overlap: in float64 like a whole-picture transform, with
    one float64 H x W buffer besides the result (a 4096 x 4096 picture: 134 MB, not the
    extension's gigabytes).
    """
    _check(y)
    taps = _kernel(kernel)
    height, width = y.shape[-2:]
    response_h, response_w = _dct_response(taps, height), _dct_response(taps, width)
    out = torch.empty(y.shape, dtype=y.dtype)
    rows, cols = _lines_per_block(width), _lines_per_block(height)
    for plane, target in zip(y.detach().cpu().flatten(0, 1), out.flatten(0, 1), strict=True):
        spectrum = torch.empty(height, width, dtype=torch.float64)
        for top in range(0, height, rows):
            spectrum[top : top + rows] = _dct(plane[top : top + rows].double(), -1)
        for left in range(0, width, cols):
            block = _dct(spectrum[:, left : left + cols], 0)
            response = response_h[:, None] * response_w[None, left : left + cols]
            spectrum[:, left : left + cols] = _idct(block * response / (response.square() + nsr), 0)
        for top in range(0, height, rows):
            target[top : top + rows] = _idct(spectrum[top : top + rows], -1)
    return out.to(y.device)


_BLOCK = 1 << 20
"""Elements of a block of lines in `wiener_deblur` (8 MB in float64)."""


def _lines_per_block(length: int) -> int:
    return max(1, _BLOCK // length)


def _dct_response(taps: Tensor, n: int) -> Tensor:
    """The response of a centred symmetric kernel at the DCT-II frequencies pi k / n, k < n:
    sum_j taps[j] cos(pi k (j - K//2) / n), the DFT of the 2n-periodic kernel at index k."""
    offsets = torch.arange(len(taps), dtype=torch.float64) - len(taps) // 2
    frequencies = torch.arange(n, dtype=torch.float64) * math.pi / n
    return torch.cos(frequencies[:, None] * offsets[None, :]) @ taps


def _dct(x: Tensor, dim: int) -> Tensor:
    """Unnormalised DCT-II along `dim`: X[k] = 2 sum_n x[n] cos(pi k (2n + 1) / 2N).

    It is the DFT of the half-sample symmetric extension [x, flip(x)] at index k, times
    e^(-i pi k / 2N): the phase of the extension's half-sample shift.
    """
    n = x.shape[dim]
    extended = torch.fft.rfft(torch.cat([x, x.flip(dim)], dim=dim), dim=dim)
    return (extended.narrow(dim, 0, n) * _phase(n, dim, x.dim(), -1)).real


def _idct(coefficients: Tensor, dim: int) -> Tensor:
    """The inverse of `_dct`: the first half of the symmetric extension whose DFT is
    e^(i pi k / 2N) X[k] for k < N, 0 at k = N (where every cosine of the DCT-II vanishes)."""
    n = coefficients.shape[dim]
    shape = list(coefficients.shape)
    shape[dim] = 1
    spectrum = torch.cat(
        [coefficients * _phase(n, dim, coefficients.dim(), 1), coefficients.new_zeros(shape)],
        dim=dim,
    )
    return torch.fft.irfft(spectrum, n=2 * n, dim=dim).narrow(dim, 0, n)


def _phase(n: int, dim: int, ndim: int, sign: int) -> Tensor:
    """e^(sign i pi k / 2n) for k < n, shaped to broadcast along `dim` of an ndim tensor."""
    shape = [1] * ndim
    shape[dim] = n
    angles = torch.arange(n, dtype=torch.float64) * (sign * math.pi / (2 * n))
    return torch.polar(torch.ones_like(angles), angles).reshape(shape)
