"""What a network sees besides x_t and t: its cond input.

A `cond_x1` network (I2SB's option; every network this project trains) sees the degraded
picture x1 beside x_t. A checkpoint's `condition` may add what a picture says about itself:
"jpeg-quality" adds one constant plane holding the IJG quality q (1-100) of the picture's JPEG
as q / 50 - 1, in the pixels' range (q 100 -> 1, q 50 -> 0, q 10 -> -0.8). One network then
cleans a quality-75 file lightly and a quality-10 one hard, where a blind one smooths both
alike. The quality is a hint, not a promise: a file saved twice declares its last quality, and
training tells the network the same (the last JPEG's), so it still reads the pixels.
"""

import torch
from torch import Tensor

CONDITIONS: dict[str, int] = {"": 0, "jpeg-quality": 1}
"""A checkpoint's `condition` and the number of input planes it adds after x1."""

UNKNOWN_JPEG_QUALITY = 50
"""The quality a jpeg-quality network is told when neither the file's tables, nor its pixels,
nor the user say one: the middle of the range it was trained on (10-95)."""


def quality_plane(quality: Tensor, size: tuple[int, int]) -> Tensor:
    """[B] JPEG qualities (1-100) as [B, 1, H, W] constant planes q / 50 - 1."""
    values = quality.float() / 50 - 1
    return values.view(-1, 1, 1, 1).expand(-1, 1, *size)


def network_cond(
    x1: Tensor, *, cond_x1: bool, condition: str = "", jpeg_quality: Tensor | None = None
) -> Tensor | None:
    """The network's cond input for x1 [B, 3, H, W]: None for an unconditioned network, x1
    for a cond_x1 one, x1 and the condition's planes for a checkpoint with a `condition`
    (`jpeg_quality`: [B] qualities, one per picture)."""
    if not cond_x1:
        return None
    if not condition:
        return x1
    if condition != "jpeg-quality":
        raise ValueError(f"unknown condition {condition!r}")
    if jpeg_quality is None or jpeg_quality.numel() != x1.shape[0]:
        raise ValueError("this network is told each picture's JPEG quality: pass one per picture")
    plane = quality_plane(jpeg_quality.to(x1.device), tuple(x1.shape[-2:])).to(x1.dtype)
    return torch.cat([x1, plane], dim=1)
