"""The paper's deblurring operators, `blur-uni` and `blur-gauss`, and a plain blur beside them.

The official operator (I2SB_SPEC.md section 4, inherited from DDRM) is not a convolution. It
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

How the spectrum is ordered decides which multiplier each coefficient receives (golden/README,
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
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .sr import reflect_index

ZERO = 3e-2
"""Singular values below this are set to 0 (the official `Deblurring` default)."""


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

    On one thread: LAPACK's last bits depend on its thread count (golden/README.md), so this
    gives every machine the same bases, and the SVD gains little from threads but loses much
    when the cores are busy (2000 x 2000 on 2 loaded cores: 4.5 s on one thread, 30 s on two).
    """
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
    shift = torch.arange(channels)[:, None]
    return ordered[(channels * rank[None, :] + shift) % count].reshape(channels, height, width)


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
    multipliers = _spectrum(kernel, height, width, y.shape[1]).double()
    gain = multipliers / (multipliers.square() + reg)
    unit = (y.detach().cpu().double() + 1) / 2
    restored = v_h @ (gain * (u_h.T @ unit @ u_w)) @ v_w.T
    return (restored * 2 - 1).to(dtype=y.dtype, device=y.device)


def wiener_deblur(y: Tensor, kernel: str, nsr: float = WIENER) -> Tensor:
    """Wiener deconvolution of `plain_blur` with its known kernel; [-1, 1] in and out, unclamped.

    `plain_blur` reads mirrored pixels beyond the borders, so it is exactly a circular
    convolution of the picture's 2H x 2W mirrored extension: there the Fourier transform
    diagonalises it and the Wiener filter conj(K) / (|K|^2 + nsr) inverts it with no border
    artefacts. The result is the top-left H x W quarter of the filtered extension.
    """
    _check(y)
    taps = _kernel(kernel)
    half = len(taps) // 2
    height, width = y.shape[-2:]
    x = y.detach().cpu().double()
    extended = torch.cat([x, x.flip(-2)], dim=-2)
    extended = torch.cat([extended, extended.flip(-1)], dim=-1)
    # The centred kernel laid out circularly: tap j - half at index (j - half) mod n.
    rows = torch.zeros(2 * height, dtype=torch.float64)
    cols = torch.zeros(2 * width, dtype=torch.float64)
    offsets = torch.arange(-half, half + 1)
    rows.index_add_(0, offsets.remainder(2 * height), taps)
    cols.index_add_(0, offsets.remainder(2 * width), taps)
    response = torch.fft.fft(rows)[:, None] * torch.fft.rfft(cols)[None, :]
    gain = response.conj() / (response.abs().square() + nsr)
    restored = torch.fft.irfft2(torch.fft.rfft2(extended) * gain, s=extended.shape[-2:])
    return restored[..., :height, :width].to(dtype=y.dtype, device=y.device)
