"""Object removal as people do it: `real-inpaint`, a hole of an object's size and shape in a
photograph that was saved as a JPEG.

The paper's inpainting tasks cut brush strokes (10-30% of the picture) or a centre box out of a
clean picture. A user's hole is something to remove from a JPEG: a passer-by or a sign (one
blob of an object's shape), a wire or a date stamp (strokes), a caption (a box). Each picture
draws, from its seed:
- the hole's kind: an object blob (half the pictures) over 5-40% of the picture, free-form
  strokes (freeform_mask) over 5-30%, or a box over 5-25%;
- the known pixels: the picture saved as a JPEG at quality 60-95 (nine in ten pictures), as a
  photo from a camera or the web is, else left clean.
The hole is white (apply_hole), as in the paper's tasks; the target under it is the clean
picture. Every draw goes into `details` (the manifest of `i2sb degrade`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

from .jpeg import jpeg_real
from .masks import apply_hole, freeform_mask
from .realworld import Draw

HOLE_KINDS = ("object", "strokes", "box")
HOLE_WEIGHTS = (0.5, 0.3, 0.2)
HOLE_BANDS: dict[str, tuple[float, float]] = {
    "object": (0.05, 0.4),
    "strokes": (0.05, 0.3),
    "box": (0.05, 0.25),
}
"""The share of the picture each kind of hole covers, drawn uniformly in its band."""
JPEG_PROB = 0.9
JPEG_QUALITY = (60, 95)
_OUTLINE_POINTS = 256


def object_mask(height: int, width: int, fraction: float, draw: Draw) -> Tensor:
    """One blob of about `fraction` of the picture, shaped like an object: an ellipse (aspect
    up to 2.5, any angle) whose radius wobbles by a few random harmonics, its centre anywhere
    that keeps most of it inside. A float32 [1, 1, H, W] mask."""
    aspect = draw.uniform(1.0, 2.5)
    angle = draw.uniform(0, math.pi)
    # An ellipse of semi-axes (r sqrt(aspect), r / sqrt(aspect)) has the area of a disc of r.
    radius = math.sqrt(fraction * height * width / math.pi)
    theta = np.linspace(0, 2 * math.pi, _OUTLINE_POINTS, endpoint=False)
    wobble = np.ones_like(theta)
    for harmonic in range(2, 7):
        amplitude = draw.uniform(0, 0.25 / (harmonic - 1))
        wobble += amplitude * np.cos(harmonic * theta + draw.uniform(0, 2 * math.pi))
    along = radius * math.sqrt(aspect) * wobble * np.cos(theta)
    across = radius / math.sqrt(aspect) * wobble * np.sin(theta)
    xs = along * math.cos(angle) - across * math.sin(angle)
    ys = along * math.sin(angle) + across * math.cos(angle)
    reach_x, reach_y = 0.6 * np.abs(xs).max(), 0.6 * np.abs(ys).max()
    centre_x = draw.uniform(min(reach_x, width / 2), max(width - reach_x, width / 2))
    centre_y = draw.uniform(min(reach_y, height / 2), max(height - reach_y, height / 2))
    # fillPoly works on pixel centres at integer coordinates; 4 fractional bits keep the shape
    # smooth on small pictures.
    points = np.stack([xs + centre_x - 0.5, ys + centre_y - 0.5], 1) * 16
    hole = np.zeros((height, width), np.uint8)
    cv2.fillPoly(hole, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return torch.from_numpy(hole).float()[None, None]


def box_mask(height: int, width: int, fraction: float, draw: Draw) -> Tensor:
    """An axis-aligned box of about `fraction` of the picture (aspect up to 4 either way),
    wholly inside it. A float32 [1, 1, H, W] mask."""
    aspect = math.exp(draw.uniform(-math.log(4), math.log(4)))
    area = fraction * height * width
    box_h = max(1, min(height, round(math.sqrt(area / aspect))))
    box_w = max(1, min(width, round(area / box_h)))
    top = draw.integer(0, height - box_h)
    left = draw.integer(0, width - box_w)
    mask = torch.zeros(1, 1, height, width)
    mask[..., top : top + box_h, left : left + box_w] = 1
    return mask


def removal_hole(height: int, width: int, draw: Draw) -> tuple[Tensor, dict[str, object]]:
    """A hole of the kind and size a user would cut (module docstring) and what was drawn."""
    kind = draw.pick(HOLE_KINDS, HOLE_WEIGHTS)
    if kind == "strokes":
        # freeform_mask draws its share in the band from its own NumPy generator, seeded here.
        seed = draw.integer(0, 2**31 - 1)
        return freeform_mask(height, width, HOLE_BANDS[kind], seed), {"hole_kind": kind}
    fraction = draw.uniform(*HOLE_BANDS[kind])
    shape = object_mask if kind == "object" else box_mask
    return shape(height, width, fraction, draw), {"hole_kind": kind}


def degrade_removal(x: Tensor, seed: int) -> tuple[Tensor, Tensor, dict[str, object]]:
    """[B, 3, H, W] pictures in [-1, 1] as `real-inpaint` makes them, one draw for the batch:
    (the pictures with their known pixels as a JPEG holds them and a white hole, the [B, 1, H,
    W] hole, details)."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected a floating-point [B, 3, H, W] tensor, got {x.shape}")
    draw = Draw(seed)
    mask, details = removal_hole(*x.shape[-2:], draw)
    known = x
    quality = draw.integer(*JPEG_QUALITY) if draw.chance(JPEG_PROB) else None
    if quality is not None:
        known = jpeg_real(x, quality)
    mask = mask.to(dtype=x.dtype, device=x.device).expand(x.shape[0], 1, *x.shape[-2:])
    return apply_hole(known, mask), mask, {**details, "jpeg_quality": quality}


def describe_removal() -> dict[str, object]:
    """The operator's parameters, for a manifest."""
    return {
        "holes": {
            kind: {"share": weight, "band": list(HOLE_BANDS[kind])}
            for kind, weight in zip(HOLE_KINDS, HOLE_WEIGHTS, strict=True)
        },
        "known_pixels": f"JPEG quality {JPEG_QUALITY[0]}-{JPEG_QUALITY[1]} "
        f"(Pillow, 4:2:0) with probability {JPEG_PROB}, else clean",
        "drawn": "per picture, from its seed",
    }
