"""Blurs as photographs have them, for blind deblurring: the kernel is drawn, not known.

A photographer's blur is never the paper's kernel: it is lens softness or a missed focus of a
few pixels, a little camera shake, or nothing at all. `random_kernel` draws one such kernel
from a seed; a model trained on many learns to sharpen what is blurred and to leave a sharp
picture alone (the no-blur draws), which a non-blind inverse of one fixed kernel cannot.

The draw, per seed:
- with probability `SHARP_FRACTION`, no blur (the identity kernel);
- else half the time a Gaussian, sigma uniform in `GAUSSIAN_SIGMA` px along one axis and
  0.6-1 times that along the other, rotated by a uniform angle (lens softness, slight shake);
- else a defocus disc of radius uniform in `DEFOCUS_RADIUS` px, anti-aliased by 4x4
  supersampling of its edge (an out-of-focus lens's point spread function).
Pictures are convolved with mirrored borders, as a camera sees past the frame.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SHARP_FRACTION = 0.1
GAUSSIAN_SIGMA = (0.5, 3.0)
DEFOCUS_RADIUS = (1.0, 4.0)
_SUPERSAMPLE = 4


def gaussian_kernel(sigma_major: float, sigma_minor: float, angle: float) -> Tensor:
    """A normalised, possibly elongated Gaussian [K, K], K odd and about 3 sigma each side."""
    half = max(1, math.ceil(3 * sigma_major))
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    along, across = x * cos + y * sin, -x * sin + y * cos
    kernel = torch.exp(-0.5 * ((along / sigma_major) ** 2 + (across / sigma_minor) ** 2))
    return (kernel / kernel.sum()).float()


def defocus_kernel(radius: float) -> Tensor:
    """A normalised disc of the given radius [K, K], each pixel weighted by its covered area."""
    half = math.ceil(radius)
    steps = (torch.arange(_SUPERSAMPLE, dtype=torch.float64) + 0.5) / _SUPERSAMPLE - 0.5
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    fine = (axis[:, None] + steps[None, :]).flatten()
    y, x = torch.meshgrid(fine, fine, indexing="ij")
    inside = ((x**2 + y**2) <= radius**2).double()
    size = 2 * half + 1
    kernel = inside.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(dim=(1, 3))
    return (kernel / kernel.sum()).float()


def random_kernel(seed: int) -> tuple[Tensor, dict[str, object]]:
    """A kernel drawn from the seed (see the module's docstring) and what it is, for a manifest."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))

    kind = uniform(0, 1)
    if kind < SHARP_FRACTION:
        return torch.ones(1, 1), {"blur": "none"}
    if kind < SHARP_FRACTION + (1 - SHARP_FRACTION) / 2:
        sigma = uniform(*GAUSSIAN_SIGMA)
        minor, angle = sigma * uniform(0.6, 1.0), uniform(0, math.pi)
        params = {"blur": "gaussian", "sigma": round(sigma, 4), "sigma_minor": round(minor, 4),
                  "angle_deg": round(math.degrees(angle), 2)}  # fmt: skip
        return gaussian_kernel(sigma, minor, angle), params
    radius = uniform(*DEFOCUS_RADIUS)
    return defocus_kernel(radius), {"blur": "defocus", "radius": round(radius, 4)}


def convolve(x: Tensor, kernel: Tensor) -> Tensor:
    """Each channel of x [B, C, H, W] convolved with kernel [K, K] (K odd), mirrored borders.

    A kernel wider than the picture is cropped to it: the mirror can only reflect once.
    """
    half = kernel.shape[-1] // 2
    limit = min(x.shape[-2], x.shape[-1]) - 1
    if half > limit:
        kernel = kernel[half - limit : half + limit + 1, half - limit : half + limit + 1]
        kernel, half = kernel / kernel.sum(), limit
    if half == 0:
        return x * kernel.flatten()[0]
    channels = x.shape[1]
    weight = kernel.to(x.dtype).to(x.device).expand(channels, 1, *kernel.shape)
    padded = F.pad(x, (half, half, half, half), mode="reflect")
    return F.conv2d(padded, weight, groups=channels)


def blind_blur(x: Tensor, seed: int) -> tuple[Tensor, dict[str, object]]:
    """x [B, 3, H, W] blurred by the kernel the seed draws (one kernel for the batch)."""
    kernel, params = random_kernel(seed)
    return convolve(x, kernel), params
