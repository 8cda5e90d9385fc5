"""The classical answer to each degradation, which a learned restoration has to beat.

- sr4x: bicubic x4 upsampling of the low-resolution picture (Keys a = -0.75 as PyTorch has it,
  pixel centres aligned as the paper's downsampling aligns them: low-res pixel p sits at 4p + 1.5).
- blur-uni / blur-gauss (the paper's SVD operators): the Tikhonov-regularised inverse through the
  operator's own SVD (`degrade.blur.svd_deblur`); the operator is linear, known and noiseless, so
  this is a strong baseline.
- blur-*-plain (true convolutions): Wiener deconvolution with the known kernel.
- blur-blind and real-blur (a kernel nobody knows, perhaps grain and JPEG too): the blurred
  picture itself; a blind deblurrer must at least never make it worse.
- jpeg-Q / jpeg-real-Q / real-jpeg: the decoded picture itself.
- inpainting: OpenCV's `cv2.inpaint` with Telea's method (radius 3).
"""

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import get_operator, svd_deblur, wiener_deblur
from .sr import SCALE

INPAINT_RADIUS = 3
BLIND_BLURS = ("blur-blind", "real-blur")


def baseline_name(task: str) -> str:
    """The name of a degradation's classical baseline, as reports show it."""
    operator = get_operator(task)
    if operator.family == "sr4x":
        return "bicubic"
    if task in BLIND_BLURS:
        return "input"
    if operator.family == "deblur":
        return "wiener" if task.endswith("-plain") else "tikhonov"
    if operator.family == "jpeg":
        return "decoded"
    return "telea"


def low_resolution(picture: Tensor, *, upsampled: bool) -> Tensor:
    """The small picture of an sr4x pair (a nearest-upsampled one is subsampled back)."""
    return picture[..., ::SCALE, ::SCALE] if upsampled else picture


def bicubic_upsample(small: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic x4 upsampling of a [1, 3, h, w] picture, cropped to `size` and clamped."""
    big = F.interpolate(small.float(), scale_factor=SCALE, mode="bicubic", align_corners=False)
    return big[..., : size[0], : size[1]].clamp(-1, 1)


def telea_inpaint(picture: Tensor, mask: Tensor) -> Tensor:
    """cv2.inpaint (Telea) of the hole (mask 1) of a [1, 3, H, W] picture, on its 8-bit pixels."""
    levels = ((picture[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    bgr = np.ascontiguousarray(levels.permute(1, 2, 0).numpy()[..., ::-1])
    hole = (mask[0, 0] > 0.5).numpy().astype(np.uint8) * 255
    filled = cv2.inpaint(bgr, hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)[..., ::-1].copy()
    return torch.from_numpy(filled).permute(2, 0, 1)[None].float() / 127.5 - 1


def classical_baseline(
    task: str,
    degraded: Tensor,
    size: tuple[int, int],
    *,
    mask: Tensor | None = None,
    upsampled: bool = False,
) -> Tensor:
    """The baseline restoration of a degraded [1, 3, h, w] picture in [-1, 1] (as read from its
    file), at the clean picture's `size` (height, width), clamped to [-1, 1].

    `upsampled`: an sr4x picture is in the paper's nearest-upsampled form, not the small one.
    `mask` (1 = hole) is required for inpainting.
    """
    family = get_operator(task).family
    if family == "sr4x":
        return bicubic_upsample(low_resolution(degraded, upsampled=upsampled), size)
    if task in BLIND_BLURS:
        return degraded.clamp(-1, 1)
    if family == "deblur":
        kernel = task.split("-")[1]
        restore = wiener_deblur if task.endswith("-plain") else svd_deblur
        return restore(degraded, kernel).clamp(-1, 1)
    if family == "jpeg":
        return degraded.clamp(-1, 1)
    if mask is None:
        raise ValueError(f"{task}: inpainting needs the mask")
    return telea_inpaint(degraded, mask)
