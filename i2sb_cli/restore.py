"""Restoring a list of pictures with a loaded model: reading, batching, sampling, writing.

Each picture gets its own random generator seeded from (seed, its relative path), so that it
restores the same whatever the batch size, the order of the inputs or the tiling (DESIGN.md
decision 2). Pictures of the same size are sampled together up to the batch size. A picture
that cannot be read or restored is reported as a failed outcome and the run goes on.
"""

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .bridge import StepInfo, nfe_steps, per_image_noise, sample
from .errors import I2SBError, ImageError
from .images import Picture, mask_from_alpha, read_image, read_mask, write_image
from .inputs import InputFile
from .runtime.torch_backend import LoadedModel
from .tasks import make_x1
from .tiling import tiled

Status = Literal["restored", "skipped", "failed"]


@dataclass(frozen=True)
class RestoreSettings:
    family: str
    nfe: int
    seed: int = 0
    ot_ode: bool = False
    batch_size: int = 1
    tile: int = 512
    tile_overlap: int = 64
    upsampled: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class Job:
    source: InputFile
    output: Path
    mask: Path | None = None


@dataclass(frozen=True)
class Outcome:
    source: Path
    output: Path
    status: Status
    message: str = ""
    seed: int | None = None
    seconds: float = 0.0


@dataclass
class _Prepared:
    job: Job
    picture: Picture
    x1: Tensor
    mask: Tensor | None
    generator: torch.Generator
    seed: int


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one picture, from the run's seed and the picture's relative path."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Restorer:
    """Runs the bridge sampler over jobs with one model; yields one Outcome per job."""

    def __init__(
        self,
        model: LoadedModel,
        settings: RestoreSettings,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.on_step = on_step
        self.steps = nfe_steps(settings.nfe, model.schedule.interval)
        self.denoise = tiled(
            model.denoise,
            tile=settings.tile,
            overlap=settings.tile_overlap,
            multiple=model.size_multiple,
        )

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        batch: list[_Prepared] = []
        for job in jobs:
            if job.output.exists() and not self.settings.overwrite:
                yield Outcome(
                    job.source.path, job.output, "skipped", "output exists (use --overwrite)"
                )
                continue
            try:
                item = self._prepare(job)
            except I2SBError as exc:
                yield Outcome(job.source.path, job.output, "failed", str(exc))
                continue
            if batch and item.x1.shape != batch[0].x1.shape:
                yield from self._restore(batch)
                batch = []
            batch.append(item)
            # A full batch runs at once, not when the next picture has been read: outcomes keep
            # the input order as far as batching allows, and no extra picture waits in memory.
            if len(batch) == self.settings.batch_size:
                yield from self._restore(batch)
                batch = []
        if batch:
            yield from self._restore(batch)

    def _prepare(self, job: Job) -> _Prepared:
        picture = read_image(job.source.path)
        seed = image_seed(self.settings.seed, job.source.relative.as_posix())
        generator = torch.Generator().manual_seed(seed)
        mask = None
        if self.settings.family == "inpaint":
            mask = self._mask_for(job, picture)
            # The hole (mask 1) no longer needs transparency once it is filled.
            picture = dataclasses.replace(picture, alpha=None)
        x1 = make_x1(
            self.settings.family,
            picture.pixels,
            upsampled=self.settings.upsampled,
            mask=mask,
            noise=per_image_noise([generator]),
        )
        return _Prepared(job, picture, x1, mask, generator, seed)

    @staticmethod
    def _mask_for(job: Job, picture: Picture) -> Tensor:
        size = tuple(picture.pixels.shape[-2:])
        if job.mask is not None:
            return read_mask(job.mask, size)
        if picture.alpha is not None:
            return mask_from_alpha(picture.alpha)
        raise ImageError(
            f"{job.source.path}: inpainting needs a mask; pass --mask FILE|DIR "
            "(white = hole) or give the picture an alpha channel (transparent = hole)"
        )

    def _restore(self, batch: list[_Prepared]) -> Iterator[Outcome]:
        started = time.monotonic()
        device = self.model.device
        x1 = torch.cat([item.x1 for item in batch]).to(device)
        mask = None
        if batch[0].mask is not None:
            mask = torch.cat([item.mask for item in batch]).to(device)
        try:
            x0 = sample(
                self.denoise,
                x1,
                self.model.schedule,
                self.steps,
                ot_ode=self.settings.ot_ode,
                noise=per_image_noise([item.generator for item in batch]),
                mask=mask,
                cond=x1 if self.model.meta.cond_x1 else None,
                callback=self.on_step,
            ).cpu()
        except (RuntimeError, MemoryError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for item in batch:
                yield Outcome(
                    item.job.source.path, item.job.output, "failed", f"sampling failed: {reason}"
                )
            return
        if mask is not None:
            # The stochastic sampler's last projection leaves noise of std std_sb[0] on the
            # known pixels (as the official sampler does); a user expects them untouched.
            x0 = (1 - mask.cpu()) * x1.cpu() + mask.cpu() * x0
        seconds = (time.monotonic() - started) / len(batch)
        for item, restored in zip(batch, x0, strict=True):
            yield self._write(item, restored.unsqueeze(0), seconds)

    def _write(self, item: _Prepared, restored: Tensor, seconds: float) -> Outcome:
        job, meta, settings = item.job, self.model.meta, self.settings
        metadata = {
            "i2sb:model": meta.name,
            "i2sb:task": meta.task,
            "i2sb:nfe": str(settings.nfe),
            "i2sb:sampler": "ot-ode" if settings.ot_ode else "stochastic",
            "i2sb:seed": str(settings.seed),
            "i2sb:image-seed": str(item.seed),
        }
        try:
            write_image(job.output, restored, like=item.picture, metadata=metadata)
        except I2SBError as exc:
            return Outcome(job.source.path, job.output, "failed", str(exc), item.seed, seconds)
        return Outcome(job.source.path, job.output, "restored", "", item.seed, seconds)
