"""The bridge's start x1: how a degraded picture becomes the network's input.

Super-resolution forms the paper's x1 by nearest x4 upsampling, inpainting fills the hole with
noise as the official runner does, a model that declares the start "classical" begins from
the classical restoration of its degradation (degrade/baselines.py), and one that names a
start network (nets/starts.py: Real-ESRGAN x4plus) begins from that network's upscale, so that
the bridge only refines a picture that is already sharp (two-stage restoration, as DiffBIR's).
The start runs where the model runs (PyTorch, or ONNX Runtime: runtime/start_export.py), in the
same tiles here either way.
"""

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from ..bridge import NoiseSource, fill_hole
from ..degrade import apply_hole, nearest_upsample4
from ..degrade.baselines import classical_baseline, low_resolution
from ..degrade.tasks import TASKS
from ..nets.starts import START_NETWORKS, load_start
from ..runtime.torch_backend import LoadedModel
from .tiling import blend_spans

Upscale = Callable[[Tensor], Tensor]
"""A start network on a low-resolution [1, 3, h, w] picture in [-1, 1]: [1, 3, 4h, 4w]."""

START_TILE = 128
"""Low-resolution pixels a start network sees at once: a 128x128 call of Real-ESRGAN peaks
at about 2.5 GB; larger pictures go in tiles, so memory stays bounded whatever the picture."""
START_OVERLAP = 32
"""Low-resolution pixels that neighbouring tiles share. Real-ESRGAN's receptive field is wide:
the same pixel upscaled within two different tiles differs by up to a dozen levels 50 pixels
from a tile's edge, so tiles are blended over a wide stretch rather than cut."""


def output_scale(family: str, *, upsampled: bool) -> int:
    """How much larger the restored picture is than the input picture."""
    return 4 if family == "sr4x" and not upsampled else 1


def classical_degradation(start: str, degradation: str, task: str | None) -> str | None:
    """The degradation whose classical restoration a model starts from, or None when it starts
    from the paper's x1: a paper task the user named, else the model's own `degradation`
    (checkpoint fields `start` and `degradation`)."""
    if start != "classical":
        return None
    return task if task in TASKS else degradation


def tiled_upscale(net: torch.nn.Module, scale: int, low: Tensor) -> Tensor:
    """`net` (a `scale`x upscaler) on a [B, 3, h, w] picture: whole up to START_TILE pixels a
    side, else in tiles overlapping by START_OVERLAP whose results are blended with smooth
    weights (restoring/tiling.py), so that no seam shows where they meet. The pixels depend on
    the picture alone, not on the machine or a batch."""
    height, width = low.shape[-2:]
    out = low.new_zeros(low.shape[0], 3, height * scale, width * scale)
    rows = blend_spans(height, START_TILE, START_OVERLAP, scale=scale)
    cols = blend_spans(width, START_TILE, START_OVERLAP, scale=scale)
    with torch.inference_mode():
        for top, bottom, row_weights in rows:
            for left, right, col_weights in cols:
                result = net(low[..., top:bottom, left:right])
                weight = (row_weights[:, None] * col_weights[None, :]).to(result)
                out[..., top * scale : bottom * scale, left * scale : right * scale] += (
                    result * weight
                )
    return out


@functools.lru_cache(maxsize=2)
def start_upscaler(name: str) -> Upscale:
    """The named start network as an `Upscale` (loaded once per process), in PyTorch."""
    net, info = load_start(name)
    # oneDNN's CPU convolutions run 20-28 % faster on weights in channels-last order
    # (Real-ESRGAN x4plus on a 64 x 64 picture, 2 threads: 11.1-13.8 s against 8.0-11.0 s on a
    # busy machine); the outputs agree within 4e-6.
    net = net.to(memory_format=torch.channels_last)
    return functools.partial(tiled_upscale, net, info.scale)


def start_of(start: str) -> Upscale | None:
    """The start network a checkpoint's `start` names, loaded; None for the other starts."""
    return start_upscaler(start) if start in START_NETWORKS else None


def model_start(model: LoadedModel) -> Upscale | None:
    """The start network `model`'s checkpoint names, in the model's runtime: the one the model
    brings (ONNX Runtime's, runtime/start_export.py), else PyTorch's; in the same tiles either
    way, so that both runtimes give the same x1. None for the other starts."""
    if model.start is None:
        return start_of(model.meta.start)
    return functools.partial(tiled_upscale, model.start, START_NETWORKS[model.meta.start].scale)


def make_x1(
    family: str,
    pixels: Tensor,
    *,
    upsampled: bool = False,
    mask: Tensor | None = None,
    noise: NoiseSource | None = None,
    classical: str | None = None,
    start: Upscale | None = None,
) -> Tensor:
    """The bridge's start point x1 for a degraded [1, 3, h, w] picture in [-1, 1].

    Super-resolution takes the small picture users have and forms the paper's x1 by nearest x4
    upsampling (unless the picture is `upsampled` already); inpainting fills the hole (mask 1)
    with noise, as the official runner does; the other families use the picture as it is.
    With `classical` (a degradation name), x1 is that degradation's classical restoration
    instead (Tikhonov or Wiener deconvolution, Telea inpainting...), pixels outside a hole kept.
    With `start` (sr4x), x1 is a start network's upscale of the small picture.
    """
    if start is not None:
        if family != "sr4x":
            raise ValueError(f"start networks upscale 4x; {family} has none")
        height, width = pixels.shape[-2:]
        upscaled = start(low_resolution(pixels, upsampled=upsampled).float())
        size = (height, width) if upsampled else (4 * height, 4 * width)
        return upscaled[..., : size[0], : size[1]].to(pixels.dtype)
    if classical is not None:
        if mask is not None:
            # What lies under the hole never reaches x1, whatever the classical method reads.
            pixels = apply_hole(pixels, mask)
        scale = output_scale(family, upsampled=upsampled)
        size = (pixels.shape[-2] * scale, pixels.shape[-1] * scale)
        return classical_baseline(classical, pixels, size, mask=mask, upsampled=upsampled)
    if family == "sr4x":
        return pixels if upsampled else nearest_upsample4(pixels)
    if family == "inpaint":
        if mask is None or noise is None:
            raise ValueError("inpainting needs a mask and a noise source")
        return fill_hole(pixels, mask, noise)
    return pixels
