"""Restoring a list of pictures with a loaded model: reading, batching, sampling, writing.

Each picture gets its own random generator seeded from (seed, its relative path), so that it
restores the same whatever the batch size, the order of the inputs or the tiling (DESIGN.md
decision 2). Pictures of the same size are sampled together up to the batch size. A picture
that cannot be read or restored is reported as a failed outcome and the run goes on; an output
that exists already is skipped before its picture is even read, so that running the same
command again after an interruption continues where it stopped.

With `samples` K > 1, each picture is restored K times from K generators, seeded from (seed,
its relative path, k), in one network batch; the K results are written with `_s0` ...
`_s{K-1}` before their extension, then the map of their spread (`_spread.png`), last, so that
its existence says the picture is done.
"""

import dataclasses
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .bridge import StepInfo, nfe_steps, per_image_noise, sample
from .errors import I2SBError, ImageError, UsageError
from .evaluation.spread import heat_map, spread
from .evaluation.trajectory import Frame, TrajectoryRecorder, save_trajectory
from .pictures.files import (
    ALPHA_FORMATS,
    Picture,
    alpha_safe_path,
    atomic_write,
    encode_image,
    mask_from_alpha,
    read_image,
    read_mask,
    write_image,
)
from .pictures.inputs import STDIO, InputFile
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
    detail: float = 1.0
    """The sampler's mix of its sample with its one-step estimate (bridge.sample)."""
    batch_size: int = 1
    tile: int = 512
    tile_overlap: int = 64
    tile_batch: int = 1
    """Tiles per network call."""
    upsampled: bool = False
    overwrite: bool = False
    mask_threshold: float = 0.5
    invert_mask: bool = False
    max_pixels: int | None = None
    """Pictures and masks larger than this are refused (None: Pillow's bomb guard)."""
    quality: int | None = None
    """JPEG and WebP quality (None: JPEG 95, WebP lossless)."""
    stdout_format: str = "PNG"
    """The format of a picture written to stdout (output `STDIO`)."""
    model_sha256: str | None = None
    """Recorded in each output's metadata when known."""
    classical: str | None = None
    """The degradation whose classical restoration is x1 (models with start "classical")."""
    trajectory: Path | None = None
    """A folder for each picture's trajectory strip and animation, named after its relative
    path (None: none). With several samples, the trajectory is sample 0's."""
    samples: int = 1
    """Restorations per picture; above 1, each written with `_s{k}`, and their spread map."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--samples must be at least 1, not {self.samples}")
        if self.samples > 1 and self.ot_ode:
            # The OT-ODE draws no noise after its start: its K "samples" would be K copies.
            raise UsageError(
                "--samples above 1 needs the stochastic sampler (--stochastic): "
                "OT-ODE gives one restoration per picture"
            )


@dataclass(frozen=True)
class Job:
    source: InputFile
    output: Path
    """A file, or `STDIO` for stdout."""
    mask: Path | None = None
    data: bytes | None = dataclasses.field(default=None, repr=False)
    """The source's bytes when they do not come from its path (stdin)."""


@dataclass(frozen=True)
class Outcome:
    source: Path
    output: Path
    """Where the result went (it may differ from the job's: alpha forces PNG over JPEG)."""
    status: Status
    message: str = ""
    """Why a picture failed or was skipped, or a note on a restored one."""
    seed: int | None = None
    seconds: float = 0.0
    samples: tuple[Path, ...] = ()
    """The K restorations written when there are several (`output` is then their spread map)."""
    spread_mean: float | None = None
    """The mean over the picture of the samples' spread, in 8-bit levels (several samples)."""


@dataclass
class _Prepared:
    job: Job
    picture: Picture
    x1: Tensor
    """[K, 3, H, W]: the picture's x1 once per sample."""
    mask: Tensor | None
    generators: list[torch.Generator]
    """One per sample."""
    seeds: list[int]
    output: Path
    note: str = ""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, in hex (it identifies a model exactly in reports)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one picture, from the run's seed and the picture's relative path."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_seed(seed: int, name: str, k: int) -> int:
    """The seed of sample k of one picture. Sample 0 is the picture's single restoration, so
    that `--samples K` extends a run without changing it; the others hash k after a NUL, which
    no path holds, so that no sample's seed is another picture's."""
    return image_seed(seed, name if k == 0 else f"{name}\0{k}")


def sample_path(output: Path, k: int) -> Path:
    """Where sample k of a picture whose single result would be `output` goes."""
    return output.with_name(f"{output.stem}_s{k}{output.suffix}")


def spread_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_spread.png")


def written_files(output: Path, samples: int) -> list[Path]:
    """The files a picture whose single result would be `output` gets: that file, or its
    samples' then its spread map (PNG whatever the output's format)."""
    if samples == 1 or output == STDIO:
        return [output]
    return [*(sample_path(output, k) for k in range(samples)), spread_path(output)]


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
            tile_batch=settings.tile_batch,
            multiple=model.size_multiple,
        )

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        jobs = list(jobs)
        if self.settings.samples > 1 and any(job.output == STDIO for job in jobs):
            raise UsageError("--samples above 1 writes several files; give -o FILE or FOLDER")
        planned = {job.output for job in jobs if job.output != STDIO}
        batch: list[_Prepared] = []
        for job in jobs:
            if self._done(job.output):
                yield Outcome(job.source.path, job.output, "skipped", "output exists")
                continue
            try:
                item = self._prepare(job)
            except I2SBError as exc:
                yield Outcome(job.source.path, job.output, "failed", str(exc))
                continue
            if item.output != job.output:
                refusal = self._check_moved_output(item, planned)
                if refusal is not None:
                    yield refusal
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

    def _done(self, output: Path) -> bool:
        """Whether an output exists and is to be kept (writes are atomic: if it exists, it is
        complete; with several samples the spread map, written last, stands for them all)."""
        if output == STDIO or self.settings.overwrite:
            return False
        return (spread_path(output) if self.settings.samples > 1 else output).exists()

    def _check_moved_output(self, item: _Prepared, planned: set[Path]) -> Outcome | None:
        """A failed or skipped outcome when the output that alpha moved to cannot be used."""
        source, output = item.job.source.path, item.output
        if output in planned:
            return Outcome(
                source,
                output,
                "failed",
                f"{source} has transparency, which {item.job.output.suffix} files cannot hold, "
                f"and {output} is another picture's output; choose --format png",
            )
        if output.exists() and source != STDIO and os.path.samefile(output, source):
            return Outcome(
                source,
                output,
                "failed",
                f"{source} has transparency, so its result would be {output}, the input "
                "itself; choose another --output or --suffix",
            )
        if self._done(output):
            return Outcome(source, output, "skipped", "output exists")
        planned.add(output)  # two pictures moved to one name: the second one must fail
        return None

    def _prepare(self, job: Job) -> _Prepared:
        settings = self.settings
        name = Path("stdin") if job.source.path == STDIO else job.source.path
        picture = read_image(name, data=job.data, max_pixels=settings.max_pixels)
        relative = job.source.relative.as_posix()
        seeds = [sample_seed(settings.seed, relative, k) for k in range(settings.samples)]
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        mask = None
        if settings.family == "inpaint":
            mask = self._mask_for(job, picture)
            if job.mask is None:
                # The transparency was the hole, which is filled now; a mask file leaves the
                # picture's own transparency to carry through.
                picture = dataclasses.replace(picture, alpha=None)
        x1 = make_x1(
            settings.family,
            picture.pixels,
            upsampled=settings.upsampled,
            mask=mask,
            noise=per_image_noise(generators[:1]),
            classical=settings.classical,
        )
        # The samples share their start (an inpainting hole's noise is sample 0's, as in a
        # single restoration) and differ by the sampler's noise.
        x1 = x1.expand(settings.samples, -1, -1, -1)
        if mask is not None:
            mask = mask.expand(settings.samples, -1, -1, -1)
        output, note = job.output, ""
        if picture.alpha is not None and job.output != STDIO:
            output = alpha_safe_path(job.output)
            if output != job.output:
                note = f"PNG, not {job.output.suffix}, to keep the transparency"
        return _Prepared(job, picture, x1, mask, generators, seeds, output, note)

    def _mask_for(self, job: Job, picture: Picture) -> Tensor:
        settings = self.settings
        size = tuple(picture.pixels.shape[-2:])
        threshold, invert = settings.mask_threshold, settings.invert_mask
        if job.mask is not None:
            mask = read_mask(
                job.mask, size, threshold=threshold, invert=invert, max_pixels=settings.max_pixels
            )
            named = f"the mask {job.mask}"
        elif picture.alpha is not None:
            mask = mask_from_alpha(picture.alpha, threshold=threshold, invert=invert)
            named = f"the transparency of {job.source.path}"
        else:
            raise ImageError(
                f"{job.source.path}: inpainting needs a mask; pass --mask FILE|DIR "
                "(white = hole) or give the picture an alpha channel (transparent = hole)"
            )
        if not mask.any():
            raise ImageError(
                f"{named} marks no hole, so there is nothing to inpaint "
                f"(hole: {'below' if invert else 'at or above'} {threshold:g} of white, "
                "transparent for alpha); check --mask-threshold and --invert-mask"
            )
        return mask

    def _restore(self, batch: list[_Prepared]) -> Iterator[Outcome]:
        started = time.monotonic()
        device = self.model.device
        x1 = torch.cat([item.x1 for item in batch]).to(device)
        mask = None
        if batch[0].mask is not None:
            mask = torch.cat([item.mask for item in batch]).to(device)
        callback, recorder = self.on_step, None
        if self.settings.trajectory is not None:
            # The recorder listens to the sampler's own steps: no extra network call.
            recorder = TrajectoryRecorder()
            recorder.begin(x1)
            callback = _both(self.on_step, recorder)
        try:
            x0 = sample(
                self.denoise,
                x1,
                self.model.schedule,
                self.steps,
                ot_ode=self.settings.ot_ode,
                noise=per_image_noise([g for item in batch for g in item.generators]),
                mask=mask,
                cond=x1 if self.model.meta.cond_x1 else None,
                callback=callback,
                detail=self.settings.detail,
            ).cpu()
        except (RuntimeError, MemoryError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for item in batch:
                yield Outcome(
                    item.job.source.path, item.output, "failed", f"sampling failed: {reason}"
                )
            return
        if mask is not None:
            # The stochastic sampler's last projection leaves noise of std std_sb[0] on the
            # known pixels (as the official sampler does); a user expects them untouched.
            x0 = (1 - mask.cpu()) * x1.cpu() + mask.cpu() * x0
        seconds = (time.monotonic() - started) / len(batch)
        k = self.settings.samples
        for i, item in enumerate(batch):
            # Row i * k is the picture's sample 0, whose path the trajectory shows.
            path = None if recorder is None else (recorder.start[i * k], recorder.frames[i * k])
            yield self._write(item, x0[i * k : (i + 1) * k], seconds, path)

    def _write(
        self,
        item: _Prepared,
        restored: Tensor,
        seconds: float,
        path: tuple[Tensor, list[Frame]] | None,
    ) -> Outcome:
        """Write the trajectory (`path`: x1 and the frames, when asked for), then the K [K, 3,
        H, W] `restored` samples: the file a rerun checks comes last, so that when it exists
        all is written."""
        job, settings = item.job, self.settings
        source, seed = job.source.path, item.seeds[0]
        like, quality = item.picture, settings.quality
        try:
            if path is not None and settings.trajectory is not None:
                relative = job.source.relative
                save_trajectory(*path, settings.trajectory / relative.parent / relative.stem)
            if settings.samples > 1:
                return self._write_samples(item, restored, seconds)
            if item.output == STDIO:
                fmt = settings.stdout_format
                if like.alpha is not None and fmt not in ALPHA_FORMATS:
                    fmt = "PNG"
                data = encode_image(
                    fmt, restored, like=like, metadata=self._metadata(seed), quality=quality
                )
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                write_image(
                    item.output, restored, like=like, metadata=self._metadata(seed), quality=quality
                )
        except I2SBError as exc:
            return Outcome(source, item.output, "failed", str(exc), seed, seconds)
        except OSError as exc:  # stdout closed early, as by a pipe into `head`
            message = f"cannot write to stdout: {exc.strerror or exc}"
            return Outcome(source, item.output, "failed", message, seed, seconds)
        return Outcome(source, item.output, "restored", item.note, seed, seconds)

    def _write_samples(self, item: _Prepared, restored: Tensor, seconds: float) -> Outcome:
        """Each sample under its `_s{k}` name, then their spread map."""
        paths = tuple(sample_path(item.output, k) for k in range(len(restored)))
        for path, sample_k, seed in zip(paths, restored, item.seeds, strict=True):
            write_image(
                path,
                sample_k,
                like=item.picture,
                metadata=self._metadata(seed),
                quality=self.settings.quality,
            )
        values = spread(restored)
        # Scaled to the map's own maximum: the picture shows where, `spread_mean` how much.
        image = heat_map(values)
        target = spread_path(item.output)
        atomic_write(target, lambda file: image.save(file, "PNG"))
        return Outcome(
            item.job.source.path,
            target,
            "restored",
            item.note,
            item.seeds[0],
            seconds,
            samples=paths,
            spread_mean=float(values.mean()),
        )

    def _metadata(self, image_seed: int) -> dict[str, str]:
        """What an output records of how it was made."""
        meta, settings = self.model.meta, self.settings
        metadata = {
            "i2sb:model": meta.name,
            "i2sb:task": meta.task,
            "i2sb:nfe": str(settings.nfe),
            "i2sb:sampler": "ot-ode" if settings.ot_ode else "stochastic",
            "i2sb:detail": f"{settings.detail:g}",
            "i2sb:seed": str(settings.seed),
            "i2sb:image-seed": str(image_seed),
            "i2sb:backend": f"{self.model.backend} {self.model.precision}",
        }
        if settings.model_sha256:
            metadata["i2sb:model-sha256"] = settings.model_sha256
        return metadata


def _both(
    first: Callable[[StepInfo], None] | None, second: Callable[[StepInfo], None]
) -> Callable[[StepInfo], None]:
    """One sampler callback that calls `first` (when there is one), then `second`."""

    def call(step: StepInfo) -> None:
        if first is not None:
            first(step)
        second(step)

    return call
