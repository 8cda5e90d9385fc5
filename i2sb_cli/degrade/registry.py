"""Degradations by name: the paper's operators under the paper's names, and real-world variants.

`get_operator(name)` returns an `Operator`: called on a [B, 3, H, W] picture in [-1, 1] with a
seed, it gives a `Degraded` holding what `i2sb restore` takes (for sr4x the low-resolution
picture, not the paper's nearest-upsampled form) and, for inpainting, the mask. Its `params`
describe the operator for a manifest.

Paper names (docs/spec.md section 4): sr4x-pool, sr4x-bicubic, blur-uni, blur-gauss, jpeg-5,
jpeg-10, inpaint-center, inpaint-freeform1020, inpaint-freeform2030. Beside them: jpeg-Q for any
quality, inpaint-freeform3040 (Palette's third band), and real-world variants under their own
names: blur-uni-plain and blur-gauss-plain (a true convolution), blur-blind (a photographic blur
drawn from the seed, see blind.py), jpeg-real-Q (a real JPEG file), inpaint-mask (the user's own
mask), and real-sr4x, real-blur, real-jpeg: second-order blur, resize, noise and JPEG drawn from
the seed per picture (realworld.py), and real-inpaint: an object's, strokes' or a box's hole in
a photo saved as a JPEG (removal.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..errors import UsageError
from .blind import DEFOCUS_RADIUS, GAUSSIAN_SIGMA, SHARP_FRACTION, blind_blur
from .blur import ZERO, plain_blur, svd_blur
from .jpeg import jpeg_numerical, jpeg_real
from .masks import FREEFORM_BANDS, apply_hole, center_mask, freeform_mask, palette_mask
from .realworld import RECIPES, SHUFFLE_PROB, degrade_real
from .removal import degrade_removal, describe_removal
from .sr import bicubic_downsample4, pool_downsample4

PAPER_TASKS = (
    "sr4x-pool",
    "sr4x-bicubic",
    "blur-uni",
    "blur-gauss",
    "jpeg-5",
    "jpeg-10",
    "inpaint-center",
    "inpaint-freeform1020",
    "inpaint-freeform2030",
)
OTHER_TASKS = (
    "jpeg-Q",
    "inpaint-freeform3040",
    "blur-uni-plain",
    "blur-gauss-plain",
    "blur-blind",
    "jpeg-real-Q",
    "inpaint-mask",
    *RECIPES,
    "real-inpaint",
)
TASK_NAMES = PAPER_TASKS + OTHER_TASKS
"""Every name `get_operator` accepts; Q stands for a JPEG quality 1..100."""

_JPEG = re.compile(r"jpeg-(real-)?(\d{1,3})")


@dataclass(frozen=True)
class Degraded:
    """An operator's result for a batch of pictures."""

    picture: Tensor
    """[B, 3, h, w]: the low-resolution picture (ceil(H/4) x ceil(W/4)) for sr4x, else the
    degraded picture at the input's size. Values are not clamped (JPEG leaves [-1, 1])."""
    mask: Tensor | None = None
    """[B, 1, H, W], 1 = hole, for inpainting; the picture's hole is white (+1)."""
    details: dict[str, object] = field(default_factory=dict)
    """Per-call facts for the manifest (the mask's hole fraction, a Palette mask's index)."""


@dataclass(frozen=True)
class Operator:
    name: str
    family: str
    """The `restore` family it belongs to: sr4x, deblur, jpeg or inpaint."""
    paper: bool
    """Whether official checkpoints were trained on exactly this operator."""
    params: Mapping[str, object]
    apply: Callable[[Tensor, int, Tensor | None], Degraded]
    seeded: bool = False
    """Whether the seed changes the degradation (masks, blind blurs): a batch of independent
    pictures is then degraded one picture and seed at a time."""

    @property
    def needs_mask(self) -> bool:
        return self.name == "inpaint-mask"

    def __call__(self, x: Tensor, *, seed: int = 0, mask: Tensor | None = None) -> Degraded:
        """Degrade x ([B, 3, H, W] in [-1, 1]). The seed picks the free-form mask or the blind
        blur, one for the whole batch; `mask` ([B or 1, 1, H, W], 1 = hole) is the user's, for
        `inpaint-mask`."""
        if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a floating-point [B, 3, H, W] tensor, got {x.shape}")
        if (mask is not None) != self.needs_mask:
            raise ValueError(f"{self.name} {'needs' if self.needs_mask else 'takes no'} mask")
        return self.apply(x, seed, mask)


def get_operator(name: str, *, palette_masks: str | Path | None = None) -> Operator:
    """The operator of a task name (`TASK_NAMES`, with Q a number); a UsageError lists them.

    `palette_masks`: Palette's `imagenet_freeform_masks.npz`, whose masks the free-form tasks
    then use instead of generating their own.
    """
    if palette_masks is not None and not name.startswith("inpaint-freeform"):
        raise UsageError(f"Palette masks are for the inpaint-freeform tasks, not {name}")
    if name.startswith("sr4x-") and name[5:] in ("pool", "bicubic"):
        return _sr4x(name)
    if name in ("blur-uni", "blur-gauss", "blur-uni-plain", "blur-gauss-plain"):
        return _blur(name)
    if name == "blur-blind":
        return _blind()
    if name in RECIPES:
        return _real(name)
    if match := _JPEG.fullmatch(name):
        return _jpeg(name, int(match[2]), real=bool(match[1]))
    if name == "inpaint-center":
        return _inpaint(name, {"mask": "centre box rows/cols [n//4, n//4 + n//2)"}, _center)
    if name.startswith("inpaint-") and name[8:] in FREEFORM_BANDS:
        return _freeform(name, FREEFORM_BANDS[name[8:]], palette_masks)
    if name == "inpaint-mask":
        return _inpaint(name, {"mask": "user"}, lambda x, seed, mask: (mask, {}))
    if name == "real-inpaint":
        return _removal()
    raise UsageError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}")


def _sr4x(name: str) -> Operator:
    down = pool_downsample4 if name == "sr4x-pool" else bicubic_downsample4
    params = {
        "scale": 4,
        "filter": "4x4 average" if name == "sr4x-pool" else "Keys cubic a=-0.5, 16 taps",
        "borders": "half-sample symmetric reflection",
    }
    return Operator(name, "sr4x", True, params, lambda x, seed, mask: Degraded(down(x)))


def _blur(name: str) -> Operator:
    kernel = name.split("-")[1]
    taps = {"uni": "9 taps of 1/9", "gauss": "exp(-x^2/200), x=-2..2, normalised"}[kernel]
    if name.endswith("-plain"):
        params = {"kernel": taps, "method": "separable convolution", "borders": "mirrored"}
        return Operator(
            name, "deblur", False, params, lambda x, s, m: Degraded(plain_blur(x, kernel))
        )
    params = {"kernel": taps, "method": "official SVD operator", "zero": ZERO, "borders": "zero"}
    return Operator(name, "deblur", True, params, lambda x, s, m: Degraded(svd_blur(x, kernel)))


def _blind() -> Operator:
    params = {
        "kernel": f"none ({SHARP_FRACTION:.0%}), Gaussian sigma {GAUSSIAN_SIGMA} px (elongated, "
        f"rotated) or defocus disc radius {DEFOCUS_RADIUS} px, drawn per seed",
        "method": "convolution",
        "borders": "mirrored",
    }

    def apply(x: Tensor, seed: int, mask: Tensor | None) -> Degraded:
        blurred, kernel = blind_blur(x, seed)
        return Degraded(blurred, details=kernel)

    return Operator("blur-blind", "deblur", False, params, apply, seeded=True)


_REAL_FAMILIES = {"real-sr4x": "sr4x", "real-blur": "deblur", "real-jpeg": "jpeg"}


def _real(name: str) -> Operator:
    recipe = RECIPES[name]
    params = {
        "pipeline": "second-order blur, resize, noise, JPEG (Real-ESRGAN), stages shuffled "
        f"with probability {SHUFFLE_PROB} (BSRGAN), drawn per seed",
        "orders": [dict(vars(order)) for order in recipe.orders],
        "second_order_prob": round(recipe.second_order_prob, 4),
        "scale": recipe.scale,
    }

    def apply(x: Tensor, seed: int, mask: Tensor | None) -> Degraded:
        picture, details = degrade_real(x, name, seed)
        return Degraded(picture, details=details)

    return Operator(name, _REAL_FAMILIES[name], False, params, apply, seeded=True)


def _jpeg(name: str, quality: int, *, real: bool) -> Operator:
    if not 1 <= quality <= 100:
        raise UsageError(f"{name}: the JPEG quality must be 1..100")
    if real:
        params = {"quality": quality, "encoder": "Pillow libjpeg, 4:2:0", "input": "8-bit"}
        return Operator(
            name, "jpeg", False, params, lambda x, s, m: Degraded(jpeg_real(x, quality))
        )
    params = {"quality": quality, "method": "numerical, no entropy coding", "chroma": "[::2, ::2]"}
    paper = quality in (5, 10)
    return Operator(
        name, "jpeg", paper, params, lambda x, s, m: Degraded(jpeg_numerical(x, quality))
    )


MaskSource = Callable[[Tensor, int, Tensor | None], tuple[Tensor, dict[str, object]]]


def _inpaint(name: str, params: dict[str, object], masks: MaskSource) -> Operator:
    def apply(x: Tensor, seed: int, mask: Tensor | None) -> Degraded:
        hole, details = masks(x, seed, mask)
        hole = hole.to(dtype=x.dtype, device=x.device).expand(x.shape[0], 1, *x.shape[-2:])
        details = {"hole_fraction": round(float(hole.double().mean()), 6), **details}
        return Degraded(apply_hole(x, hole), hole, details)

    paper = name in PAPER_TASKS
    return Operator(name, "inpaint", paper, {**params, "hole_value": 1.0}, apply, seeded=True)


def _removal() -> Operator:
    def apply(x: Tensor, seed: int, mask: Tensor | None) -> Degraded:
        picture, hole, details = degrade_removal(x, seed)
        details = {"hole_fraction": round(float(hole.double().mean()), 6), **details}
        return Degraded(picture, hole, details)

    return Operator("real-inpaint", "inpaint", False, describe_removal(), apply, seeded=True)


def _center(x: Tensor, seed: int, mask: Tensor | None) -> tuple[Tensor, dict[str, object]]:
    return center_mask(*x.shape[-2:]), {}


def _freeform(name: str, band: tuple[float, float], palette: str | Path | None) -> Operator:
    def masks(x: Tensor, seed: int, mask: Tensor | None) -> tuple[Tensor, dict[str, object]]:
        if palette is None:
            return freeform_mask(*x.shape[-2:], band, seed), {}
        hole, index = palette_mask(palette, band, seed, tuple(x.shape[-2:]))
        return hole, {"palette_index": index}

    source = "i2sb brush strokes" if palette is None else f"Palette file {palette}"
    return _inpaint(name, {"mask": source, "band": list(band)}, masks)
