"""The task table: what each restoration task is, and how its network input x1 is formed.

The paper's nine tasks (I2SB_SPEC.md sections 1 and 4) fall into four families; a family names
what a user wants done (`--task sr4x`) and picks the bundled model of that family, while a
paper task name (`--task sr4x-bicubic`) also says exactly which degradation the input went
through. The checkpoint's own schedule options are authoritative over the table's defaults.
"""

from dataclasses import dataclass

from torch import Tensor

from .bridge import NoiseSource, fill_hole
from .degrade import nearest_upsample4
from .errors import UsageError
from .evaluation.baselines import classical_baseline

FAMILIES = ("sr4x", "deblur", "jpeg", "inpaint")


@dataclass(frozen=True)
class Task:
    name: str
    family: str
    beta_max: float
    ot_ode: bool
    summary: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("sr4x-pool", "sr4x", 0.3, False, "4x super-resolution of 4x4 average-pooled pictures"),
        Task(
            "sr4x-bicubic",
            "sr4x",
            0.3,
            False,
            "4x super-resolution of bicubic-downsampled pictures",
        ),
        Task("blur-uni", "deblur", 1.0, True, "deblurring of a 9-tap uniform blur"),
        Task("blur-gauss", "deblur", 1.0, True, "deblurring of a Gaussian blur (sigma 10, 5 taps)"),
        Task("jpeg-5", "jpeg", 0.3, False, "JPEG artefact removal at quality 5"),
        Task("jpeg-10", "jpeg", 0.3, False, "JPEG artefact removal at quality 10"),
        Task("inpaint-center", "inpaint", 1.0, True, "inpainting of a centre box"),
        Task("inpaint-freeform1020", "inpaint", 1.0, True, "inpainting of 10-20% brush strokes"),
        Task("inpaint-freeform2030", "inpaint", 1.0, True, "inpainting of 20-30% brush strokes"),
    ]
}

TASK_CHOICES = (*FAMILIES, *TASKS)


def family_of(task: str) -> str:
    """The family of a family or paper task name; a UsageError lists the choices."""
    if task in FAMILIES:
        return task
    if task in TASKS:
        return TASKS[task].family
    raise UsageError(f"unknown task {task!r}; choose one of: {', '.join(TASK_CHOICES)}")


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
