"""`i2sb restore`: files, folders, globs or stdin in; restored pictures out."""

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import restore_split
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta
from ..models.registry import resolve_model
from ..pictures.files import FORMATS
from ..pictures.inputs import (
    PICTURE_EXTENSIONS,
    STDIO,
    InputFile,
    collect_inputs,
    is_picture_name,
    plan_outputs,
)
from ..pictures.shards import parse_shard
from ..restore import Job, Outcome, Restorer, RestoreSettings, file_sha256
from ..restore_split import Split
from ..runtime import default_tile, load_model
from ..runtime.cluster import Cluster, main_first
from ..runtime.torch_backend import LoadedModel
from ..tasks import classical_degradation, family_of
from .common import EXIT_FAILED, CacheDir, Offline, console, reports_errors
from .restore_options import (
    Backend,
    BatchSize,
    ClipDenoise,
    Compile,
    Detail,
    Device,
    Inputs,
    InvertMask,
    JsonLines,
    Mask,
    MaskThreshold,
    MaxPixels,
    Model,
    Nfe,
    OtOde,
    Output,
    OutputFormat,
    Overwrite,
    Precision,
    Quality,
    Recursive,
    Samples,
    SaveTrajectory,
    Seed,
    Shard,
    Task,
    Tile,
    TileBatch,
    TileOverlap,
    TrustPickle,
    Upsampled,
)


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
    shard: Shard = None,
) -> None:
    """Restore pictures with the I2SB bridge sampler.

    Give - as the input to read one picture from stdin, and -o - to write the result to
    stdout (a picture from stdin goes there by default).

    Exit codes: 0 when every picture was restored or skipped; 1 when some pictures failed
    (each one is reported on stderr, and with --json on stdout) or the model could not be
    loaded; 2 for a usage error (a bad option or argument, nothing done); 130 when
    interrupted (Ctrl-C): every output written is complete, and running the same command
    again continues where it stopped.

    Under torchrun (one process per GPU, or per CPU core), the processes split the inputs
    by pixels, each on its own GPU; only the first prints the header, the summary and, with
    --json, the report of all, in input order. Every process exits with the job's code.
    """
    shard_of = parse_shard(shard) if shard is not None else None
    sources, outputs = _plan(inputs, output, output_format, recursive, json_lines, mask)
    restore_split.check_splittable(shard_of, sources, outputs)
    stdin = _read_stdin() if any(s.path == STDIO for s in sources) else None
    with restore_split.joined(device) as cluster:
        with main_first(cluster):
            checkpoint = resolve_model(model, task, cache_dir=cache_dir, offline=offline)
            loaded = _load(
                checkpoint, restore_split.device_for(device, cluster), backend, precision,
                compile_net, clip_denoise, trust_pickle, cache_dir, talk=cluster.is_main,
            )  # fmt: skip
        meta = loaded.meta
        family = _check_model(meta, task, nfe, mask, mask_threshold, invert_mask)
        tile = default_tile(meta.config) if tile is None else tile
        settings = RestoreSettings(
            family=family,
            classical=classical_degradation(meta.start, meta.degradation, task),
            nfe=nfe or meta.default_nfe,
            seed=seed,
            ot_ode=meta.ot_ode if ot_ode is None else ot_ode,
            detail=meta.default_detail if detail is None else detail,
            batch_size=batch_size,
            tile=tile,
            tile_overlap=min(64, tile // 4) if tile_overlap is None else tile_overlap,
            tile_batch=tile_batch,
            upsampled=upsampled,
            overwrite=overwrite,
            mask_threshold=0.5 if mask_threshold is None else mask_threshold,
            invert_mask=invert_mask,
            max_pixels=max_pixels,
            quality=quality,
            stdout_format=FORMATS[f".{output_format or 'png'}"],
            model_sha256=file_sha256(checkpoint),
            trajectory=save_trajectory,
            samples=samples,
        )
        split = restore_split.plan_split(sources, shard_of, cluster)
        mine = [sources[i] for i in split.mine], [outputs[i] for i in split.mine]
        jobs = _jobs(*mine, mask, stdin)
        if cluster.is_main:
            _announce(loaded, settings, _pictures(split))
        outcomes = _run(loaded, settings, jobs, json_lines, cluster)
        everyone = restore_split.gather(cluster, outcomes, sources)
        _finish(everyone, json_lines, cluster, meta.name, settings.model_sha256)


def _jobs(
    sources: list[InputFile], outputs: list[Path], mask: Path | None, stdin: bytes | None
) -> list[Job]:
    return [
        Job(s, o, _find_mask(mask, s.relative), stdin if s.path == STDIO else None)
        for s, o in zip(sources, outputs, strict=True)
    ]


def _plan(
    inputs: list[str],
    output: Path | None,
    output_format: str | None,
    recursive: bool,
    json_lines: bool,
    mask: Path | None,
) -> tuple[list[InputFile], list[Path]]:
    """The pictures to restore and the output path of each, with the checks they allow."""
    if mask is not None and not mask.exists():
        raise UsageError(f"--mask {mask}: no such file or folder")
    sources = collect_inputs(inputs, recursive=recursive)
    _check_output_format(output, output_format)
    outputs = plan_outputs(sources, output, suffix="_restored", default_ext=output_format)
    _check_stdout(outputs, json_lines)
    return sources, outputs


def _load(
    checkpoint: Path,
    device: str,
    backend: str,
    precision: str | None,
    compile_net: bool,
    clip_denoise: bool,
    trust_pickle: bool,
    cache_dir: Path | None,
    *,
    talk: bool,
) -> LoadedModel:
    """The model, announcing a slow first step (an ONNX export) and printing its notes (when
    `talk`: under torchrun, the main process speaks for all)."""
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
    )
    # One line each: a CUDA provider that did not load, an export made and cached, TorchScript's
    # deprecation.
    for note in loaded.notes if talk else ():
        console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
    return loaded


def _check_model(
    meta: CheckpointMeta,
    task: str | None,
    nfe: int | None,
    mask: Path | None,
    mask_threshold: float | None,
    invert_mask: bool,
) -> str:
    """The task family the model restores, once the options are checked against it."""
    family = family_of(task or meta.task)
    if family != family_of(meta.task):
        raise UsageError(
            f"--model {meta.name} restores {meta.task} pictures, not the {family} family"
        )
    for name, given in [
        ("--mask", mask is not None),
        ("--mask-threshold", mask_threshold is not None),
        ("--invert-mask", invert_mask),
    ]:
        if given and family != "inpaint":
            raise UsageError(f"{name} is for inpainting; {meta.name} does {meta.task}")
    if nfe is not None and nfe >= meta.interval:
        raise UsageError(f"--nfe must be less than the model's interval {meta.interval}, not {nfe}")
    return family


def _pictures(split: Split) -> str:
    """How many pictures the run restores, and how they are split."""
    counted = f"{split.in_shard} picture(s)"
    if split.shard is not None:
        index, count = split.shard
        counted = f"share {index}/{count}: {split.in_shard} of {split.total} picture(s)"
    return counted if split.processes == 1 else f"{counted} over {split.processes} processes"


def _announce(loaded: LoadedModel, settings: RestoreSettings, pictures: str) -> None:
    meta = loaded.meta
    start = (
        f", from the classical restoration of {settings.classical}" if settings.classical else ""
    )
    console.print(
        f"{meta.name} ({meta.task}) on {loaded.device} with {loaded.backend} "
        f"{loaded.precision}, NFE {settings.nfe}{start}, "
        f"{f'detail {settings.detail:g}, ' if settings.detail < 1 else ''}"
        f"{'OT-ODE' if settings.ot_ode else 'stochastic'}, seed {settings.seed}: {pictures}",
        markup=False,
        soft_wrap=True,
    )


def _finish(
    outcomes: list[Outcome], json_lines: bool, cluster: Cluster, model: str, sha256: str | None
) -> None:
    """The summary, and under torchrun the JSON report of all processes, from the main one;
    the exit code in every process."""
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
    if cluster.is_main:
        if json_lines and cluster.enabled:
            for outcome in outcomes:
                _print_record(outcome, model, sha256)
        summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        console.print(f"done: {summary or 'nothing to do'}")
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


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


def _read_stdin() -> bytes:
    if sys.stdin.isatty():
        raise UsageError("the input - reads a picture from stdin, which is a terminal; pipe one in")
    return sys.stdin.buffer.read()


def _run(
    loaded: LoadedModel,
    settings: RestoreSettings,
    jobs: list[Job],
    json_lines: bool,
    cluster: Cluster,
) -> list[Outcome]:
    """Restore the jobs, reporting each picture on stderr (and with --json, alone, on stdout)."""
    outcomes = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    # Off when stderr is not a terminal: a log file would only get an empty line from it; and
    # under torchrun but in the main process, whose bar counts its own share.
    shown = console.is_terminal and cluster.is_main
    with Progress(*columns, console=console, transient=True, disable=not shown) as progress:
        # A picture's samples are rows of the network batch: each counts its steps.
        steps = settings.nfe * settings.samples
        bar = progress.add_task("restoring", total=len(jobs) * steps)
        restorer = Restorer(
            loaded, settings, on_step=lambda step: progress.advance(bar, step.x.shape[0])
        )
        for outcome in restorer.run(jobs):
            outcomes.append(outcome)
            if outcome.status != "restored":
                progress.advance(bar, steps)
            _report(outcome)
            # Under torchrun, the main process prints everyone's records in input order at the end.
            if json_lines and not cluster.enabled:
                _print_record(outcome, loaded.meta.name, settings.model_sha256)
    return outcomes


def _report(outcome: Outcome) -> None:
    # Paths and messages are escaped: "photo [edit].png" is a file name, not rich markup.
    source, output = escape(str(outcome.source)), escape(str(outcome.output))
    if outcome.status == "failed":
        console.print(f"[red]failed[/] {source}: {escape(outcome.message)}", soft_wrap=True)
    elif outcome.status == "skipped":
        console.print(
            f"[yellow]skipped[/] {source}: {output} exists (use --overwrite)", soft_wrap=True
        )
    else:
        note = f"; {escape(outcome.message)}" if outcome.message else ""
        target = "stdout" if outcome.output == STDIO else output
        if outcome.samples:
            target = (
                f"{escape(str(outcome.samples[0]))} ... {escape(str(outcome.samples[-1]))}, "
                f"spread {output} (mean {outcome.spread_mean:.2f} levels)"
            )
        console.print(
            f"restored {source} -> {target} ({outcome.seconds:.1f} s{note})", soft_wrap=True
        )


def _print_record(outcome: Outcome, model: str, model_sha256: str | None) -> None:
    """One picture's line of --json on stdout."""
    record = {
        "input": str(outcome.source),
        "output": str(outcome.output),
        "status": outcome.status,
        "error": outcome.message if outcome.status == "failed" else None,
        "seed": outcome.seed,
        "seconds": round(outcome.seconds, 3),
        "model": model,
        "model_sha256": model_sha256,
        "samples": [str(path) for path in outcome.samples],
        "spread_mean": (None if outcome.spread_mean is None else round(outcome.spread_mean, 4)),
    }
    print(json.dumps(record), flush=True)
