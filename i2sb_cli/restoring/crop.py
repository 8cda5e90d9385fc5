"""Inpainting only the region around a hole: a crop of the picture with enough context.

A hole of a tenth of a photo does not need the network on the other nine tenths: the known
pixels far from the hole are put back as they were anyway (loop.py's composite). The bridge
runs on the hole's bounding box grown by `CONTEXT` pixels of picture on every side, and the
result is pasted back.

The box's edges lie on the grid of the network's size multiple counted from the picture's
corner, so that each pixel of the crop falls in the same patch (a network with `patch_size`
folds p x p pixels into channels) and the same cell of every downsampling as in the whole
picture: neither is shift-invariant, and a box off the grid changed the hole by 24 dB of PSNR
where one on it changed it by 53. A box at the picture's last row or column ends there, padded
as the whole picture is (tiling.pad_to_multiple). What the crop still changes is what the
network sees beyond the context and its GroupNorm statistics, the crop's rather than the
picture's. So the context was measured, not assumed:
`python benchmarks/inpaint_crop.py` restores held-out photos at 512x512 with the bundled
inpainting model at NFE 10, object-sized holes painted as people paint them, whole and cropped,
and compares the two inside the hole. The noise a crop's sampler draws is the whole picture's,
cut to the crop (`crop_noise`), so that the crop and the whole picture differ by the network's
view alone; a seed gives one picture, whatever the batch.

Several holes get one crop, the bounding box of them all: a crop that would cover more than
`WHOLE_SHARE` of the picture restores the whole picture instead, which is then no slower than
before.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

import torch
from torch import Tensor

from ..bridge.sampler import NoiseSource

CONTEXT = 64
"""Pixels of picture kept around a hole's bounding box, measured by `python
benchmarks/inpaint_crop.py` (inpaint-p4, 25 photos of data/val and data/test at 512x512, a blob
of 8-20 % and brush strokes each, NFE 10, seed 0): the smallest context of 16, 32, 64, 96 and
128 px at which the hole of the crop's restoration differs from the whole picture's by less
than 1 level on average (0.86 for blobs, 0.96 for strokes; 32 px: 1.05 and 1.11) with a hole
PSNR between the two above 40 dB (46.6 dB mean). Of the 35 pictures it crops (of 50), 34 are
above 40 dB or below 1 level each (the last, 38.4 dB); the crop's hole is as close to the photo
as the whole picture's (-0.02 dB). The network sees 58 % of the pixels on average, whole
pictures included."""
WHOLE_SHARE = 0.6
"""A crop of more than this share of the picture's area restores the whole picture instead:
it would save less than 40 % of the time, and the picture is then the whole one's exactly."""


@dataclass(frozen=True)
class Box:
    """A rectangle of a picture, in pixels: rows top to bottom - 1, columns left to right - 1."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.bottom - self.top, self.right - self.left

    @property
    def window(self) -> tuple[EllipsisType, slice, slice]:
        """The index of the box in a [..., H, W] tensor."""
        return ..., slice(self.top, self.bottom), slice(self.left, self.right)


def hole_box(hole: Tensor, *, context: int | None, multiple: int) -> Box:
    """The region to restore for a hole [..., H, W] (nonzero = hole, the union over the
    leading axes): its bounding box grown by `context` pixels on every side, rounded out to
    the grid of `multiple` pixels from the picture's top left corner, clipped to the picture.
    The whole picture when `context` is None, or when the region would cover more than
    WHOLE_SHARE of the picture's area."""
    height, width = hole.shape[-2:]
    whole = Box(0, 0, height, width)
    marked = hole.reshape(-1, height, width).ne(0).any(0)
    if context is None or not marked.any():
        return whole
    rows = marked.any(1).nonzero()[:, 0]
    columns = marked.any(0).nonzero()[:, 0]
    top, bottom = _span(int(rows[0]), int(rows[-1]) + 1, context, multiple, height)
    left, right = _span(int(columns[0]), int(columns[-1]) + 1, context, multiple, width)
    box = Box(top, left, bottom, right)
    if (bottom - top) * (right - left) > WHOLE_SHARE * height * width:
        return whole
    return box


def crop_noise(noise: NoiseSource, size: tuple[int, int], boxes: Sequence[Box]) -> NoiseSource:
    """`noise` for a batch of crops, one box per row: each draw is made at the whole
    picture's `size` (height, width) and cut to its row's box, so that a crop's sampler gets
    the noise that the whole picture's would have had there."""

    def draw(like: Tensor) -> Tensor:
        if like.shape[0] != len(boxes):
            raise ValueError(f"batch of {like.shape[0]} crops but {len(boxes)} boxes")
        # A stand-in of the whole picture's shape that holds one element: the draw reads only
        # its shape, device and dtype.
        whole = like.new_empty(()).expand(*like.shape[:-2], *size)
        drawn = noise(whole)
        return torch.stack([row[box.window] for row, box in zip(drawn, boxes, strict=True)])

    return draw


def _span(start: int, end: int, context: int, multiple: int, length: int) -> tuple[int, int]:
    """[start, end) grown by `context` on both sides, rounded out to the grid of `multiple`
    pixels from the picture's first one, and clipped to [0, length)."""
    start = (start - context) // multiple * multiple
    end = -(-(end + context) // multiple) * multiple
    return max(start, 0), min(end, length)
