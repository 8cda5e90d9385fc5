"""Inpainting masks (1 = hole): the centre box, seeded brush strokes, Palette's mask file.

- `center_mask`: the official box, rows [H//4, H//4 + H//2) and the same for columns
  (docs/spec.md section 4: 128 x 128 at 256; `get_center_mask` for other sizes).
- `freeform_mask`: our own generator of free-form brush strokes, seeded. The paper used 10,000
  fixed masks from Palette, drawn with DeepFill v2's stroke generator and kept by hole fraction;
  we draw masks of that kind ourselves: thick strokes of 4 to 12 segments with round joints
  and caps, whose heading drifts between segments, sized relative to the picture's diagonal
  so that masks look alike at any size. A target fraction is drawn uniformly in the band and
  strokes are added segment by segment until it is reached; a segment that would overshoot
  the band is dropped and the strokes that follow get thinner. The hole fraction thus lands
  in the band for any picture of at least 16 x 16 pixels (on smaller ones a pixel is a large
  share of the picture and the closest reachable fraction is kept).
- `palette_mask`: a mask from Palette's `imagenet_freeform_masks.npz` for users who have it:
  per key ("10-20% freeform", ...) 10,000 masks of 256 x 256 bits packed with `np.packbits`
  over the whole array, mask k in bytes [8192 k, 8192 (k + 1)). The mask is chosen by the
  seed and resized to the picture by nearest neighbour (pixel centres).
- `apply_hole`: the official corrupted picture, hole set to +1 (white). The network itself is
  given noise in the hole (`bridge.fill_hole`); the white picture is what people look at.
- `resize_mask`, `dilate_mask`, `feather_weights`: what restore does to a user's mask: fit it
  to the picture (nearest neighbour), grow it to cover an object's halo, and soften the seam
  where the restored hole meets the kept pixels. Distances are Euclidean between pixel
  centres, so a dilation's structuring element is a disc and a feather follows the hole's shape.
"""

from __future__ import annotations

import functools
import math
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ImageError

FREEFORM_BANDS: dict[str, tuple[float, float]] = {
    "freeform1020": (0.1, 0.2),
    "freeform2030": (0.2, 0.3),
    "freeform3040": (0.3, 0.4),
}
"""Hole fraction bands of the free-form tasks (Palette's three categories)."""

PALETTE_SIZE = 256
_PALETTE_BYTES = PALETTE_SIZE * PALETTE_SIZE // 8
_MAX_STROKES = 200  # only tiny pictures, where the band cannot be hit exactly, get this far
_MIN_RADIUS = 0.75  # a brush at least one pixel wide


def center_mask(height: int, width: int) -> Tensor:
    """The official centre box as a float32 [1, 1, H, W] mask."""
    mask = torch.zeros(1, 1, height, width)
    mask[..., height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = 1
    return mask


def apply_hole(x: Tensor, mask: Tensor) -> Tensor:
    """The official corrupted picture `x (1 - mask) + mask`: the hole becomes white (+1)."""
    return x * (1 - mask) + mask


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A [B, 1, h, w] mask of {0, 1} (or a mask's levels) at `size` (height, width) by nearest
    neighbour on pixel centres: it keeps its values, and a hole's edge moves by at most half a
    pixel of the mask."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask.float(), size=tuple(size), mode="nearest-exact")


def dilate_mask(mask: Tensor, pixels: int) -> Tensor:
    """Grow the hole (1) of a [B, 1, H, W] mask by every pixel within `pixels` of it (a disc
    structuring element); 0 leaves it as it is."""
    if pixels < 0:
        raise ValueError(f"a dilation must be at least 0 pixels, got {pixels}")
    if pixels == 0:
        return mask
    # The distance of each kept pixel to the nearest hole pixel.
    distance = _distances(mask < 0.5)
    return ((mask >= 0.5) | (distance <= pixels)).float()


def feather_weights(mask: Tensor, pixels: int) -> Tensor:
    """The weight of the restoration when it is composited over the original picture: 0 on kept
    pixels (they stay exactly the original), rising linearly inside the hole over its first
    `pixels` pixels from the border (d / (pixels + 1) at distance d from the nearest kept
    pixel), 1 deeper in. With 0 the weights are the mask itself: a hard edge."""
    if pixels < 0:
        raise ValueError(f"a feather must be at least 0 pixels, got {pixels}")
    if pixels == 0:
        return mask.float()
    # The distance of each hole pixel to the nearest kept pixel (at least 1).
    distance = _distances(mask >= 0.5)
    return (distance / (pixels + 1)).clamp(max=1.0) * (mask >= 0.5)


def _distances(inside: Tensor) -> Tensor:
    """For each pixel of a boolean [B, 1, H, W] map that is True, its exact Euclidean distance
    to the nearest False pixel (0 on False pixels; a large number when there is none)."""
    maps = [
        cv2.distanceTransform(plane.numpy().astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        for plane in inside.reshape(-1, *inside.shape[-2:]).cpu()
    ]
    return torch.from_numpy(np.stack(maps)).reshape(inside.shape)


def hole_fraction(mask: Tensor) -> float:
    """The share of pixels in the hole."""
    return float(mask.double().mean())


def palette_key(band: tuple[float, float]) -> str:
    """The key of a band in Palette's mask file, e.g. "10-20% freeform"."""
    low, high = (round(100 * f) for f in band)
    return f"{low}-{high}% freeform"


def freeform_mask(height: int, width: int, band: tuple[float, float], seed: int) -> Tensor:
    """Seeded free-form brush strokes covering a fraction of the picture inside `band`.

    Returns a float32 [1, 1, H, W] mask; the same (size, band, seed) gives the same mask.
    """
    rng = np.random.default_rng(seed)
    low, high = band
    total = height * width
    target = math.ceil(rng.uniform(low, high) * total)
    ceiling = math.floor(high * total)
    hole = np.zeros((height, width), dtype=bool)
    covered, thinning = 0, 1.0
    diagonal = math.hypot(height, width)
    for _ in range(_MAX_STROKES):
        radius = max(_MIN_RADIUS, thinning * rng.uniform(diagonal / 60, diagonal / 20))
        for start, end in _stroke(rng, height, width, diagonal):
            rows, cols, inside = _capsule(start, end, radius, height, width)
            added = int(np.count_nonzero(inside & ~hole[rows, cols]))
            if covered + added > ceiling:
                thinning *= 0.7
                break
            hole[rows, cols] |= inside
            covered += added
            if covered >= target:
                return torch.from_numpy(hole).float()[None, None]
    return torch.from_numpy(hole).float()[None, None]


def _stroke(
    rng: np.random.Generator, height: int, width: int, diagonal: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The segments of one brush stroke: a walk from a random point whose heading drifts,
    bouncing off the borders (x, y in pixel units, origin at the top left)."""
    point = rng.uniform((0, 0), (width, height))
    heading = rng.uniform(0, 2 * math.pi)
    segments = []
    for _ in range(rng.integers(4, 13)):
        heading += rng.normal(0, 0.6)
        length = rng.uniform(0.5, 1.5) * diagonal / 8
        nxt = point + length * np.array([math.cos(heading), math.sin(heading)])
        # Bounce off the borders (mirror the step) rather than slide along them.
        bounds = np.array([width, height])
        nxt = np.abs(nxt)
        nxt = np.where(nxt > bounds, 2 * bounds - nxt, nxt).clip(0, bounds)
        heading = math.atan2(nxt[1] - point[1], nxt[0] - point[0])
        segments.append((point, nxt))
        point = nxt
    return segments


def _capsule(
    start: np.ndarray, end: np.ndarray, radius: float, height: int, width: int
) -> tuple[slice, slice, np.ndarray]:
    """Pixels whose centre lies within `radius` of the segment: a window and its boolean map."""
    (x0, y0), (x1, y1) = start, end
    cols = slice(
        max(0, math.floor(min(x0, x1) - radius)), min(width, math.ceil(max(x0, x1) + radius))
    )
    rows = slice(
        max(0, math.floor(min(y0, y1) - radius)), min(height, math.ceil(max(y0, y1) + radius))
    )
    ys = np.arange(rows.start, rows.stop)[:, None] + 0.5
    xs = np.arange(cols.start, cols.stop)[None, :] + 0.5
    dx, dy = x1 - x0, y1 - y0
    span = dx * dx + dy * dy
    along = ((xs - x0) * dx + (ys - y0) * dy) / span if span > 0 else np.zeros_like(xs * ys)
    along = np.clip(along, 0, 1)
    inside = (xs - x0 - along * dx) ** 2 + (ys - y0 - along * dy) ** 2 <= radius * radius
    return rows, cols, inside


@functools.lru_cache(maxsize=2)
def _palette_bits(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path) as data:
            if key not in data.files:
                found = ", ".join(repr(k) for k in data.files)
                raise ImageError(f"{path} has no {key!r} masks (it holds {found})")
            bits = data[key].reshape(-1)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ImageError(f"cannot read Palette masks from {path}: {err}") from err
    if bits.dtype != np.uint8 or bits.size < _PALETTE_BYTES:
        raise ImageError(f"{path}: {key!r} is not an array of bit-packed 256 x 256 masks")
    return bits


def palette_mask(
    path: str | Path, band: tuple[float, float], seed: int, size: tuple[int, int]
) -> tuple[Tensor, int]:
    """A mask of the band from Palette's file, picked by the seed and resized to `size`
    (height, width). Returns the float32 [1, 1, H, W] mask and the mask's index in the file."""
    bits = _palette_bits(Path(path).resolve(), palette_key(band))
    index = int(np.random.default_rng(seed).integers(bits.size // _PALETTE_BYTES))
    packed = bits[index * _PALETTE_BYTES : (index + 1) * _PALETTE_BYTES]
    mask = np.unpackbits(packed).reshape(PALETTE_SIZE, PALETTE_SIZE)
    height, width = size
    rows = (np.arange(height) + 0.5) * PALETTE_SIZE // height
    cols = (np.arange(width) + 0.5) * PALETTE_SIZE // width
    resized = mask[rows.astype(int)[:, None], cols.astype(int)[None, :]]
    return torch.from_numpy(resized.astype(np.float32))[None, None], index
