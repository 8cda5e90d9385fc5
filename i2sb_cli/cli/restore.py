"""`i2sb restore`: files, folders or globs in; restored pictures out."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import UsageError
from ..inputs import PICTURE_EXTENSIONS, collect_inputs, plan_outputs
from ..models.registry import resolve_model
from ..restore import Job, Outcome, Restorer, RestoreSettings
from ..runtime.torch_backend import LoadedModel, load_torch_model, resolve_device
from ..tasks import TASK_CHOICES, family_of
from .common import EXIT_FAILED, console, reports_errors


def _check_task(value: str | None) -> str | None:
    if value is not None and value not in TASK_CHOICES:
        raise typer.BadParameter(
            f"{value!r} is not a task; choose one of: {', '.join(TASK_CHOICES)}"
        )
    return value


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
        list[str], typer.Argument(help="Pictures, folders or globs to restore.", show_default=False)
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Pictures of the same size sampled together.")
    ] = 1,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Inpainting mask FILE or DIR (white = hole). Default: the picture's alpha channel."
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            min=16,
            help="Tile size for large pictures (default: 512, or the "
            "model's training size for models with attention).",
        ),
    ] = None,
    tile_overlap: Annotated[
        int, typer.Option(min=0, help="Overlap between tiles, blended smoothly.")
    ] = 64,
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Descend into sub-folders.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace outputs that exist (default: skip them).")
    ] = False,
    upsampled: Annotated[
        bool,
        typer.Option(
            help="sr4x: the input is already 4x nearest-upsampled (the paper's x1), not small."
        ),
    ] = False,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per picture on stdout.")
    ] = False,
) -> None:
    """Restore pictures with the I2SB bridge sampler."""
    if mask is not None and not mask.exists():
        raise UsageError(f"--mask {mask}: no such file or folder")
    sources = collect_inputs(inputs, recursive=recursive)
    outputs = plan_outputs(sources, output, suffix="_restored", default_ext=None)

    checkpoint = resolve_model(model, task)
    loaded = load_torch_model(checkpoint, resolve_device(device))
    meta = loaded.meta
    family = family_of(task or meta.task)
    if family != family_of(meta.task):
        raise UsageError(
            f"--model {meta.name} restores {meta.task} pictures, not the {family} family"
        )
    if mask is not None and family != "inpaint":
        raise UsageError(f"--mask is for inpainting; {meta.name} does {meta.task}")
    if nfe is not None and nfe >= meta.interval:
        raise UsageError(f"--nfe must be less than the model's interval {meta.interval}, not {nfe}")
    if tile is None:
        tile = 512 if not meta.config.attention_resolutions else meta.config.image_size
    settings = RestoreSettings(
        family=family,
        nfe=nfe or meta.default_nfe,
        seed=seed,
        ot_ode=meta.ot_ode if ot_ode is None else ot_ode,
        batch_size=batch_size,
        tile=tile,
        tile_overlap=tile_overlap,
        upsampled=upsampled,
        overwrite=overwrite,
    )
    jobs = [Job(s, o, _find_mask(mask, s.relative)) for s, o in zip(sources, outputs, strict=True)]
    console.print(
        f"{meta.name} ({meta.task}) on {loaded.device}, NFE {settings.nfe}, "
        f"{'OT-ODE' if settings.ot_ode else 'stochastic'}, seed {seed}: {len(jobs)} picture(s)",
        markup=False,
        soft_wrap=True,
    )
    counts = _run(loaded, settings, jobs, json_lines)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"done: {summary or 'nothing to do'}")
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


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
            _report(outcome, json_lines)
    return counts


def _report(outcome: Outcome, json_lines: bool) -> None:
    # Paths and messages are escaped: "photo [edit].png" is a file name, not rich markup.
    source, output = escape(str(outcome.source)), escape(str(outcome.output))
    if outcome.status == "failed":
        console.print(f"[red]failed[/] {source}: {escape(outcome.message)}", soft_wrap=True)
    elif outcome.status == "skipped":
        console.print(
            f"[yellow]skipped[/] {source}: {output} exists (use --overwrite)", soft_wrap=True
        )
    else:
        console.print(f"restored {source} -> {output} ({outcome.seconds:.1f} s)", soft_wrap=True)
    if json_lines:
        record = {
            "input": str(outcome.source),
            "output": str(outcome.output),
            "status": outcome.status,
            "message": outcome.message,
            "seed": outcome.seed,
            "seconds": round(outcome.seconds, 3),
        }
        print(json.dumps(record), flush=True)
