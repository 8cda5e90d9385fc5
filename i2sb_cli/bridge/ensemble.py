"""Mirror self-ensemble of a denoiser: x0_hat averaged over mirror images of its input.

A restoration network is not exactly equivariant to mirroring, so its errors on a picture and
on the picture's mirror image are partly independent; averaging the two estimates (mirrored
back) cancels part of them. This is the geometric self-ensemble of super-resolution networks
(Timofte et al., CVPR 2016; EDSR+, Lim et al., 2017), applied here to every network call of
the bridge sampler, so the sampler's own steps and noise are unchanged: the bridge update
(I2SB eq. 11 / OT-ODE eq. 13) simply receives a better x0_hat. Only mirrors are used, which keep
a picture's shape (tiles, padding and masks stay as they are); each copy is a network call.
"""

import torch
from torch import Tensor

from .sampler import Denoise

COPIES = (1, 2, 4)
"""1: the network alone; 2: and its left-right mirror; 4: and the up-down and both mirrors."""

# The mirrored dimensions of each copy, in order: none, width, height, both.
_MIRRORS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def mirror_ensemble(denoise: Denoise, copies: int) -> Denoise:
    """`denoise` averaged over `copies` (1, 2 or 4) mirror images of x_t and cond."""
    if copies not in COPIES:
        raise ValueError(f"copies must be one of {COPIES}, not {copies}")
    if copies == 1:
        return denoise
    mirrors = _MIRRORS[:copies]

    def averaged(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
        total = torch.zeros_like(x_t)
        for dims in mirrors:
            mirrored_cond = None if cond is None else _mirror(cond, dims)
            total += _mirror(denoise(_mirror(x_t, dims), n, mirrored_cond), dims)
        return total / copies

    return averaged


def _mirror(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.flip(x, dims) if dims else x
