"""`i2sb restore`: files, folders, globs or stdin in; restored pictures out."""

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

from ..errors import ImageError, UsageError
from ..pictures.decode import default_max_pixels
from ..pictures.files import FORMATS, colour_rgb, picture_pixels
from ..pictures.inputs import (
    PICTURE_EXTENSIONS,
    STDIO,
    InputFile,
    check_written,
    collect_inputs,
    is_picture_name,
    output_kind,
    plan_outputs,
)
from ..pictures.shards import parse_shard
from ..restoring import split as restore_split
from ..restoring.chain import Stage, StageSpec, plan_chain, with_jpeg_cleaning
from ..restoring.loop import Job, Outcome, Restorer, RestoreSettings, written_files
from ..restoring.prepare import Located, prepare_stages
from ..restoring.quality import check_jpeg_quality
from ..runtime import load_model
from ..runtime.cluster import Cluster, main_first
from ..runtime.torch_backend import LoadedModel
from .common import CacheDir, Offline, Quiet, console, reports_errors
from .progress import PictureProgress, works
from .restore_options import (
    Backend,
    Background,
    BatchSize,
    CleanJpeg,
    ClipDenoise,
    Compile,
    Detail,
    Device,
    DryRun,
    Ensemble,
    Inputs,
    InvertMask,
    JpegBins,
    JpegQuality,
    JsonLines,
    Mask,
    MaskDilate,
    MaskFeather,
    MaskResize,
    MaskThreshold,
    MaxPixels,
    Model,
    Nfe,
    OtOde,
    Output,
    OutputFormat,
    Outscale,
    Overwrite,
    Precision,
    Quality,
    Recursive,
    Samples,
    SaveTrajectory,
    Seed,
    Shard,
    Suffix,
    Task,
    Tile,
    TileBatch,
    TileOverlap,
    TrustPickle,
    Upsampled,
)
from .restore_plan import SUFFIX, check_before_loading, report_dry_run, without_earlier_results
from .restore_report import announce, finish, pictures_phrase, print_record, report


def _find_mask(masks: Path | None, source_relative: Path) -> Path | None:
    """--mask FILE is used for every picture; --mask DIR holds one mask per picture, found by
    the picture's relative path with any picture extension (`<stem>.png`, `<stem>_mask.png`)."""
    if masks is None or masks.is_file():
        return masks
    folder = masks / source_relative.parent
    for stem in (source_relative.stem, f"{source_relative.stem}_mask"):
        for ext in PICTURE_EXTENSIONS:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None


@reports_errors
def restore(
    inputs: Inputs,
    output: Output = None,
    task: Task = None,
    model: Model = None,
    cache_dir: CacheDir = None,
    offline: Offline = None,
    nfe: Nfe = None,
    seed: Seed = 0,
    ot_ode: OtOde = None,
    detail: Detail = None,
    ensemble: Ensemble = None,
    jpeg_quality: JpegQuality = None,
    clean_jpeg: CleanJpeg = True,
    jpeg_bins: JpegBins = True,
    device: Device = "auto",
    backend: Backend = "auto",
    precision: Precision = None,
    compile_net: Compile = False,
    clip_denoise: ClipDenoise = False,
    trust_pickle: TrustPickle = False,
    batch_size: BatchSize = 1,
    output_format: OutputFormat = None,
    quality: Quality = None,
    mask: Mask = None,
    mask_threshold: MaskThreshold = None,
    invert_mask: InvertMask = False,
    mask_dilate: MaskDilate = None,
    mask_feather: MaskFeather = 0,
    mask_resize: MaskResize = False,
    outscale: Outscale = None,
    tile: Tile = None,
    tile_overlap: TileOverlap = None,
    tile_batch: TileBatch = 1,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    upsampled: Upsampled = False,
    max_pixels: MaxPixels = None,
    save_trajectory: SaveTrajectory = None,
    samples: Samples = 1,
    json_lines: JsonLines = False,
    suffix: Suffix = None,
    background: Background = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Restore pictures with the I2SB bridge sampler.

    Give - as the input to read one picture from stdin, and -o - to write the result to
    stdout (a picture from stdin goes there by default). Results of earlier runs (named with
    the suffix, inside the -o folder, or carrying i2sb's metadata) are left out, so running
    the same command again is safe.

    Exit codes: 0 when every picture was restored or skipped; 1 when some pictures failed
    (each one is reported on stderr, and with --json on stdout) or the model could not be
    loaded; 2 for a usage error (a bad option or argument, nothing done); 130 when
    interrupted (Ctrl-C): every output written is complete, and running the same command
    again continues where it stopped.

    Under torchrun, the processes split the inputs by pixels; only the first prints, and
    every process exits with the job's code.
    """
    shard_of = parse_shard(shard) if shard is not None else None
    check_jpeg_quality(jpeg_quality)
    chain = _planned_chain(task, model, nfe, clean_jpeg=clean_jpeg and not upsampled)
    sources, outputs = _plan(
        inputs, output, output_format, recursive, json_lines, mask, suffix, samples
    )
    restore_split.check_splittable(shard_of, sources, outputs)
    reads_stdin = not dry_run and any(s.path == STDIO for s in sources)
    stdin = _read_stdin(max_pixels) if reads_stdin else None
    masking = _masking(mask, mask_threshold, invert_mask, mask_dilate, mask_feather, mask_resize)
    located = check_before_loading(chain, sources, mask, masking, cache_dir, offline, dry_run)
    sampling = {"ot_ode": ot_ode, "detail": detail, "ensemble": ensemble}
    with restore_split.joined(device) as cluster:
        split = restore_split.plan_split(sources, shard_of, cluster)
        jobs = _jobs([(sources[i], outputs[i]) for i in split.mine], mask, stdin)
        if dry_run:
            report_dry_run(located, sampling, jobs, overwrite, samples, json_lines, max_pixels)
            return
        stages = _prepare(
            located, cluster, masking, sampling | {"tile": tile, "tile_overlap": tile_overlap},
            upsampled, device=device, backend=backend, precision=precision, cache_dir=cache_dir,
            compile_net=compile_net, clip_denoise=clip_denoise, trust_pickle=trust_pickle,
        )  # fmt: skip
        settings = RestoreSettings(
            seed=seed, batch_size=batch_size, tile_batch=tile_batch, overwrite=overwrite,
            mask_threshold=mask_threshold, invert_mask=invert_mask, max_pixels=max_pixels,
            quality=quality, jpeg_quality=jpeg_quality, jpeg_bins=jpeg_bins,
            stdout_format=FORMATS[f".{output_format or 'png'}"],
            background=None if background is None else colour_rgb(background),
            trajectory=save_trajectory, samples=samples, outscale=outscale,
            mask_dilate=mask_dilate, mask_feather=mask_feather, mask_resize=mask_resize,
        )  # fmt: skip
        outcomes = _run(stages, settings, jobs, json_lines, cluster, pictures_phrase(split))
        finish(
            restore_split.gather(cluster, outcomes, sources), json_lines, cluster, stages, settings
        )


def _planned_chain(
    task: str | None, model: str | None, nfe: str | None, *, clean_jpeg: bool
) -> list[StageSpec]:
    """The stages asked for, with sr4x's JPEG cleaning first where `clean_jpeg` allows it."""
    chain = plan_chain(task, model, nfe)
    return with_jpeg_cleaning(chain) if clean_jpeg else chain


def _masking(
    mask: Path | None,
    mask_threshold: float | None,
    invert_mask: bool,
    mask_dilate: int | None,
    mask_feather: int,
    mask_resize: bool,
) -> dict[str, bool]:
    """Whether each inpainting option was given, by its name: a model of another family
    refuses them."""
    return {
        "--mask": mask is not None,
        "--mask-threshold": mask_threshold is not None,
        "--invert-mask": invert_mask,
        "--mask-dilate": mask_dilate is not None,
        "--mask-feather": mask_feather > 0,
        "--mask-resize": mask_resize,
    }


def _prepare(
    located: list[Located],
    cluster: Cluster,
    masking: dict[str, bool],
    sampling: dict,
    upsampled: bool,
    **load_options: Any,
) -> list[Stage]:
    """Each stage with its model, loaded once however many stages run it (`load_options`:
    _load's) and checked against the options. The main process loads first, so that a
    download or an ONNX export is made once, and it alone prints the notes."""
    device = restore_split.device_for(load_options.pop("device"), cluster)
    load = functools.partial(_load, device=device, talk=cluster.is_main, **load_options)
    with main_first(cluster):
        return prepare_stages(
            located,
            load,
            masking=masking,
            sampling=sampling,
            upsampled=upsampled,
            on_note=_note if cluster.is_main else None,
        )


def _note(note: str) -> None:
    console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)


def _jobs(
    planned: list[tuple[InputFile, Path]], mask: Path | None, stdin: bytes | None
) -> list[Job]:
    """A job for each (picture, output) planned, with its mask and, from stdin, its bytes."""
    return [
        Job(s, o, _find_mask(mask, s.relative), stdin if s.path == STDIO else None)
        for s, o in planned
    ]


def _plan(
    inputs: list[str],
    output: Path | None,
    output_format: str | None,
    recursive: bool,
    json_lines: bool,
    mask: Path | None,
    suffix: str | None,
    samples: int,
) -> tuple[list[InputFile], list[Path]]:
    """The pictures to restore and the output path of each, with the checks they allow: every
    file to be written (with several samples, each sample and the spread map) is planned before
    the model loads, and two that coincide, or one that is an input, are refused."""
    if mask is not None and not mask.exists():
        raise UsageError(f"--mask {mask}: no such file or folder")
    if mask is not None and mask.is_file() and picture_pixels(mask) is None:
        # Said before any model loads: the one mask serves every picture.
        raise UsageError(f"--mask {mask}: not a picture; give a PNG, JPEG, WebP, TIFF or BMP")
    kind = output_kind(output)
    if suffix is not None and kind in ("file", "template", "stdout"):
        raise UsageError(
            f"--suffix names outputs beside their inputs or in an -o folder, not -o {output}"
        )
    beside = SUFFIX if suffix is None else suffix
    folder = output if kind == "folder" else None
    sources = without_earlier_results(collect_inputs(inputs, recursive=recursive), beside, folder)
    _check_output_format(output, output_format)
    outputs = plan_outputs(
        sources, output, suffix=beside, default_ext=output_format, folder_suffix=suffix or ""
    )
    _check_stdout(outputs, json_lines)
    if samples > 1:
        if STDIO in outputs:
            raise UsageError("--samples above 1 writes several files; give -o FILE or FOLDER")
        check_written(sources, [written_files(o, samples) for o in outputs])
    return sources, outputs


def _load(
    checkpoint: Path,
    sha256: str | None,
    device: str,
    backend: str,
    precision: str | None,
    compile_net: bool,
    clip_denoise: bool,
    trust_pickle: bool,
    cache_dir: Path | None,
    *,
    talk: bool = True,
) -> LoadedModel:
    """The model, announcing a slow first step (an ONNX export) and printing its notes (when
    `talk`: under torchrun, the main process speaks for all). `sha256` is the checkpoint's,
    hashed once a run (prepare.prepare_stages): the ONNX export cache's key."""
    loaded = load_model(
        checkpoint,
        device,
        backend,
        precision=precision,
        compile=compile_net,
        clip_denoise=clip_denoise,
        trust_pickle=trust_pickle,
        cache_dir=cache_dir,
        on_step=lambda step: console.print(step, markup=False, soft_wrap=True) if talk else None,
        sha256=sha256,
    )
    # One line each: a CUDA provider that did not load, an export made and cached, TorchScript's
    # deprecation.
    for note in loaded.notes if talk else ():
        _note(note)
    return loaded


def _check_output_format(output: Path | None, output_format: str | None) -> None:
    """-o FILE names its format by its extension; a --format that disagrees is a mistake."""
    if output is None or output_format is None or output == STDIO or output.is_dir():
        return
    if is_picture_name(output) and FORMATS[output.suffix.lower()] != FORMATS[f".{output_format}"]:
        raise UsageError(f"--format {output_format} contradicts --output {output}")


def _check_stdout(outputs: list[Path], json_lines: bool) -> None:
    if STDIO not in outputs:
        return
    if json_lines:
        raise UsageError("--json and a picture on stdout (-o -) cannot share stdout; use -o FILE")
    if sys.stdout.isatty():
        raise UsageError("stdout is a terminal: redirect it to a file (> out.png) or use -o FILE")


def _read_stdin(max_pixels: int | None) -> bytes:
    """Stdin's bytes, up to what a picture within the pixel limit can take (8 bytes a pixel,
    16-bit RGBA uncompressed, and 16 MiB of headers and metadata): an endless stream is
    refused rather than read until memory runs out."""
    if sys.stdin.isatty():
        raise UsageError("the input - reads a picture from stdin, which is a terminal; pipe one in")
    pixels = max_pixels if max_pixels is not None else default_max_pixels()
    limit = None if pixels is None else 8 * pixels + (16 << 20)
    data = sys.stdin.buffer.read() if limit is None else sys.stdin.buffer.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ImageError(
            f"stdin: more than {limit:,} bytes, more than any picture of at most {pixels:,} "
            "pixels holds; give a file, or raise --max-pixels"
        )
    return data


def _counting(stage: Stage, progress: PictureProgress) -> Stage:
    """The stage with its network calls counted for the progress bar."""
    model = dataclasses.replace(stage.model, denoise=progress.counting(stage.model.denoise))
    return dataclasses.replace(stage, model=model)


def _run(
    stages: list[Stage],
    settings: RestoreSettings,
    jobs: list[Job],
    json_lines: bool,
    cluster: Cluster,
    pictures: str,
) -> list[Outcome]:
    """Restore the jobs after a header (which names the `pictures`), reporting each picture on
    stderr (and with --json, alone, on stdout: under torchrun the main process prints
    everyone's records in input order at the end)."""
    outcomes = []
    # A picture's work is its pixels: the time left follows the pictures' sizes.
    pixels = [picture_pixels(job.source.path, data=job.data) for job in jobs]
    work = dict(zip((job.source.path for job in jobs), works(pixels), strict=True))
    # Under torchrun only the main process shows a bar (of its own share).
    progress = PictureProgress(
        console, "restoring", len(jobs), sum(work.values()), disable=not cluster.is_main
    )
    # Made before the header: the Restorer refuses what the stages cannot do (--samples with
    # the OT-ODE), and a refused run announces nothing.
    restorer = Restorer(
        [_counting(stage, progress) for stage in stages],
        settings,
        on_step=lambda step: progress.step(step.index, step.total),
    )
    if cluster.is_main:
        announce(stages, settings, pictures)
    with progress:
        for outcome in restorer.run(jobs):
            outcomes.append(outcome)
            progress.finished(work[outcome.source], timed=outcome.status == "restored")
            report(outcome)
            if json_lines and not cluster.enabled:
                print_record(outcome, stages, settings)
    return outcomes
