"""The task table: what each restoration task is.

The paper's nine tasks (docs/spec.md sections 1 and 4) fall into four families; a family names
what a user wants done (`--task sr4x`) and picks the bundled model of that family, while a
paper task name (`--task sr4x-bicubic`) also says exactly which degradation the input went
through. The checkpoint's own schedule options are authoritative over the table's defaults.
"""

from dataclasses import dataclass

from ..errors import UsageError

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
