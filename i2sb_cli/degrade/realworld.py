"""Degradations as photographs meet them: blur, resizing, sensor noise and JPEG, twice over.

The paper's operators are clean and first-order (one known blur, one JPEG quality). A picture
off a phone or the web went through a camera's optics and noise, then perhaps a resize and a
JPEG, then a messenger's resize and another JPEG. Real-ESRGAN (Wang et al., ICCVW 2021, section
3.1) models this as a *second-order* pipeline: one order is blur -> resize -> noise -> JPEG, and a
picture goes through two orders with independent random parameters. BSRGAN (Zhang et al., ICCV
2021) shuffles the order of the stages instead; here, with probability `SHUFFLE_PROB`, the
blur, resize and noise of an order come in a random permutation (JPEG stays last: it is how a
picture is saved).

The stages (one draw each, from the picture's seed):
- blur: isotropic or anisotropic Gaussian, generalised Gaussian (exponent beta, sharper or
  flatter than a Gaussian), plateau, defocus disc, short linear motion, or a 2-D sinc (the
  ringing of an ideal low-pass filter, as over-sharpened or resampled pictures show);
- resize: area, bilinear or bicubic (anti-aliased), by a random scale;
- noise: Gaussian (read noise) or Poisson (shot noise), in colour or grey;
- JPEG: a real libjpeg file (Pillow, 4:2:0) at a random quality.

Three families, three tasks, each with its ranges in a `Recipe`:
- `real-sr4x`: the two orders, then a resize to a quarter of the input (ceil(H/4) x ceil(W/4))
  with a final JPEG, and a sinc before or after it (Real-ESRGAN's last step). The ranges are
  milder than Real-ESRGAN's (noise up to 15/255 rather than 30, no 0.15x intermediate): our
  users' pictures are web thumbnails and phone shots, not the worst of the internet.
- `real-blur`: a camera's blur (a quarter of the pictures sharp, so that a deblurrer learns to
  leave a sharp photo's detail as it is: at a tenth, `deblur-real` lost 0.25 dB on sharp grainy
  photos), then grain and a JPEG of good quality, and a weaker second order on a third of the
  pictures; same size out.
- `real-jpeg`: a JPEG at any quality 10-95 (an eighth saved twice), on a picture that was
  sometimes a little soft or noisy first; same size out.

Every parameter of every stage goes into `details` (the manifest of `i2sb degrade`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .blind import convolve, defocus_kernel
from .jpeg import jpeg_real

SHUFFLE_PROB = 0.3
KERNEL_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)
# Blur kinds and their weights, as Real-ESRGAN draws them (its "kernel_list"/"kernel_prob"),
# with a defocus disc and motion added for cameras.
BLUR_KINDS = (
    ("iso", 0.35),
    ("aniso", 0.2),
    ("generalized", 0.1),
    ("plateau", 0.1),
    ("defocus", 0.15),
    ("motion", 0.1),
)
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Order:
    """The ranges of one order of degradation; a probability of 0 skips the stage."""

    blur_prob: float
    sigma: tuple[float, float]
    """Gaussian sigma in pixels (each axis of an anisotropic one)."""
    defocus_radius: tuple[float, float]
    motion_length: tuple[float, float]
    sinc_prob: float
    """Of a blur, the share that is a sinc (ringing) rather than a kernel of BLUR_KINDS."""
    resize_prob: float
    scale: tuple[float, float]
    """Resize factor against the picture as it enters the order."""
    noise_prob: float
    noise_sigma: tuple[float, float]
    """Gaussian noise sigma in 8-bit levels."""
    poisson_scale: tuple[float, float]
    grey_noise_prob: float
    jpeg_prob: float
    jpeg_quality: tuple[int, int]


@dataclass(frozen=True)
class Recipe:
    orders: tuple[Order, ...]
    second_order_prob: float
    """Probability that the second order (if any) is applied."""
    scale: int
    """1: the output has the input's size; 4: a quarter of it, as sr4x's input."""
    final_sinc_prob: float = 0.0
    final_jpeg: tuple[int, int] | None = None


_SR_FIRST = Order(
    blur_prob=1.0, sigma=(0.2, 3.0), defocus_radius=(1.0, 3.0), motion_length=(3.0, 9.0),
    sinc_prob=0.1, resize_prob=0.9, scale=(0.3, 1.2), noise_prob=0.6, noise_sigma=(1.0, 15.0),
    poisson_scale=(0.05, 2.0), grey_noise_prob=0.4, jpeg_prob=1.0, jpeg_quality=(40, 95),
)  # fmt: skip
_SR_SECOND = Order(
    blur_prob=0.8, sigma=(0.2, 1.5), defocus_radius=(1.0, 2.0), motion_length=(3.0, 5.0),
    sinc_prob=0.1, resize_prob=0.7, scale=(0.6, 1.2), noise_prob=0.5, noise_sigma=(1.0, 10.0),
    poisson_scale=(0.05, 1.5), grey_noise_prob=0.4, jpeg_prob=0.0, jpeg_quality=(40, 95),
)  # fmt: skip
_BLUR_FIRST = Order(
    blur_prob=0.75, sigma=(0.3, 2.5), defocus_radius=(1.0, 3.5), motion_length=(3.0, 7.0),
    sinc_prob=0.05, resize_prob=0.0, scale=(1.0, 1.0), noise_prob=0.8, noise_sigma=(0.5, 8.0),
    poisson_scale=(0.05, 1.0), grey_noise_prob=0.4, jpeg_prob=0.8, jpeg_quality=(60, 95),
)  # fmt: skip
_BLUR_SECOND = Order(
    blur_prob=0.3, sigma=(0.2, 0.8), defocus_radius=(1.0, 1.5), motion_length=(3.0, 3.0),
    sinc_prob=0.0, resize_prob=0.5, scale=(0.7, 1.0), noise_prob=0.5, noise_sigma=(0.5, 4.0),
    poisson_scale=(0.05, 0.5), grey_noise_prob=0.4, jpeg_prob=0.8, jpeg_quality=(70, 95),
)  # fmt: skip
_JPEG_FIRST = Order(
    blur_prob=0.2, sigma=(0.2, 1.2), defocus_radius=(1.0, 1.5), motion_length=(3.0, 3.0),
    sinc_prob=0.0, resize_prob=0.0, scale=(1.0, 1.0), noise_prob=0.3, noise_sigma=(0.5, 5.0),
    poisson_scale=(0.05, 0.5), grey_noise_prob=0.4, jpeg_prob=1.0, jpeg_quality=(10, 95),
)  # fmt: skip
_JPEG_SECOND = Order(
    blur_prob=0.0, sigma=(0.2, 0.2), defocus_radius=(1.0, 1.0), motion_length=(3.0, 3.0),
    sinc_prob=0.0, resize_prob=0.0, scale=(1.0, 1.0), noise_prob=0.0, noise_sigma=(0.5, 0.5),
    poisson_scale=(0.05, 0.05), grey_noise_prob=0.0, jpeg_prob=1.0, jpeg_quality=(10, 95),
)  # fmt: skip

RECIPES: dict[str, Recipe] = {
    "real-sr4x": Recipe(
        (_SR_FIRST, _SR_SECOND), 1.0, scale=4, final_sinc_prob=0.5, final_jpeg=(40, 95)
    ),
    "real-blur": Recipe((_BLUR_FIRST, _BLUR_SECOND), 1 / 3, scale=1),
    "real-jpeg": Recipe((_JPEG_FIRST, _JPEG_SECOND), 1 / 8, scale=1),
}


class Draw:
    """Random draws from one seed, in float64 so that a draw never depends on the platform."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(
            torch.rand((), generator=self.generator, dtype=torch.float64)
        )

    def chance(self, p: float) -> bool:
        return p > 0 and self.uniform(0, 1) < p

    def integer(self, low: int, high: int) -> int:
        """Uniform in low..high, both included."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def pick(self, choices: tuple, weights: tuple[float, ...] | None = None):
        weights = weights or (1.0,) * len(choices)
        point, total = self.uniform(0, sum(weights)), 0.0
        for choice, weight in zip(choices, weights, strict=True):
            total += weight
            if point < total:
                return choice
        return choices[-1]

    def permutation(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator).tolist()


# --- kernels: normalised [K, K] float32 tensors, K odd ---------------------------------------


def _grid(size: int) -> tuple[Tensor, Tensor]:
    axis = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.meshgrid(axis, axis, indexing="ij")


def _normalised(kernel: Tensor) -> Tensor:
    return (kernel / kernel.sum()).float()


def _mahalanobis(size: int, sigma_x: float, sigma_y: float, angle: float) -> Tensor:
    """d^T Sigma^-1 d over the kernel's grid for a Gaussian with axes sigma_x, sigma_y rotated
    by `angle` (radians)."""
    y, x = _grid(size)
    cos, sin = math.cos(angle), math.sin(angle)
    along, across = x * cos + y * sin, -x * sin + y * cos
    return (along / sigma_x) ** 2 + (across / sigma_y) ** 2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> Tensor:
    return _normalised(torch.exp(-0.5 * _mahalanobis(size, sigma_x, sigma_y, angle)))


def generalized_kernel(
    size: int, sigma_x: float, sigma_y: float, angle: float, beta: float
) -> Tensor:
    """exp(-(d^T Sigma^-1 d)^beta / 2): beta < 1 a peaked, long-tailed blur, beta > 1 a flat-topped
    one (Real-ESRGAN's generalised Gaussian, beta in [0.5, 4])."""
    return _normalised(torch.exp(-0.5 * _mahalanobis(size, sigma_x, sigma_y, angle) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, angle: float, beta: float) -> Tensor:
    """1 / (1 + (d^T Sigma^-1 d)^beta): a flat centre with heavy tails (beta in [1, 2])."""
    return _normalised(1 / (1 + _mahalanobis(size, sigma_x, sigma_y, angle) ** beta))


def motion_kernel(length: float, angle: float) -> Tensor:
    """A straight camera move of `length` pixels at `angle`: a line segment, anti-aliased by
    spreading 16 points per pixel of length bilinearly over the grid."""
    size = 2 * math.ceil(length / 2) + 1
    kernel = torch.zeros(size, size, dtype=torch.float64)
    points = torch.linspace(
        -length / 2, length / 2, max(2, round(16 * length)), dtype=torch.float64
    )
    xs, ys = points * math.cos(angle) + size // 2, points * math.sin(angle) + size // 2
    x0, y0 = xs.floor(), ys.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            weight = (1 - (xs - x0 - dx).abs()) * (1 - (ys - y0 - dy).abs())
            col, row = (x0 + dx).long().clamp(0, size - 1), (y0 + dy).long().clamp(0, size - 1)
            kernel.index_put_((row, col), weight, accumulate=True)
    return _normalised(kernel)


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """The circular ideal low-pass filter of angular cutoff `cutoff` (radians per pixel, pi = no
    filtering), truncated to size x size: omega J1(omega r) / (2 pi r), its ripples the ringing
    that resampling and over-sharpening leave beside edges."""
    y, x = _grid(size)
    radius = torch.sqrt(x**2 + y**2)
    safe = torch.where(radius == 0, torch.ones_like(radius), radius)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(radius, cutoff**2 / (4 * math.pi)), kernel)
    return _normalised(kernel)


def _sinc(draw: Draw) -> tuple[Tensor, dict[str, object]]:
    size = draw.pick(KERNEL_SIZES)
    # Real-ESRGAN: cutoffs down to pi/3 for small kernels, pi/5 for large ones.
    cutoff = draw.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi)
    return sinc_kernel(size, cutoff), {"kind": "sinc", "size": size, "cutoff": round(cutoff, 4)}


def random_blur(order: Order, draw: Draw) -> tuple[Tensor, dict[str, object]]:
    """A blur kernel for one order and what it is."""
    if draw.chance(order.sinc_prob):
        return _sinc(draw)
    kinds, weights = zip(*BLUR_KINDS, strict=True)
    kind = draw.pick(kinds, weights)
    angle = draw.uniform(0, math.pi)
    if kind == "defocus":
        radius = draw.uniform(*order.defocus_radius)
        return defocus_kernel(radius), {"kind": kind, "radius": round(radius, 4)}
    if kind == "motion":
        length = draw.uniform(*order.motion_length)
        params = {"kind": kind, "length": round(length, 4), "angle": round(angle, 4)}
        return motion_kernel(length, angle), params
    size = draw.pick(KERNEL_SIZES)
    sigma_x = draw.uniform(*order.sigma)
    sigma_y = sigma_x if kind == "iso" else draw.uniform(*order.sigma)
    params = {"kind": kind, "size": size, "sigma_x": round(sigma_x, 4),
              "sigma_y": round(sigma_y, 4), "angle": round(angle, 4)}  # fmt: skip
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sigma_x, sigma_y, angle), params
    if kind == "generalized":
        beta = draw.uniform(0.5, 4.0)
        return generalized_kernel(size, sigma_x, sigma_y, angle, beta), {
            **params,
            "beta": round(beta, 4),
        }
    beta = draw.uniform(1.0, 2.0)
    return plateau_kernel(size, sigma_x, sigma_y, angle, beta), {**params, "beta": round(beta, 4)}


# --- the other stages: [B, 3, H, W] in [-1, 1] in and out -------------------------------------


def resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """x resized to `size` (height, width); bilinear and bicubic anti-aliased when shrinking."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrinking)


def add_noise(x: Tensor, params: dict[str, object], generator: torch.Generator) -> Tensor:
    """Gaussian noise of `sigma` levels, or Poisson noise of a 255-photon picture times `scale`;
    `grey` noise is the same in the three channels (luminance noise), else each has its own."""
    shape = (x.shape[0], 1 if params["grey"] else 3, *x.shape[-2:])
    if params["kind"] == "gaussian":
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        noise = noise * float(params["sigma"]) / 127.5
    else:
        unit = ((x.double().clamp(-1, 1) + 1) / 2).cpu()
        if params["grey"]:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
            unit = torch.einsum("c,bchw->bhw", weights, unit)[:, None]
        counts = torch.poisson(unit * 255, generator=generator)
        noise = (counts / 255 - unit) * 2 * float(params["scale"])
    return x + noise.to(dtype=x.dtype, device=x.device)


def _noise_params(order: Order, draw: Draw) -> dict[str, object]:
    grey = draw.chance(order.grey_noise_prob)
    if draw.chance(0.5):
        return {"kind": "gaussian", "sigma": round(draw.uniform(*order.noise_sigma), 4),
                "grey": grey}  # fmt: skip
    return {"kind": "poisson", "scale": round(draw.uniform(*order.poisson_scale), 4), "grey": grey}


Stage = Callable[[Tensor], Tensor]


def _order_stages(
    order: Order, draw: Draw, size: tuple[int, int], noise: torch.Generator
) -> list[tuple[str, dict[str, object], Stage]]:
    """The stages one order applies (blur, resize, noise; JPEG apart), each drawn or skipped."""
    stages: list[tuple[str, dict[str, object], Stage]] = []
    if draw.chance(order.blur_prob):
        kernel, params = random_blur(order, draw)
        stages.append(("blur", params, lambda x, k=kernel: convolve(x, k)))
    if draw.chance(order.resize_prob):
        factor, mode = draw.uniform(*order.scale), draw.pick(RESIZE_MODES)
        target = (max(8, round(size[0] * factor)), max(8, round(size[1] * factor)))
        params = {"mode": mode, "scale": round(factor, 4), "size": list(target)}
        stages.append(("resize", params, lambda x, t=target, m=mode: resize(x, t, m)))
    if draw.chance(order.noise_prob):
        params = _noise_params(order, draw)
        stages.append(("noise", params, lambda x, p=params: add_noise(x, p, noise)))
    return stages


def degrade_real(x: Tensor, task: str, seed: int) -> tuple[Tensor, dict[str, object]]:
    """x [B, 3, H, W] in [-1, 1] through the task's recipe (one draw for the batch), and every
    parameter drawn. The result is 8-bit-valued where a JPEG came last, at the input's size or,
    for `real-sr4x`, at ceil(H/4) x ceil(W/4)."""
    recipe = RECIPES[task]
    draw = Draw(seed)
    noise = torch.Generator().manual_seed(draw.integer(0, 2**62))
    height, width = x.shape[-2:]
    applied: list[dict[str, object]] = []
    shuffled_orders: list[int] = []
    out = x
    for number, order in enumerate(recipe.orders):
        if number and not draw.chance(recipe.second_order_prob):
            break
        stages = _order_stages(order, draw, tuple(out.shape[-2:]), noise)
        shuffled = len(stages) > 1 and draw.chance(SHUFFLE_PROB)
        if shuffled:
            stages = [stages[i] for i in draw.permutation(len(stages))]
        for name, params, stage in stages:
            out = stage(out)
            applied.append({"order": number + 1, "stage": name, **params})
        if shuffled:
            shuffled_orders.append(number + 1)
        if draw.chance(order.jpeg_prob):
            quality = draw.integer(*order.jpeg_quality)
            out = jpeg_real(out, quality)
            applied.append({"order": number + 1, "stage": "jpeg", "quality": quality})
    if recipe.scale > 1:
        out = _final_sr_step(out, recipe, draw, (-(-height // 4), -(-width // 4)), applied)
    else:
        out = resize(out, (height, width), draw.pick(RESIZE_MODES))
    jpegs = [s["quality"] for s in applied if s["stage"] == "jpeg"]
    details: dict[str, object] = {"stages": applied, "shuffled_orders": shuffled_orders}
    if jpegs:
        details["jpeg_quality"] = jpegs[-1]
    return out, details


def _final_sr_step(
    x: Tensor, recipe: Recipe, draw: Draw, size: tuple[int, int], applied: list[dict[str, object]]
) -> Tensor:
    """Real-ESRGAN's last step: resize to the low-resolution size, then a sinc and a JPEG in
    either order (the sinc's ringing before or after the compression)."""
    mode = draw.pick(RESIZE_MODES)
    x = resize(x, size, mode)
    applied.append({"order": "final", "stage": "resize", "mode": mode, "size": list(size)})
    sinc = draw.chance(recipe.final_sinc_prob)
    kernel, sinc_params = _sinc(draw) if sinc else (None, {})
    quality = draw.integer(*recipe.final_jpeg) if recipe.final_jpeg else None
    steps: list[tuple[str, dict[str, object], Stage]] = []
    if kernel is not None:
        steps.append(("blur", sinc_params, lambda t: convolve(t, kernel)))
    if quality is not None:
        steps.append(("jpeg", {"quality": quality}, lambda t: jpeg_real(t, quality)))
    if len(steps) == 2 and draw.chance(0.5):
        steps.reverse()
    for name, params, stage in steps:
        x = stage(x)
        applied.append({"order": "final", "stage": name, **params})
    return x
