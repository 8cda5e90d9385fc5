"""`i2sb restore`: files, folders, globs or stdin in; restored pictures out."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import UsageError
from ..models.registry import resolve_model
from ..pictures.files import FORMATS, default_max_pixels
from ..pictures.inputs import (
    PICTURE_EXTENSIONS,
    STDIO,
    collect_inputs,
    is_picture_name,
    plan_outputs,
)
from ..restore import Job, Outcome, Restorer, RestoreSettings, file_sha256
from ..runtime import load_model
from ..runtime.torch_backend import LoadedModel
from ..tasks import TASK_CHOICES, classical_degradation, family_of
from .common import EXIT_FAILED, CacheDir, Offline, console, reports_errors

_LIMIT = default_max_pixels()
_DEFAULT_LIMIT = f"{_LIMIT:,}" if _LIMIT else "none"


def _check_task(value: str | None) -> str | None:
    if value is not None and value not in TASK_CHOICES:
        raise typer.BadParameter(
            f"{value!r} is not a task; choose one of: {', '.join(TASK_CHOICES)}"
        )
    return value


def _check_format(value: str | None) -> str | None:
    if value is None:
        return None
    ext = value.lower().removeprefix(".")
    if f".{ext}" not in FORMATS:
        choices = ", ".join(sorted({e.removeprefix(".") for e in FORMATS}))
        raise typer.BadParameter(f"{value!r} is not a format; choose one of: {choices}")
    return ext


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
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Pictures, folders or globs to restore; - reads one from stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Output folder (mirrors sub-folders), or a file for one input. "
            "Default: next to each input, with a _restored suffix.",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help=f"What to restore: {', '.join(TASK_CHOICES)}. A family picks its bundled model.",
            callback=_check_task,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="A model name or checkpoint file (default: the task's bundled model)."),
    ] = None,
    cache_dir: CacheDir = None,
    offline: Offline = None,
    nfe: Annotated[
        int | None,
        typer.Option(min=1, max=999, help="Network calls per picture (default: the model's)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed; each picture's noise comes from (seed, its relative path).")
    ] = 0,
    ot_ode: Annotated[
        bool | None,
        typer.Option(
            "--ot-ode/--stochastic",
            help="Deterministic OT-ODE or stochastic sampler (default: the model's).",
            show_default=False,
        ),
    ] = None,
    detail: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="How much of the sampler's generated detail to keep: 1 the bridge's sample, "
            "0 the network's one-step estimate (smoother, closer to the original on average), "
            "between them a mix; costs nothing (default: the model's).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    backend: Annotated[
        str,
        typer.Option(
            help="auto, torch or onnxruntime. auto: a checkpoint runs in ONNX Runtime on the "
            "CPU in fp32 when it is installed (faster; exported once into the cache), else in "
            "torch; an exported file by its suffix. --backend torch is the exact reference."
        ),
    ] = "auto",
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, bf16 or fp16 (fp16 on CUDA only; default: fp32 or the export's)."),
    ] = None,
    compile_net: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network (torch backend).")
    ] = False,
    clip_denoise: Annotated[
        bool,
        typer.Option(
            "--clip-denoise",
            help="Clamp the network's estimate of the clean picture to [-1, 1] at every step "
            "(off, as in the official sample.py).",
        ),
    ] = False,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle",
            help="Load a torch.export .pt2 file, which torch unpickles and which can therefore "
            "run code: only for files you made or trust (refused otherwise).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Pictures of the same size sampled together.")
    ] = 1,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Output format: png, jpg, webp, tif or bmp (default: each input's own; PNG on "
            "stdout). Pictures with transparency are written as PNG where it cannot be kept.",
            callback=_check_format,
            show_default=False,
        ),
    ] = None,
    quality: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="JPEG and WebP quality (default: JPEG 95, WebP lossless).",
            show_default=False,
        ),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Inpainting mask FILE or DIR (white = hole). Default: the picture's alpha channel."
        ),
    ] = None,
    mask_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Grey level, as a fraction of white, from which a mask pixel is a hole "
            "(for alpha: below which it is). Default 0.5.",
            show_default=False,
        ),
    ] = None,
    invert_mask: Annotated[
        bool, typer.Option("--invert-mask", help="Swap hole and kept pixels: black = hole.")
    ] = False,
    tile: Annotated[
        int | None,
        typer.Option(
            min=16,
            help="Tile size for large pictures (default: 512, or the "
            "model's training size for models with attention).",
        ),
    ] = None,
    tile_overlap: Annotated[
        int | None,
        typer.Option(
            min=0, help="Overlap between tiles, blended smoothly (default: 64, at most tile/4)."
        ),
    ] = None,
    tile_batch: Annotated[
        int,
        typer.Option(
            min=1,
            help="Tiles of a large picture per network call: faster on a GPU that one tile "
            "leaves idle, more memory (measure with i2sb benchmark --tile-batch).",
        ),
    ] = 1,
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Descend into sub-folders.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--skip-existing",
            help="Replace outputs that exist, or skip them (so that a rerun continues).",
        ),
    ] = False,
    upsampled: Annotated[
        bool,
        typer.Option(
            help="sr4x: the input is already 4x nearest-upsampled (the paper's x1), not small."
        ),
    ] = False,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Refuse pictures with more pixels than this, a guard against decompression "
            f"bombs (default: {_DEFAULT_LIMIT}).",
            show_default=False,
        ),
    ] = None,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object per picture on stdout: input, output, status "
            "(restored, skipped, failed), error, seed, seconds, model, model_sha256.",
        ),
    ] = False,
) -> None:
    """Restore pictures with the I2SB bridge sampler.

    Give - as the input to read one picture from stdin, and -o - to write the result to
    stdout (a picture from stdin goes there by default).

    Exit codes: 0 when every picture was restored or skipped; 1 when some pictures failed
    (each one is reported on stderr, and with --json on stdout) or the model could not be
    loaded; 2 for a usage error (a bad option or argument, nothing done); 130 when
    interrupted (Ctrl-C): every output written is complete, and running the same command
    again continues where it stopped.
    """
    if mask is not None and not mask.exists():
        raise UsageError(f"--mask {mask}: no such file or folder")
    sources = collect_inputs(inputs, recursive=recursive)
    _check_output_format(output, output_format)
    outputs = plan_outputs(sources, output, suffix="_restored", default_ext=output_format)
    _check_stdout(outputs, json_lines)
    stdin = _read_stdin() if any(s.path == STDIO for s in sources) else None

    checkpoint = resolve_model(model, task, cache_dir=cache_dir, offline=offline)
    loaded = load_model(
        checkpoint,
        device,
        backend,
        precision=precision,
        compile=compile_net,
        clip_denoise=clip_denoise,
        cache_dir=cache_dir,
        trust_pickle=trust_pickle,
        on_step=lambda step: console.print(step, markup=False, soft_wrap=True),
    )
    # One line each: a CUDA provider that did not load, an export made and cached, TorchScript's
    # deprecation.
    for note in loaded.notes:
        console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
    meta = loaded.meta
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
    if tile is None:
        tile = 512 if not meta.config.attention_resolutions else meta.config.image_size
    if tile_overlap is None:
        tile_overlap = min(64, tile // 4)
    settings = RestoreSettings(
        family=family,
        classical=classical_degradation(meta.start, meta.degradation, task),
        nfe=nfe or meta.default_nfe,
        seed=seed,
        ot_ode=meta.ot_ode if ot_ode is None else ot_ode,
        detail=meta.default_detail if detail is None else detail,
        batch_size=batch_size,
        tile=tile,
        tile_overlap=tile_overlap,
        tile_batch=tile_batch,
        upsampled=upsampled,
        overwrite=overwrite,
        mask_threshold=0.5 if mask_threshold is None else mask_threshold,
        invert_mask=invert_mask,
        max_pixels=max_pixels,
        quality=quality,
        stdout_format=FORMATS[f".{output_format or 'png'}"],
        model_sha256=file_sha256(checkpoint),
    )
    jobs = [
        Job(s, o, _find_mask(mask, s.relative), stdin if s.path == STDIO else None)
        for s, o in zip(sources, outputs, strict=True)
    ]
    start = (
        f", from the classical restoration of {settings.classical}" if settings.classical else ""
    )
    console.print(
        f"{meta.name} ({meta.task}) on {loaded.device} with {loaded.backend} "
        f"{loaded.precision}, NFE {settings.nfe}{start}, "
        f"{f'detail {settings.detail:g}, ' if settings.detail < 1 else ''}"
        f"{'OT-ODE' if settings.ot_ode else 'stochastic'}, seed {seed}: {len(jobs)} picture(s)",
        markup=False,
        soft_wrap=True,
    )
    counts = _run(loaded, settings, jobs, json_lines)
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
    loaded: LoadedModel, settings: RestoreSettings, jobs: list[Job], json_lines: bool
) -> dict[str, int]:
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    # Off when stderr is not a terminal: a log file would only get an empty line from it.
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        bar = progress.add_task("restoring", total=len(jobs) * settings.nfe)
        restorer = Restorer(
            loaded, settings, on_step=lambda step: progress.advance(bar, step.x.shape[0])
        )
        for outcome in restorer.run(jobs):
            counts[outcome.status] += 1
            if outcome.status != "restored":
                progress.advance(bar, settings.nfe)
            _report(outcome, json_lines, loaded.meta.name, settings.model_sha256)
    return counts


def _report(outcome: Outcome, json_lines: bool, model: str, model_sha256: str | None) -> None:
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
        console.print(
            f"restored {source} -> {target} ({outcome.seconds:.1f} s{note})", soft_wrap=True
        )
    if json_lines:
        record = {
            "input": str(outcome.source),
            "output": str(outcome.output),
            "status": outcome.status,
            "error": outcome.message if outcome.status == "failed" else None,
            "seed": outcome.seed,
            "seconds": round(outcome.seconds, 3),
            "model": model,
            "model_sha256": model_sha256,
        }
        print(json.dumps(record), flush=True)
