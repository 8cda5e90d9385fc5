"""The paper's 4x super-resolution operators: `sr4x-pool` and `sr4x-bicubic`.

Pure tensor functions on [B, C, H, W] pictures in [-1, 1]. The downsamplers return the low-res
picture; `sr4x_pool` and `sr4x_bicubic` return the paper's x1, the low-res picture brought back
to the input size by nearest-neighbour x4 upsampling.

Sizes that are not a multiple of 4: the picture is taken as extended beyond its bottom and right
edges by half-sample symmetric reflection (row H is row H-1, row H+1 is row H-2, ...), the same
rule the bicubic filter uses at every border. The low-res picture has ceil(H/4) x ceil(W/4)
pixels, the last row and column of cells reading that extension: the 4x4 pool averages the
reflected rows with the real ones, and the bicubic filter reflects its taps at the true edges
H and W. `sr4x_*` crop the x4 upsampled result back to H x W. For multiples of 4 the extension
is never read by the pool and is exactly the official border rule for the bicubic filter, so
both operators then equal the official ones.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

SCALE = 4
_TAPS = 16  # the bicubic kernel spans 4 low-res pixels: 16 input pixels at stride 4


def _check(x: Tensor) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point [B, C, H, W] tensor, got {x.dtype} {x.shape}")


def reflect_index(index: Tensor, n: int) -> Tensor:
    """Fold indices into [0, n) by half-sample symmetric reflection, repeated as far as needed.

    Pictures narrower than the kernel reach past the far edge too, hence the fold over 2n.
    """
    index = index.remainder(2 * n)
    return torch.where(index < n, index, 2 * n - 1 - index)


def _keys_cubic(t: Tensor, a: float = -0.5) -> Tensor:
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


@functools.lru_cache(maxsize=32)
def _bicubic_matrix(n: int) -> Tensor:
    """The float64 [ceil(n/4), n] matrix of the official stride-4 bicubic filter.

    Output p centres on input position 4p + 1.5 and reads taps j = 4p + 2 - 8 + m, m = 0..15,
    weighted by the Keys cubic at (j - 4p - 1.5) / 4, normalised to sum 1; taps outside [0, n)
    are reflected back in, adding their weight to the pixel they land on.
    """
    m = torch.arange(_TAPS, dtype=torch.float64)
    kernel = _keys_cubic((m - (_TAPS / 2 - 0.5)) / SCALE)
    kernel = kernel / kernel.sum()
    rows = torch.arange(-(-n // SCALE))
    taps = SCALE * rows[:, None] + (SCALE // 2 - _TAPS // 2) + torch.arange(_TAPS)
    matrix = torch.zeros(len(rows), n, dtype=torch.float64)
    matrix.index_put_(
        (rows[:, None].expand_as(taps), reflect_index(taps, n)),
        kernel.expand_as(taps),
        accumulate=True,
    )
    return matrix


def pool_downsample4(x: Tensor) -> Tensor:
    """4x4 average pooling to ceil(H/4) x ceil(W/4), reading the reflected extension at the ends."""
    _check(x)
    h, w = x.shape[-2:]
    rows = reflect_index(torch.arange(-(-h // SCALE) * SCALE, device=x.device), h)
    cols = reflect_index(torch.arange(-(-w // SCALE) * SCALE, device=x.device), w)
    return F.avg_pool2d(x[..., rows, :][..., cols], SCALE)


def bicubic_downsample4(x: Tensor) -> Tensor:
    """The official bicubic x4 downsampling, `Ah @ X @ Aw^T`, to ceil(H/4) x ceil(W/4)."""
    _check(x)
    h, w = x.shape[-2:]
    ah = _bicubic_matrix(h).to(dtype=x.dtype, device=x.device)
    aw = _bicubic_matrix(w).to(dtype=x.dtype, device=x.device)
    return ah @ x @ aw.T


def nearest_upsample4(x: Tensor) -> Tensor:
    """Nearest-neighbour x4 upsampling: each pixel becomes a 4x4 block."""
    _check(x)
    return x.repeat_interleave(SCALE, dim=-2).repeat_interleave(SCALE, dim=-1)


def sr4x_pool(x: Tensor) -> Tensor:
    """The paper's `sr4x-pool` x1: 4x4 average pooling, then nearest x4, at the input's size."""
    return nearest_upsample4(pool_downsample4(x))[..., : x.shape[-2], : x.shape[-1]]


def sr4x_bicubic(x: Tensor) -> Tensor:
    """The paper's `sr4x-bicubic` x1: bicubic x4 downsampling, then nearest x4, at input size."""
    return nearest_upsample4(bicubic_downsample4(x))[..., : x.shape[-2], : x.shape[-1]]
