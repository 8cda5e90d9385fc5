"""The bridge's start x1: how a degraded picture becomes the network's input.

Super-resolution forms the paper's x1 by nearest x4 upsampling, inpainting fills the hole with
noise as the official runner does, and a model that declares the start "classical" begins from
the classical restoration of its degradation (degrade/baselines.py).
"""

from torch import Tensor

from ..bridge import NoiseSource, fill_hole
from ..degrade import nearest_upsample4
from ..degrade.baselines import classical_baseline
from ..degrade.tasks import TASKS


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


def make_x1(
    family: str,
    pixels: Tensor,
    *,
    upsampled: bool = False,
    mask: Tensor | None = None,
    noise: NoiseSource | None = None,
    classical: str | None = None,
) -> Tensor:
    """The bridge's start point x1 for a degraded [1, 3, h, w] picture in [-1, 1].

    Super-resolution takes the small picture users have and forms the paper's x1 by nearest x4
    upsampling (unless the picture is `upsampled` already); inpainting fills the hole (mask 1)
    with noise, as the official runner does; the other families use the picture as it is.
    With `classical` (a degradation name), x1 is that degradation's classical restoration
    instead (Tikhonov or Wiener deconvolution, Telea inpainting...), pixels outside a hole kept.
    """
    if classical is not None:
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
