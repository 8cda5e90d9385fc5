"""The bridge's path made visible: from the degraded picture to the restoration, step by step.

I2SB's generative path starts at the degraded picture x1, not at noise (paper, section 3), so
its states x_n are pictures one can look at. `TrajectoryRecorder` listens to the sampler's
callback (no extra network call) and keeps, for each picture of a batch, small copies of the
state x_n after each step and of the network's estimate x0_hat that produced it; `strip` lays
them out in two labelled rows and `animation` writes the states as an animated GIF.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from ..bridge.sampler import StepInfo
from ..pictures.files import atomic_write

THUMB = 192  # longest side of a strip's tile
FRAME = 384  # longest side of an animation frame
LABEL_BAR = 14


@dataclass(frozen=True)
class Frame:
    """One step of one picture: the network saw the state at step n and estimated x0_hat; the
    sampler moved the state to step prev."""

    n: int
    prev: int
    x: Tensor
    """[3, h, w] the state at step prev, downscaled to at most FRAME on its longest side."""
    x0_hat: Tensor
    """[3, h, w] the network's estimate of the clean picture at step n, downscaled likewise."""


@dataclass
class TrajectoryRecorder:
    """A sampler callback that keeps each picture's frames, downscaled at once so that memory
    stays small whatever the picture's size. `start` holds each picture's x1 (call `begin`)."""

    start: list[Tensor] = field(default_factory=list)
    frames: list[list[Frame]] = field(default_factory=list)

    def begin(self, x1: Tensor) -> None:
        """Start a batch from its x1 [B, 3, H, W], the bridge's starting state."""
        self.start = list(_small(x1, FRAME))
        self.frames = [[] for _ in self.start]

    def __call__(self, step: StepInfo) -> None:
        for i, (x, x0_hat) in enumerate(zip(_small(step.x, FRAME), _small(step.x0_hat, FRAME),
                                            strict=True)):  # fmt: skip
            self.frames[i].append(Frame(step.n, step.prev, x, x0_hat))


def _small(batch: Tensor, side: int) -> Tensor:
    """A [B, 3, H, W] batch on the CPU in float32, its longest side at most `side`."""
    batch = batch.detach().float().cpu()
    scale = side / max(batch.shape[-2:])
    if scale >= 1:
        return batch.clone()
    size = (max(1, round(batch.shape[-2] * scale)), max(1, round(batch.shape[-1] * scale)))
    return F.interpolate(batch, size=size, mode="area")


def chosen(frames: Sequence[Frame], columns: int) -> list[Frame]:
    """At most `columns` frames spread evenly over the steps, the last one always included."""
    if len(frames) <= columns:
        return list(frames)
    picks = torch.linspace(0, len(frames) - 1, columns).round().long().unique().tolist()
    return [frames[i] for i in picks]


def strip(x1: Tensor, frames: Sequence[Frame], *, columns: int = 8) -> Image.Image:
    """Two rows: the states (x1 first, then x_n after each chosen step) and, below each state,
    the estimate x0_hat it was moved towards; each tile labelled with its step."""
    shown = chosen(frames, columns - 1)
    top = [("x1 (start)", x1)] + [(f"x_n, n={f.prev}", f.x) for f in shown]
    bottom = [("", None)] + [(f"x0_hat, n={f.n}", f.x0_hat) for f in shown]
    tiles = [[_tile(label, picture) for label, picture in row] for row in (top, bottom)]
    width, height = tiles[0][0].size
    sheet = Image.new("RGB", (width * len(top), 2 * height), (24, 24, 24))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile is not None:
                sheet.paste(tile, (c * width, r * height))
    return sheet


def _tile(label: str, picture: Tensor | None) -> Image.Image | None:
    if picture is None:
        return None
    image = to_image(_small(picture[None], THUMB)[0])
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width, LABEL_BAR), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return image


def animation(
    x1: Tensor, frames: Sequence[Frame], target: Path | BinaryIO, *, seconds: float = 3.0
) -> None:
    """The states from x1 to the last step as an animated GIF that loops, the last held longer."""
    images = [to_image(x1)] + [to_image(f.x) for f in frames]
    step_ms = max(40, round(1000 * seconds / len(images)))
    durations = [step_ms] * (len(images) - 1) + [1500]
    images[0].save(
        target,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=durations,
        loop=0,
    )


def save_trajectory(x1: Tensor, frames: Sequence[Frame], base: Path) -> None:
    """`base`_trajectory.png (the strip) and `base`_trajectory.gif (the animation), each
    written atomically, so that a file that exists is whole."""
    sheet = strip(x1, frames)
    atomic_write(base.with_name(f"{base.name}_trajectory.png"), lambda f: sheet.save(f, "PNG"))
    gif = base.with_name(f"{base.name}_trajectory.gif")
    atomic_write(gif, lambda f: animation(x1, frames, f))


def to_image(picture: Tensor) -> Image.Image:
    """A [3, H, W] picture in [-1, 1] as 8-bit RGB."""
    levels = ((picture.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(levels.permute(1, 2, 0).contiguous().numpy())
