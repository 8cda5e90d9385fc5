"""Training pictures: photographs held in memory, served as random crops, degraded on the fly.

`PhotoCrops` gives clean crops x0; `Degrader` turns them into the network's input x1 for one
degradation task or a mixture of tasks of a family; `random_subcrop` cuts a window out of a
degraded crop, so that a degradation can see more of the picture than the network trains on.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..degrade import Degraded, Operator, get_operator, nearest_upsample4
from ..degrade.baselines import classical_baseline
from ..degrade.tasks import FAMILIES, TASKS
from ..errors import UsageError
from ..pictures.files import read_image
from ..pictures.inputs import collect_inputs
from ..restoring.start import Upscale, make_x1


def _to_uint8(pixels: Tensor) -> Tensor:
    return ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class PhotoCrops:
    """Random crops (with horizontal flips) of every photo in a folder.

    Photos are kept as uint8 at their own size and, when they are large, also at half size, so
    that crops see detail at more than one scale. Each photo is drawn with equal probability.
    """

    def __init__(self, folder: Path, *, crop: int, recursive: bool = True) -> None:
        self.crop = crop
        self.photos: list[Tensor] = []
        sources = collect_inputs([str(folder)], recursive=recursive)
        for source in sources:
            pixels = read_image(source.path).pixels
            self.photos.append(_to_uint8(pixels))
            if min(pixels.shape[-2:]) >= 4 * crop:
                half = F.interpolate(pixels, scale_factor=0.5, mode="area")
                self.photos.append(_to_uint8(half))
        self.photos = [p for p in self.photos if min(p.shape[-2:]) >= crop]
        self.description = f"{len(sources)} photos ({len(self.photos)} with half-size copies)"
        if not self.photos:
            raise UsageError(f"{folder}: no photo is at least {crop}x{crop} pixels")

    def __len__(self) -> int:
        return len(self.photos)

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        """[size, 3, crop, crop] float32 crops in [-1, 1]."""
        crops = []
        for index in torch.randint(len(self.photos), (size,), generator=generator).tolist():
            photo = self.photos[index]
            top = int(torch.randint(photo.shape[1] - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(photo.shape[2] - self.crop + 1, (1,), generator=generator))
            crop = photo[:, top : top + self.crop, left : left + self.crop]
            if bool(torch.rand((), generator=generator) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
        return torch.stack(crops).float() / 127.5 - 1


def quantize8(x: Tensor) -> Tensor:
    """Round [-1, 1] values to the 256 levels of an 8-bit picture, as users' inputs are."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def schedule_defaults(task: str) -> tuple[float, bool]:
    """(beta_max, ot_ode) of a degradation or family name: the paper's values for its tasks
    (docs/spec.md section 1), the family's for the others (jpeg-real-10 as jpeg-10...)."""
    if task in TASKS:
        return TASKS[task].beta_max, TASKS[task].ot_ode
    family = task if task in FAMILIES else get_operator(task).family
    first = next(t for t in TASKS.values() if t.family == family)
    return first.beta_max, first.ot_ode


class TrainingBatch(NamedTuple):
    """Clean pictures and what the network is given for them, [B, C, H, W] in [-1, 1]."""

    x0: Tensor
    x1: Tensor
    mask: Tensor | None
    """[B, 1, H, W], 1 = hole, for inpainting."""
    jpeg_quality: Tensor | None
    """[B] the quality each degraded picture's JPEG declares (jpeg family), else None."""


class DegradedBatch(NamedTuple):
    """What a `Degrader` makes of clean pictures."""

    x1: Tensor
    mask: Tensor | None
    """[B, 1, H, W], 1 = hole, for inpainting."""
    jpeg_quality: Tensor | None
    """[B] the quality each picture's last JPEG declares, for the jpeg family (what restore
    reads back from a file and tells a jpeg-quality network)."""


def declared_quality(operator: Operator, degraded: Degraded) -> int:
    """The quality the JPEG of `degraded` declares: the last one a real-world recipe saved, or
    the operator's own (jpeg-Q)."""
    quality = degraded.details.get("jpeg_quality", operator.params.get("quality"))
    if not isinstance(quality, int):
        raise ValueError(f"{operator.name} saved no JPEG")
    return quality


class Degrader:
    """The network input x1 (and the hole mask) of clean batches, degraded on the fly.

    One task, or a mixture of tasks of one family (each picture draws one uniformly). x1 is
    the task's degradation in the paper's form (sr4x: nearest-upsampled to full size) rounded
    to 8 bits as users' pictures are; for inpainting the hole is filled with standard normal
    noise, as the official runner feeds the network (docs/spec.md section 4), and each
    picture gets its own mask. With `classical`, x1 is instead each task's classical
    restoration of the 8-bit degraded picture (the checkpoint's start "classical"); with
    `start` (sr4x), a start network's upscale of it (a start network's name as the start).
    """

    def __init__(
        self, tasks: Sequence[str], *, classical: bool = False, start: Upscale | None = None
    ) -> None:
        if not tasks:
            raise UsageError("name at least one --task")
        self.operators = [get_operator(task) for task in tasks]
        families = {op.family for op in self.operators}
        if len(families) > 1:
            raise UsageError(
                f"a mixture of tasks must be of one family, not {', '.join(sorted(families))}"
            )
        if any(op.needs_mask for op in self.operators):
            raise UsageError("inpaint-mask needs your masks: train on --pairs instead")
        self.family = families.pop()
        if start is not None and self.family != "sr4x":
            raise UsageError(f"a start network upscales 4x: it cannot start {self.family}")
        self.classical, self.start = classical, start

    @property
    def tasks(self) -> list[str]:
        return [op.name for op in self.operators]

    def __call__(self, x0: Tensor, generator: torch.Generator) -> DegradedBatch:
        """x1 (and mask, JPEG qualities) for clean pictures x0 [B, 3, H, W] in [-1, 1], on x0's
        device."""
        choice = torch.randint(len(self.operators), (x0.shape[0],), generator=generator)
        x1 = torch.empty_like(x0)
        mask = torch.zeros_like(x0[:, :1]) if self.family == "inpaint" else None
        quality = torch.zeros(x0.shape[0]) if self.family == "jpeg" else None
        for k in range(len(self.operators)):
            index = (choice == k).nonzero().flatten().tolist()
            if index:
                part = self.degrade(k, x0[index], generator)
                x1[index] = part.x1
                if mask is not None and part.mask is not None:
                    mask[index] = part.mask
                if quality is not None and part.jpeg_quality is not None:
                    quality[index] = part.jpeg_quality
        return DegradedBatch(x1, mask, quality)

    def degrade(self, k: int, x0: Tensor, generator: torch.Generator) -> DegradedBatch:
        """x1 (and mask, JPEG qualities) of pictures x0 under the k-th task."""
        operator = self.operators[k]
        height, width = x0.shape[-2:]
        if operator.family != "inpaint":
            degraded, quality = self._apply(operator, x0, generator)
            degraded = quantize8(degraded)
            if self.start is not None:
                upscaled = [make_x1("sr4x", small[None], start=self.start) for small in degraded]
                return DegradedBatch(torch.cat(upscaled)[..., :height, :width], None, None)
            if self.classical:
                restored = self._classical(operator.name, degraded, (height, width), None)
                return DegradedBatch(restored, None, quality)
            if operator.family == "sr4x":
                degraded = nearest_upsample4(degraded)[..., :height, :width]
            return DegradedBatch(degraded, None, quality)
        holes, pictures = [], []
        for picture in x0.split(1):
            seed = int(torch.randint(2**62, (), generator=generator))
            cut = operator(picture, seed=seed)
            holes.append(cut.mask)
            pictures.append(cut.picture)
        # The operator's picture, not x0: its known pixels may be degraded too (real-inpaint's
        # JPEG); its hole is white.
        mask, known = torch.cat(holes), quantize8(torch.cat(pictures))
        if self.classical:
            return DegradedBatch(
                self._classical(operator.name, known, (height, width), mask), mask, None
            )
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        return DegradedBatch((1 - mask) * known + mask * noise, mask, None)

    @staticmethod
    def _apply(
        operator: Operator, x0: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """The operator's picture for x0 and, for the jpeg family, each picture's declared
        quality; a seeded operator draws a seed per picture."""
        if not operator.seeded:
            degraded = operator(x0)
            if operator.family != "jpeg":
                return degraded.picture, None
            quality = declared_quality(operator, degraded)
            return degraded.picture, torch.full((x0.shape[0],), float(quality))
        seeds = torch.randint(2**62, (x0.shape[0],), generator=generator).tolist()
        results = [operator(p, seed=s) for p, s in zip(x0.split(1), seeds, strict=True)]
        pictures = torch.cat([r.picture for r in results])
        if operator.family != "jpeg":
            return pictures, None
        return pictures, torch.tensor([float(declared_quality(operator, r)) for r in results])

    @staticmethod
    def _classical(
        task: str, degraded: Tensor, size: tuple[int, int], mask: Tensor | None
    ) -> Tensor:
        """The classical restoration of each degraded picture, on the pictures' device."""
        restored = [
            classical_baseline(
                task, picture[None], size, mask=None if mask is None else mask[i : i + 1].cpu()
            )
            for i, picture in enumerate(degraded.cpu())
        ]
        return torch.cat(restored).to(degraded.device, degraded.dtype)


def random_subcrop(
    tensors: Sequence[Tensor | None], size: int, generator: torch.Generator, *, align: int = 1
) -> list[Tensor | None]:
    """The same random size x size window of every [B, C, H, W] tensor (None passes through);
    the window's corner is a multiple of `align` (4 keeps sr4x's pixel cells whole)."""
    height, width = next(t for t in tensors if t is not None).shape[-2:]
    top = int(torch.randint((height - size) // align + 1, (), generator=generator)) * align
    left = int(torch.randint((width - size) // align + 1, (), generator=generator)) * align
    return [
        None if t is None else t[..., top : top + size, left : left + size].contiguous()
        for t in tensors
    ]
