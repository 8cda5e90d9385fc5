"""A coarse-to-fine start for inpainting holes wider than the network learnt.

The bundled inpainting network was trained on 128x128 crops, so it has seen holes up to about
50 px from the nearest known pixel. A passer-by removed from a 512x512 photo leaves a hole
twice that wide, and Telea's fill (the network's classical start x1) is a smear in its middle,
a poor start. Halving the picture halves the hole's width in pixels: the same network fills
the hole of the half-size picture, and that fill, upscaled, becomes x1 inside the full-size
hole (loop.py). A hole still too wide at half size is halved again, at most `COARSE_LEVELS`
times.

Measured with a throwaway script on 16 test photos at 512x512, blobs of 8-20 % of the picture
and brush strokes, NFE 10, PSNR in the exact hole, against Telea's start: for holes of
half-width 70-121 px the coarse start at 1/2 gained +0.88, +0.29, +0.77, +0.64, -0.23, +0.23,
+0.30 and +0.01 dB (mean +0.36); for half-widths of 12-39 px it gained -0.69 to +0.33 dB (mean
about 0). Hence the threshold: a hole at most `COARSE_HALF_WIDTH` wide keeps Telea's start.
"""

import math

import cv2
import numpy as np
import torch.nn.functional as F
from torch import Tensor

from .crop import Box

COARSE_HALF_WIDTH = 48
"""Pixels from the nearest known pixel up to which a hole keeps Telea's start, its result
exactly what it was without the coarse start: the network learnt holes up to about 50 px, and
below 40 px the coarse start measured no gain (see above)."""
COARSE_LEVELS = 3
"""The most halvings of a hole still wider than `COARSE_HALF_WIDTH` at half size: a hole of
half-width up to about 8 x 48 = 384 px then reaches the width the network learnt at 1/8 size;
each level costs a quarter of the one above it."""


def hole_half_width(mask: Tensor) -> float:
    """The largest distance in pixels (Euclidean) from a pixel of the hole to the nearest known
    pixel, for a hole [..., H, W] (nonzero = hole, the union over the leading axes, as [H, W]
    or [1, 1, H, W]): how far into the hole the network has to carry the picture. 0 for no
    hole; infinite when no pixel is known. The picture's border is no known pixel."""
    height, width = mask.shape[-2:]
    hole = mask.reshape(-1, height, width).ne(0).any(0)
    if not hole.any():
        return 0.0
    if hole.all():
        return math.inf
    levels = hole.numpy().astype(np.uint8)
    return float(cv2.distanceTransform(levels, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max())


def halve(picture: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """A picture [N, 3, H, W] and its hole [N, 1, H, W] (1 = hole) at half size, each side
    ceil(side / 2): the picture's 2x2 cells averaged (an area downscale), and a cell made hole
    when any of its pixels is, so that no known pixel of the half-size picture mixes in what
    lay under the hole. An odd side first repeats its last row or column, so that every pixel
    counts and `upscale_fill` crops back to exactly the picture's size."""
    return F.avg_pool2d(_even(picture), 2), halve_mask(mask)


def halve_mask(mask: Tensor) -> Tensor:
    """The hole [N, 1, H, W] (1 = hole) of `halve`."""
    return F.max_pool2d(_even(mask), 2)


def halve_box(box: Box) -> Box:
    """Where the cells of the region `box` lie in the picture at half size (`halve`): the
    region's own halving is the picture's halving cut there when its top and left are even."""
    height, width = box.size
    top, left = box.top // 2, box.left // 2
    return Box(top, left, top + -(-height // 2), left + -(-width // 2))


def upscale_fill(small: Tensor, size: tuple[int, int]) -> Tensor:
    """A half-size restoration [N, 3, h, w] back at `size` (height, width): bicubic x2, whose
    pixel centres land where `halve` took them from, cropped to `size` and clamped to the
    pictures' range [-1, 1] (bicubic overshoots at edges)."""
    big = F.interpolate(small.float(), scale_factor=2, mode="bicubic", align_corners=False)
    return big[..., : size[0], : size[1]].clamp(-1, 1)


def coarse_levels(mask: Tensor) -> int:
    """How many halvings the coarse start of a hole [1, 1, H, W] (1 = hole) takes: none when
    it is at most `COARSE_HALF_WIDTH` wide, else until its half-size hole is (up to
    `COARSE_LEVELS`). A halving that would leave no known pixel is not made."""
    levels = 0
    while levels < COARSE_LEVELS and hole_half_width(mask) > COARSE_HALF_WIDTH:
        mask = halve_mask(mask)
        if mask.bool().all():
            break
        levels += 1
    return levels


def _even(x: Tensor) -> Tensor:
    """[N, C, H, W] with an odd side's last row or column repeated once."""
    height, width = x.shape[-2:]
    if height % 2 == 0 and width % 2 == 0:
        return x
    return F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
