"""Restoring a list of pictures with a loaded model: reading, batching, sampling, writing.

Each picture gets its own random generator seeded from (seed, its relative path), so that it
restores the same whatever the batch size, the order of the inputs or the tiling (docs/design.md
decision 2). Pictures of the same size are sampled together up to the batch size. A picture
that cannot be read or restored is reported as a failed outcome and the run goes on; an output
that exists already is skipped before its picture is even read, so that running the same
command again after an interruption continues where it stopped.

With `samples` K > 1, each picture is restored K times from K generators, seeded from (seed,
its relative path, k), in one network batch; the K results are written with `_s0` ...
`_s{K-1}` before their extension, then the map of their spread (`_spread.png`), last, so that
its existence says the picture is done.

A chain (several stages, chain.py) samples each picture's result again with the next stage's
model. After the last stage the result is resized to `outscale` times the input's size when
asked (pictures/resize.py). An inpainting hole is cut from its mask as holes.py says
(threshold, growth, a mask of another size); only the region around it is sampled (crop.py),
and the restored hole fades into the original over `mask_feather` pixels at its border.
"""

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..bridge import StepInfo, mirror_ensemble, nfe_steps, per_image_noise, sample
from ..degrade.masks import feather_weights
from ..errors import I2SBError, ImageError, OutputExistsError, UsageError
from ..pictures.files import (
    ALPHA_FORMATS,
    MaskLevels,
    Picture,
    alpha_levels,
    atomic_write,
    encode_image,
    format_of,
    mask_levels,
    read_image,
    write_image,
)
from ..pictures.inputs import STDIO, InputFile
from ..pictures.resize import check_outscale, resize_pixels, scaled_size
from .chain import Stage, StageRecord, stage_input
from .crop import CONTEXT, Box, crop_noise, hole_box
from .holes import Hole, HoleRule, cut_hole, fit_mask
from .jpeg_bins import keep_near_file, slack_for_quality
from .quality import ToldQuality, check_jpeg_quality, has_jpeg_history, told_quality
from .spread import heat_map, spread
from .start import make_x1
from .tiling import tiled
from .trajectory import Frame, TrajectoryRecorder, save_trajectory

Status = Literal["restored", "skipped", "failed"]

OUTPUT_MARK = "i2sb:model"
"""The metadata key of every restored file (and of no file `i2sb degrade` writes): it tells
the results of earlier runs from pictures to restore."""


@dataclass(frozen=True)
class RestoreSettings:
    """A run's own options; what each stage runs and how it samples are its Stage's
    (chain.py)."""

    seed: int = 0
    batch_size: int = 1
    tile_batch: int = 1
    """Tiles per network call."""
    overwrite: bool = False
    mask_threshold: float | None = None
    """The level from which a mask's pixel is a hole (None: holes.MASK_THRESHOLD)."""
    invert_mask: bool = False
    max_pixels: int | None = None
    """Pictures and masks larger than this are refused (None: Pillow's bomb guard)."""
    quality: int | None = None
    """JPEG and WebP quality (None: JPEG 95; WebP lossy at 90 for a lossy source, else lossless)."""
    stdout_format: str = "PNG"
    """The format of a picture written to stdout (output `STDIO`)."""
    background: tuple[int, int, int] | None = None
    """An RGB colour under transparent pictures: the result is the picture laid over it,
    opaque (None: transparency is kept, and a format that cannot hold it fails)."""
    trajectory: Path | None = None
    """A folder for each picture's trajectory strip and animation, named after its relative
    path (None: none). With several samples, the trajectory is sample 0's."""
    samples: int = 1
    """Restorations per picture; above 1, each written with `_s{k}`, and their spread map."""
    outscale: float | None = None
    """The output's size as a factor of the input's (None: the model's own scale)."""
    mask_dilate: int | None = None
    """Pixels by which an inpainting hole grows before it is restored, a disc (None:
    holes.SOFT_MASK_GROWTH for a mask with soft edges, 0 for one of two levels)."""
    mask_feather: int = 0
    """Pixels over which the restored hole fades into the original at its border."""
    hole_context: int | None = CONTEXT
    """Pixels of picture around an inpainting hole's bounding box that the bridge restores
    with it, the rest being kept (restoring/crop.py); None: the whole picture."""
    mask_resize: bool = False
    """Stretch a mask of another shape than its picture to it, rather than refuse it."""
    jpeg_quality: int | None = None
    """The JPEG quality to tell a network that asks for it (None: each picture's own,
    restoring/quality.py)."""
    jpeg_bins: bool = True
    """Keep a jpeg model's result on a JPEG file near the file's own DCT coefficients
    (restoring/jpeg_bins.py), where it is the only stage."""

    def __post_init__(self) -> None:
        if self.outscale is not None:
            check_outscale(self.outscale)
        if (self.mask_dilate or 0) < 0 or self.mask_feather < 0:
            raise UsageError("--mask-dilate and --mask-feather take a number of pixels, 0 or more")
        if self.samples < 1:
            raise UsageError(f"--samples must be at least 1, not {self.samples}")
        check_jpeg_quality(self.jpeg_quality)


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
    status: Status
    message: str = ""
    """Why a picture failed or was skipped, or a note on a restored one."""
    seed: int | None = None
    seconds: float = 0.0
    samples: tuple[Path, ...] = ()
    """The K restorations written when there are several (`output` is then their spread map)."""
    spread_mean: float | None = None
    """The mean over the picture of the samples' spread, in 8-bit levels (several samples)."""
    stages: tuple[StageRecord, ...] = ()
    """What each stage did to the picture (sample 0's seeds), when it was restored."""
    jpeg_quality: int | None = None
    """The quality the input JPEG file declares (None for other formats)."""
    told: ToldQuality | None = None
    """The JPEG quality a network was told, and whence (models that ask for it)."""
    hole: HoleRule | None = None
    """How an inpainted picture's hole was cut from its mask."""
    jpeg_slack: float | None = None
    """How near the JPEG file's DCT coefficients the result was kept, in quantisation steps
    (None: not kept near them)."""


@dataclass
class Prepared:
    """One decoded picture ready for the sampler (Restorer.prepare): what the files a run
    reads become, and what the Python API hands over directly."""

    picture: Picture
    """The picture; an inpainting hole's transparency is dropped (it is filled)."""
    x1: Tensor
    """[K, 3, H, W]: the picture's x1 once per sample."""
    mask: Tensor | None
    """[K, 1, H, W]: the inpainting hole (1 = hole), None for the other families."""
    generators: list[list[torch.Generator]]
    """[stage][sample]."""
    seeds: list[list[int]]
    """[stage][sample]."""
    note: str = ""
    told: ToldQuality | None = None
    """The JPEG quality the networks that ask for it are told (restoring/quality.py)."""
    start_seconds: float = 0.0
    """Seconds that making x1 took (a start network's upscale): part of the picture's time."""
    hole: HoleRule | None = None
    """How the inpainting hole was cut from its mask."""
    jpeg_slack: float | None = None
    """Within how many quantisation steps of its JPEG file's DCT coefficients the result is
    kept (jpeg_bins.py); None: it is not."""


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one picture, from the run's seed and the picture's relative path."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_seed(seed: int, name: str, k: int) -> int:
    """The seed of sample k of one picture. Sample 0 is the picture's single restoration, so
    that `--samples K` extends a run without changing it; the others hash k after a NUL, which
    no path holds, so that no sample's seed is another picture's."""
    return image_seed(seed, name if k == 0 else f"{name}\0{k}")


def is_done(output: Path, *, overwrite: bool, samples: int) -> bool:
    """Whether an output exists and is to be kept (writes are atomic: if it exists, it is
    complete; with several samples the spread map, written last, stands for them all)."""
    if output == STDIO or overwrite:
        return False
    return (spread_path(output) if samples > 1 else output).exists()


def stage_seed(seed: int, name: str, k: int, stage: int) -> int:
    """The seed of stage `stage` of a chain for sample k of one picture. The first stage's is
    the sample's seed, so that a chain starts as its first task alone would; the others hash
    the stage after a second NUL, so that no stage's seed is another sample's or picture's.
    Stage -1 is the JPEG cleaning that `--task sr4x` adds (chain.with_jpeg_cleaning): a stream
    of its own, so that the stages asked for keep their seeds with or without it."""
    if stage == 0:
        return sample_seed(seed, name, k)
    return image_seed(seed, f"{name}\0{k}\0{'clean-jpeg' if stage < 0 else stage}")


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
    """Runs the bridge sampler over jobs with the stages of a chain in order (one stage, or
    several: chain.py), under a run's `settings`; yields one Outcome per job.

    `run` reads each job's files, then `prepare`s and `sample`s its picture, then writes the
    result; the Python API (i2sb_cli.api) calls `prepare` and `sample` on pictures it decodes
    itself, so that the two give the same pixels for the same seed and name."""

    def __init__(
        self,
        stages: Sequence[Stage],
        settings: RestoreSettings = RestoreSettings(),
        *,
        on_step: Callable[[StepInfo], None] | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a Restorer needs at least one stage")
        if settings.samples > 1 and stages[0].sampling.ot_ode:
            # The OT-ODE draws no noise after its start: its K "samples" would be K copies.
            raise UsageError(
                "--samples above 1 needs the stochastic sampler (--stochastic): "
                "OT-ODE gives one restoration per picture"
            )
        self.settings = settings
        self.on_step = on_step
        self.stages = list(stages)
        self._added_stages = sum(stage.jpeg_only for stage in self.stages)
        """Stages the run added before those asked for (a JPEG cleaning: chain.py)."""
        self.steps = [nfe_steps(s.sampling.nfe, s.model.schedule.interval) for s in self.stages]
        self.denoisers = [
            mirror_ensemble(
                tiled(
                    s.model.denoise,
                    tile=s.tile,
                    overlap=s.tile_overlap,
                    tile_batch=settings.tile_batch,
                    multiple=s.model.size_multiple,
                ),
                s.sampling.ensemble,
            )
            for s in self.stages
        ]

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        jobs = list(jobs)
        if self.settings.samples > 1 and any(job.output == STDIO for job in jobs):
            raise UsageError("--samples above 1 writes several files; give -o FILE or FOLDER")
        batch: list[tuple[Job, Prepared]] = []
        settings = self.settings
        for job in jobs:
            if is_done(job.output, overwrite=settings.overwrite, samples=settings.samples):
                why = f"{job.output} exists (use --overwrite)"
                yield Outcome(job.source.path, job.output, "skipped", why)
                continue
            try:
                item = job, self._read(job)
            except I2SBError as exc:
                yield Outcome(job.source.path, job.output, "failed", str(exc))
                continue
            if batch and item[1].x1.shape != batch[0][1].x1.shape:
                yield from self._restore(batch)
                batch = []
            batch.append(item)
            # A full batch runs at once, not when the next picture has been read: outcomes keep
            # the input order as far as batching allows, and no extra picture waits in memory.
            if len(batch) == settings.batch_size:
                yield from self._restore(batch)
                batch = []
        if batch:
            yield from self._restore(batch)

    def prepare(
        self, picture: Picture, name: str, *, mask: Tensor | None = None, mask_name: str = ""
    ) -> Prepared:
        """A decoded picture ready for `sample`. `name` stands for the picture's path relative
        to the input given, which seeds it (image_seed: the same name and seed, the same
        result). `mask` [1, 1, h, w] is an inpainting hole (1 = hole), fitted to the picture
        as a mask file is (holes.fit_mask), named `mask_name` in messages; None takes the hole
        from the picture's transparency."""
        levels = None if mask is None else MaskLevels(mask.float(), "white")
        picture, hole = self._hole(picture, levels, mask_name, name)
        return self._start(picture, hole, name)

    def sample(self, batch: Sequence[Prepared]) -> Tensor:
        """The restorations [N K, 3, H, W] (in [-1, 1] where inpainted, else unclamped) of
        pictures of one size, on the CPU: every stage, the inpainting composite, --outscale."""
        return self._sample_stages(list(batch), None)

    def _read(self, job: Job) -> Prepared:
        """A job's picture (and mask file) read and prepared; a transparent picture bound for a
        format that cannot hold it is refused before anything is sampled."""
        settings = self.settings
        name = Path("stdin") if job.source.path == STDIO else job.source.path
        picture = read_image(name, data=job.data, max_pixels=settings.max_pixels)
        mask = None
        if self.stages[0].family == "inpaint" and job.mask is not None:
            mask_picture = read_image(job.mask, max_pixels=settings.max_pixels)
            mask = mask_levels(mask_picture, invert=settings.invert_mask)
        picture, hole = self._hole(picture, mask, f"the mask {job.mask}", str(job.source.path))
        self._check_transparency(job, picture)
        return self._start(picture, hole, job.source.relative.as_posix())

    def _hole(
        self, picture: Picture, mask: MaskLevels | None, mask_name: str, source: str
    ) -> tuple[Picture, Hole | None]:
        """For inpainting: the picture and its hole. Transparency that marked the hole (no
        mask, or all inside the mask's hole, as `i2sb degrade` writes it) is filled now; the
        picture's own is carried through."""
        if self.stages[0].family != "inpaint":
            return picture, None
        hole = self._mask_for(picture, mask, mask_name, source)
        if picture.alpha is not None and (mask is None or _inside(picture.alpha, hole.mask)):
            picture = dataclasses.replace(picture, alpha=None)
        return picture, hole

    def _start(self, picture: Picture, hole: Hole | None, name: str) -> Prepared:
        """The picture's x1 once per sample, and the seeds and generators of each stage and
        sample, from the run's seed and the picture's `name`."""
        settings, first = self.settings, self.stages[0]
        added = self._added_stages
        seeds = [
            [stage_seed(settings.seed, name, k, stage - added) for k in range(settings.samples)]
            for stage in range(len(self.stages))
        ]
        generators = [[torch.Generator().manual_seed(seed) for seed in row] for row in seeds]
        started = time.monotonic()
        x1 = make_x1(
            first.family,
            picture.pixels,
            upsampled=first.upsampled,
            mask=None if hole is None else hole.mask,
            noise=per_image_noise(generators[0][:1]),
            classical=first.classical,
            start=first.start,
        )
        start_seconds = time.monotonic() - started
        # The samples share their start (an inpainting hole's noise is sample 0's, as in a
        # single restoration) and differ by the sampler's noise.
        x1 = x1.expand(settings.samples, -1, -1, -1)
        mask = None if hole is None else hole.mask.expand(settings.samples, -1, -1, -1)
        note = "" if hole is None else hole.note
        told = None
        asking = [s for s in self.stages if s.model.meta.condition == "jpeg-quality" or s.jpeg_only]
        if asking:
            told = told_quality(picture, settings.jpeg_quality)
            # A picture with no JPEG history skips a JPEG cleaning stage (_runs): when no other
            # stage asks, nothing is told.
            if not has_jpeg_history(told) and all(s.jpeg_only for s in asking):
                told = None
        rule = None if hole is None else hole.rule
        return Prepared(
            picture, x1, mask, generators, seeds, note, told, start_seconds, hole=rule,
            jpeg_slack=self._jpeg_slack(picture),
        )  # fmt: skip

    def _jpeg_slack(self, picture: Picture) -> float | None:
        """How near its JPEG file a jpeg model's result is kept (jpeg_bins.py): only where the
        model is the only stage. A later stage starts from another picture than the file; and
        an earlier one's result is kept clean, not near the file: the file's blocks and grain
        that the bins keep become speckle once a next stage (sr4x's JPEG cleaning) enlarges
        them."""
        (only, *others) = self.stages
        coding = picture.jpeg_coding
        if not self.settings.jpeg_bins or others or only.family != "jpeg" or only.upsampled:
            return None
        if coding is None or picture.jpeg_quality is None:
            return None
        return slack_for_quality(picture.jpeg_quality)

    def _check_transparency(self, job: Job, picture: Picture) -> None:
        """Refuse, before any sampling, a transparent picture bound for a format that would
        drop its transparency without a word."""
        if picture.alpha is None or self.settings.background is not None:
            return
        fmt = self.settings.stdout_format if job.output == STDIO else format_of(job.output)
        if fmt not in ALPHA_FORMATS:
            raise ImageError(
                f"it has transparency, which {fmt} cannot hold: add --background COLOR "
                "(e.g. --background white) to lay it over a colour, or write PNG, WebP or TIFF"
            )

    def _mask_for(self, picture: Picture, mask: MaskLevels | None, named: str, source: str) -> Hole:
        """The picture's hole, cut from `mask` (or from its transparency) as holes.py says."""
        settings = self.settings
        note, marked_in = "", "mask"
        if mask is not None:
            mask, note = fit_mask(mask, picture.size, stretch=settings.mask_resize, named=named)
        elif picture.alpha is not None:
            mask = alpha_levels(picture.alpha, invert=settings.invert_mask)
            named, marked_in = f"the transparency of {source}", "picture"
        else:
            raise ImageError(
                "inpainting needs a mask; pass --mask FILE|DIR (white = hole) or give the "
                "picture an alpha channel (transparent = hole)"
            )
        hole, rule = cut_hole(
            mask,
            source=marked_in,
            threshold=settings.mask_threshold,
            dilate=settings.mask_dilate,
            feather=settings.mask_feather,
            named=named,
        )
        return Hole(hole, rule, note)

    def _restore(self, batch: list[tuple[Job, Prepared]]) -> Iterator[Outcome]:
        started = time.monotonic()
        recorder = None if self.settings.trajectory is None else TrajectoryRecorder()
        try:
            x0 = self._sample_stages([item for _, item in batch], recorder)
        except (RuntimeError, MemoryError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for job, _ in batch:
                yield Outcome(job.source.path, job.output, "failed", f"sampling failed: {reason}")
            return
        seconds = (time.monotonic() - started) / len(batch)
        k = self.settings.samples
        for i, (job, item) in enumerate(batch):
            # Row i * k is the picture's sample 0, whose path the trajectory shows.
            path = None if recorder is None else (recorder.start[i * k], recorder.frames[i * k])
            restored = x0[i * k : (i + 1) * k]
            yield self._write(job, item, restored, seconds + item.start_seconds, path)

    def _sample_stages(self, batch: list[Prepared], recorder: TrajectoryRecorder | None) -> Tensor:
        """The batch's results [N K, 3, H, W] on the CPU: the first stage samples the pictures'
        x1, each later one the previous result; then the size --outscale asks for. The
        trajectory (`recorder`) is the last stage's."""
        first_recorder = recorder if len(self.stages) == 1 else None
        if batch[0].mask is None:
            x1 = _joined([item.x1 for item in batch])
            x0 = self._keep_near_files(batch, self._sample_running(0, batch, x1, first_recorder))
        else:
            x0 = self._inpaint(batch, first_recorder)
        for index in range(1, len(self.stages)):
            last = index == len(self.stages) - 1
            x1 = stage_input(self.stages[index], x0)
            x0 = self._sample_running(index, batch, x1, recorder if last else None)
        if self.settings.outscale is None:
            return x0
        return resize_pixels(x0, scaled_size(batch[0].picture.size, self.settings.outscale))

    def _keep_near_files(self, batch: list[Prepared], x0: Tensor) -> Tensor:
        """The first stage's results [N K, 3, H, W], each kept near its JPEG file where
        Prepared.jpeg_slack says so."""
        k = self.settings.samples
        for i, item in enumerate(batch):
            coding = item.picture.jpeg_coding
            if item.jpeg_slack is not None and coding is not None:
                rows = slice(i * k, (i + 1) * k)
                x0[rows] = keep_near_file(x0[rows], item.picture.pixels, coding, item.jpeg_slack)
        return x0

    def _picture_seed(self, item: Prepared) -> int:
        """The picture's seed as its outcome reports it: the first asked-for stage's, sample 0's
        (a JPEG cleaning stage, added first, has a stream of its own: stage_seed)."""
        return item.seeds[self._added_stages][0]

    def _runs(self, index: int, item: Prepared) -> bool:
        """Whether stage `index` runs on the picture (a JPEG cleaning only on a JPEG's)."""
        return not self.stages[index].jpeg_only or has_jpeg_history(item.told)

    def _sample_running(
        self, index: int, batch: list[Prepared], x1: Tensor, recorder: TrajectoryRecorder | None
    ) -> Tensor:
        """Stage `index` sampled for the pictures it runs on; the others pass their x1 on (a
        JPEG cleaning stage starts from the picture itself)."""
        running = [self._runs(index, item) for item in batch]
        if all(running):
            return self._sample(index, batch, x1, None, recorder)
        x0 = x1.clone()
        if any(running):
            rows = torch.tensor([r for item, r in zip(batch, running, strict=True)
                                 for _ in range(item.x1.shape[0])])  # fmt: skip
            ran = [item for item, r in zip(batch, running, strict=True) if r]
            x0[rows] = self._sample(index, ran, x1[rows], None, None).to(x0.dtype)
        return x0

    def _inpaint(self, batch: list[Prepared], recorder: TrajectoryRecorder | None) -> Tensor:
        """The first stage's inpaintings [N K, 3, H, W] composited over the originals. Only
        each picture's region around its hole is sampled (crop.hole_box; the whole picture
        when a trajectory is recorded, which shows it whole), pictures whose regions have one
        size together, and composited into a copy of the original there: outside the region
        the original is the result."""
        k = self.settings.samples
        context = None if recorder is not None else self.settings.hole_context
        multiple = self.stages[0].model.size_multiple
        boxes = [hole_box(item.mask[0], context=context, multiple=multiple) for item in batch]
        restored = torch.cat([item.picture.pixels.expand(k, -1, -1, -1) for item in batch])
        for size in dict.fromkeys(box.size for box in boxes):
            group = [i for i, box in enumerate(boxes) if box.size == size]
            x1 = torch.cat([batch[i].x1[boxes[i].window] for i in group])
            mask = torch.cat([batch[i].mask[boxes[i].window] for i in group])
            rows = [boxes[i] for i in group for _ in range(k)]
            x0 = self._sample(0, [batch[i] for i in group], x1, mask, recorder, rows)
            for j, i in enumerate(group):
                region = restored[i * k : (i + 1) * k][boxes[i].window]  # the original, a view
                sampled = slice(j * k, (j + 1) * k)
                region.copy_(self._composite(region, x0[sampled], mask[sampled]))
        return restored

    def _sample(
        self,
        index: int,
        batch: list[Prepared],
        x1: Tensor,
        mask: Tensor | None,
        recorder: TrajectoryRecorder | None,
        boxes: Sequence[Box] | None = None,
    ) -> Tensor:
        """Stage `index`'s bridge from x1 [N K, 3, H, W] back to its x0, on the CPU; x1 may be
        crops of the pictures, `boxes` (one per row) saying where, for the noise."""
        stage = self.stages[index]
        device = stage.model.device
        x1 = x1.to(device)
        callback = self.on_step
        if recorder is not None:
            # The recorder listens to the sampler's own steps: no extra network call.
            recorder.begin(x1)
            callback = _both(self.on_step, recorder)
        noise = per_image_noise([g for item in batch for g in item.generators[index]])
        if boxes is not None:
            noise = crop_noise(noise, batch[0].x1.shape[-2:], boxes)
        return sample(
            self.denoisers[index],
            x1,
            stage.model.schedule,
            self.steps[index],
            ot_ode=stage.sampling.ot_ode,
            noise=noise,
            mask=None if mask is None else mask.to(device),
            cond=stage.model.meta.network_cond(x1, _told_qualities(batch)),
            callback=callback,
            detail=stage.sampling.detail,
        ).cpu()

    def _composite(self, original: Tensor, restored: Tensor, mask: Tensor) -> Tensor:
        """The restored hole over the original pixels (the same region of both). The known
        pixels are the original ones exactly: the stochastic sampler's last projection leaves
        noise of std std_sb[0] on them (as the official sampler does), and a user expects them
        untouched. With --mask-feather the hole's border mixes in the original, a soft seam: a
        mix of two pictures, so the restoration is clamped to the pictures' range first. The
        region holds the whole hole and kept pixels around it, so the feather's distances are
        the whole picture's."""
        weights = feather_weights(mask, self.settings.mask_feather)
        # (1 - weights) * original + weights * restored, with the restoration (new) scaled in
        # place.
        return restored.clamp_(-1, 1).mul_(weights).add_((1 - weights) * original)

    def _write(
        self,
        job: Job,
        item: Prepared,
        restored: Tensor,
        seconds: float,
        path: tuple[Tensor, list[Frame]] | None,
    ) -> Outcome:
        """Write the trajectory (`path`: x1 and the frames, when asked for), then the K [K, 3,
        H, W] `restored` samples: the file a rerun checks comes last, so that when it exists
        all is written."""
        settings = self.settings
        source, seed = job.source.path, self._picture_seed(item)
        like = item.picture
        options = {"quality": settings.quality, "background": settings.background}
        # Without --overwrite, an output another run wrote meanwhile is kept, never replaced.
        replace = settings.overwrite
        if not restored.isfinite().all():
            # Clamped on writing, NaN would pass for a flat grey picture: never call it restored.
            message = "the sampler returned NaN or infinite values: nothing written"
            return Outcome(source, job.output, "failed", message, seed, seconds)
        try:
            if path is not None and settings.trajectory is not None:
                relative = job.source.relative
                save_trajectory(*path, settings.trajectory / relative.parent / relative.stem)
            if settings.samples > 1:
                return self._write_samples(job, item, restored, seconds)
            metadata = self._metadata(item, 0)
            if job.output == STDIO:
                fmt = settings.stdout_format
                data = encode_image(fmt, restored, like=like, metadata=metadata, **options)
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                write_image(
                    job.output, restored, like=like, metadata=metadata, replace=replace, **options
                )
        except OutputExistsError as exc:
            return Outcome(source, job.output, "skipped", str(exc), seed, seconds)
        except I2SBError as exc:
            return Outcome(source, job.output, "failed", str(exc), seed, seconds)
        except OSError as exc:  # stdout closed early, as by a pipe into `head`
            message = f"cannot write to stdout: {exc.strerror or exc}"
            return Outcome(source, job.output, "failed", message, seed, seconds)
        stages = self._records(item)
        quality = item.picture.jpeg_quality
        return Outcome(
            source, job.output, "restored", item.note, seed, seconds, stages=stages,
            jpeg_quality=quality, told=item.told, hole=item.hole, jpeg_slack=item.jpeg_slack,
        )  # fmt: skip

    def _write_samples(self, job: Job, item: Prepared, restored: Tensor, seconds: float) -> Outcome:
        """Each sample under its `_s{k}` name, then their spread map."""
        paths = tuple(sample_path(job.output, k) for k in range(len(restored)))
        for k, (path, sample_k) in enumerate(zip(paths, restored, strict=True)):
            write_image(
                path,
                sample_k,
                like=item.picture,
                metadata=self._metadata(item, k),
                quality=self.settings.quality,
                background=self.settings.background,
                replace=self.settings.overwrite,
            )
        values = spread(restored)
        # Scaled to the map's own maximum: the picture shows where, `spread_mean` how much.
        image = heat_map(values)
        target = spread_path(job.output)
        atomic_write(target, lambda file: image.save(file, "PNG"), replace=self.settings.overwrite)
        return Outcome(
            job.source.path,
            target,
            "restored",
            item.note,
            self._picture_seed(item),
            seconds,
            samples=paths,
            spread_mean=float(values.mean()),
            stages=self._records(item),
            jpeg_quality=item.picture.jpeg_quality,
            told=item.told,
            hole=item.hole,
            jpeg_slack=item.jpeg_slack,
        )

    def _metadata(self, item: Prepared, k: int) -> dict[str, str]:
        """What sample k's output records of how it was made: each stage's values in order,
        separated by commas (one value for a single model)."""
        settings = self.settings
        stages = [
            stage.metadata(seeds[k])
            for index, (stage, seeds) in enumerate(zip(self.stages, item.seeds, strict=True))
            if self._runs(index, item)
        ]
        keys = dict.fromkeys(key for values in stages for key in values)
        metadata = {key: ",".join(values.get(key, "") for values in stages) for key in keys}
        metadata["i2sb:seed"] = str(settings.seed)
        if settings.outscale is not None:
            metadata["i2sb:outscale"] = f"{settings.outscale:g}"
        if item.hole is not None:
            metadata |= item.hole.metadata()
        if item.picture.jpeg_quality is not None:
            metadata["i2sb:input-jpeg-quality"] = str(item.picture.jpeg_quality)
        if item.told is not None:
            metadata["i2sb:told-jpeg-quality"] = f"{item.told.quality} ({item.told.source})"
        if item.jpeg_slack is not None:
            metadata["i2sb:jpeg-slack"] = f"{item.jpeg_slack:.2f}"
        return metadata

    def _records(self, item: Prepared) -> tuple[StageRecord, ...]:
        return tuple(
            StageRecord(
                s.model.meta.task, s.model.meta.name, s.model_sha256, s.sampling.nfe, seeds[0]
            )
            for index, (s, seeds) in enumerate(zip(self.stages, item.seeds, strict=True))
            if self._runs(index, item)
        )


def _told_qualities(batch: list[Prepared]) -> Tensor | None:
    """[N K] the JPEG quality told for each sample of the batch, or None when none is told."""
    if batch[0].told is None:
        return None
    return torch.tensor(
        [float(item.told.quality) for item in batch for _ in range(item.x1.shape[0])]
    )


def _joined(tensors: list[Tensor]) -> Tensor:
    """torch.cat, without its copy of a lone tensor (200 MB for a 4096x4096 picture)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _inside(alpha: Tensor, hole: Tensor) -> bool:
    """Whether every pixel that is not fully opaque lies in the hole (both [1, 1, H, W])."""
    return bool(((alpha < 1) <= (hole > 0)).all())


def _both(
    first: Callable[[StepInfo], None] | None, second: Callable[[StepInfo], None]
) -> Callable[[StepInfo], None]:
    """One sampler callback that calls `first` (when there is one), then `second`."""

    def call(step: StepInfo) -> None:
        if first is not None:
            first(step)
        second(step)

    return call
