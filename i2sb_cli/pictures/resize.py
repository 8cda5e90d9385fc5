"""The final size of a restored picture: `--outscale`, as Real-ESRGAN's option of that name.

A model restores at its own scale (4x for sr4x, 1x for the others); `--outscale S` then
resizes its result to S times the input's size, so that a 4x model gives a 2x, 3x or 1.5x
picture. Shrinking averages the pixels each output pixel covers (OpenCV's area resampling, an
exact box filter: no aliasing); enlarging interpolates with an 8 x 8 Lanczos kernel (OpenCV's
Lanczos-4, as Real-ESRGAN does), whose slight overshoot at edges is clipped to the valid range.
"""

import cv2
import numpy as np
import torch
from torch import Tensor

from ..errors import UsageError

MAX_OUTSCALE = 16.0
"""The largest --outscale accepted: past a 4x model's own 4x, Lanczos invents nothing more,
and a mistyped 400 would only fill memory."""


def check_outscale(scale: float) -> float:
    """`scale` when it is a usable --outscale (above 0, at most `MAX_OUTSCALE`)."""
    if not 0 < scale <= MAX_OUTSCALE:
        raise UsageError(
            f"--outscale {scale:g}: the output's size is a factor of the input's above 0 "
            f"and at most {MAX_OUTSCALE:g} (e.g. 2 or 1.5)"
        )
    return scale


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) `size` times `scale`, rounded, and at least one pixel."""
    height, width = size
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_pixels(pixels: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, C, H, W] pixels resampled to `size` (height, width): area averaging to shrink,
    Lanczos-4 to enlarge (by the change of area, when one side grows and the other shrinks).
    Values are clipped to [-1, 1] before (a sampler's result may stray past them, and the
    picture written would not hold those values) and after. Pixels already of that size come
    back as they are."""
    height, width = size
    if tuple(pixels.shape[-2:]) == (height, width):
        return pixels
    shrinking = height * width < pixels.shape[-2] * pixels.shape[-1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    planes = pixels.detach().to("cpu", torch.float32).clamp(-1, 1).permute(0, 2, 3, 1).numpy()
    resized = [
        cv2.resize(np.ascontiguousarray(plane), (width, height), interpolation=method)
        for plane in planes
    ]
    # cv2 drops the channel axis of a one-channel picture.
    stacked = np.stack([r if r.ndim == 3 else r[..., None] for r in resized])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).clamp(-1, 1).to(pixels.dtype)
