"""`i2sb evaluate`: score restorations against the originals of a `degrade` folder, or restore
them at several NFE and score each (quality against NFE, with a plot)."""

import dataclasses
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..degrade.baselines import baseline_name
from ..errors import UsageError
from ..evaluation.metrics import PSNR_CAP, Perceptual, load_perceptual
from ..evaluation.score import METHODS, PERCEPTUAL, Failure, Record, Scores, Summary, evaluate
from ..evaluation.score import read_manifest as read_records
from ..pictures.files import picture_pixels
from ..restoring.chain import Stage, StageSpec
from ..restoring.plot import plot_nfe, require_matplotlib
from ..restoring.prepare import locate_stages, prepare_stages
from ..restoring.sweep import (
    NfePoint,
    median_seconds,
    nfe_folder,
    parse_nfes,
    restore_at,
    restore_task,
)
from ..runtime import load_model
from ..runtime.torch_backend import LoadedModel, resolve_device
from .common import (
    EXIT_FAILED,
    CacheDir,
    Offline,
    Quiet,
    console,
    errors,
    make_console,
    reports_errors,
)
from .progress import PictureProgress, works
from .restore_options import Backend, Model, OtOde, Seed

_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", PERCEPTUAL: "{:.4f}"}
_TITLES = {"psnr": "PSNR dB", "ssim": "SSIM", PERCEPTUAL: "ST-LPIPS"}
_SHORT = {"restored": "rest.", "baseline": "base.", "degraded": "input"}

RestoredDir = Annotated[
    Path | None,
    typer.Argument(
        help="Folder of restorations, as `i2sb restore DEGRADE_DIR/degraded -o` wrote it. With "
        "--nfe: where each NFE's restorations go (RESTORED_DIR/nfe-N; default: a temporary "
        "folder).",
        show_default=False,
    ),
]
NfeList = Annotated[
    list[str] | None,
    typer.Option(
        "--nfe",
        help="Restore DEGRADE_DIR here at each of these NFE (--nfe 1,2,5,10,20 or repeated "
        "--nfe) with one model load, and score each: quality against NFE.",
        show_default=False,
    ),
]
Plot = Annotated[
    Path | None,
    typer.Option(
        help="With --nfe: draw PSNR, SSIM and ST-LPIPS against NFE into this PNG, the classical "
        'baseline and the degraded input as lines (needs matplotlib: pip install "i2sb\\[plot]").',
        show_default=False,
    ),
]


@reports_errors
def evaluate_command(
    degrade_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder written by `i2sb degrade -o` (its manifest.jsonl names the originals).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    restored_dir: RestoredDir = None,
    perceptual: Annotated[
        bool,
        typer.Option(
            "--perceptual/--no-perceptual",
            help="Shift-tolerant LPIPS where stlpips-pytorch is installed (extra 'perceptual').",
        ),
    ] = True,
    device: Annotated[
        str, typer.Option(help="Device of the perceptual metric, and with --nfe of the model.")
    ] = "cpu",
    json_lines: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per picture, then the means."),
    ] = False,
    nfe: NfeList = None,
    model: Model = None,
    seed: Seed = 0,
    ot_ode: OtOde = None,
    backend: Backend = "auto",
    cache_dir: CacheDir = None,
    offline: Offline = None,
    plot: Plot = None,
    quiet: Quiet = False,
) -> None:
    """Score restorations (PSNR, SSIM, perceptual distance) beside the classical baseline.

    Each restoration is compared with its clean original, and so are the
    degraded input and the task's classical baseline, computed here: bicubic
    (sr4x), Tikhonov through the operator's SVD (blur-uni, blur-gauss), Wiener
    (the -plain blurs), the decoded picture (JPEG), OpenCV Telea (inpainting).
    PSNR and SSIM (11x11 Gaussian window, sigma 1.5) are computed on RGB.
    A table goes to stderr; --json prints the scores on stdout. A metric a
    picture is too small for (SSIM under 3 pixels a side, ST-LPIPS under 21)
    is a dash (null in --json) with a note, and left out of the means.

    With --nfe 1,2,5 the model (--model, default: the bundled one of the folder's
    task) restores the degraded pictures at each NFE, as `i2sb restore` would,
    and each NFE is scored: a table of the means and the median sampling seconds
    per picture, with --json each NFE's pictures and means (keys "nfe",
    "seconds_per_picture"), with --plot FILE the curves.
    """
    nfes = parse_nfes(nfe) if nfe is not None else None
    if nfes is None:
        for name, given in [("--plot", plot), ("--model", model)]:
            if given is not None:
                raise UsageError(f"{name} goes with --nfe (e.g. --nfe 1,2,5)")
        if restored_dir is None:
            raise UsageError("give RESTORED_DIR, or --nfe 1,2,5 to restore the pictures here")
    elif plot is not None:
        require_matplotlib()
    records = read_records(degrade_dir)
    distance = _perceptual(perceptual, device)
    if nfes is None:
        summary, rows = _score_all(degrade_dir, restored_dir, distance, records, json_lines)
        if summary.count:
            _print(_table(rows, summary))
            _note_identical(summary)
            _note_counts(summary)
        if json_lines:
            print(json.dumps(summary.to_json()), flush=True)
        console.print(f"{summary.count} scored, {summary.failed} failed")
        failed = summary.failed
    else:
        stage = _prepare(model, records, nfes, device, backend, ot_ode, cache_dir, offline)
        with tempfile.TemporaryDirectory(prefix="i2sb-nfe-") as scratch:
            root = restored_dir or Path(scratch)
            seconds = _restore_all(stage, records, root, nfes, seed)
            noted: set[tuple[str, str]] = set()
            points = [
                _score_nfe(
                    degrade_dir, root, nfe, seconds[nfe], distance, records, json_lines, noted
                )
                for nfe in nfes
            ]
        failed = sum(point.summary.failed for point in points)
        _report_nfes(points, stage.model, records, plot)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _perceptual(wanted: bool, device: str) -> Perceptual | None:
    if not wanted:
        return None
    distance, reason = load_perceptual(resolve_device(device))
    if distance is None:
        console.print(f"[yellow]no perceptual column:[/] {escape(reason)}", soft_wrap=True)
    return distance


def _score_all(
    degrade_dir: Path,
    restored_dir: Path,
    distance: Perceptual | None,
    records: list[Record],
    json_lines: bool,
    extra: dict[str, object] | None = None,
    noted: set[tuple[str, str]] | None = None,
) -> tuple[Summary, list[Scores]]:
    """Score a folder under a progress bar; print failures, a note for each metric a picture
    cannot have (once per picture and metric in `noted`, which the NFE sweep shares) and, with
    --json, each picture (with `extra` keys)."""
    summary, rows = Summary(), []
    noted = set() if noted is None else noted
    pixels = {record.name: record.size[0] * record.size[1] for record in records}
    with PictureProgress(console, "scoring", len(records), sum(pixels.values())) as progress:
        for row in evaluate(degrade_dir, restored_dir, distance):
            progress.finished(pixels[row.name], timed=isinstance(row, Scores))
            if isinstance(row, Failure):
                summary.failed += 1
                errors.print(
                    f"[red]failed[/] {escape(row.name)}: {escape(row.reason)}", soft_wrap=True
                )
                continue
            summary.add(row)
            rows.append(row)
            for metric, reason in row.unavailable.items():
                if (row.name, metric) not in noted:
                    noted.add((row.name, metric))
                    console.print(
                        f"note: {row.name}: {reason}",
                        style="yellow",
                        markup=False,
                        soft_wrap=True,
                    )
            if json_lines:
                print(json.dumps({**row.to_json(), **(extra or {})}), flush=True)
    return summary, rows


def _prepare(
    model: str | None,
    records: list[Record],
    nfes: list[int],
    device: str,
    backend: str,
    ot_ode: bool | None,
    cache_dir: Path | None,
    offline: bool | None,
) -> Stage:
    """The model of the sweep as restore prepares one (restoring/prepare.py): found for the
    folder's task, checked against it and the largest NFE, loaded and hashed once; the sampler
    asked for refused where restore refuses it."""
    spec = StageSpec(task=restore_task(records), model=model, nfe=max(nfes))
    located = locate_stages([spec], cache_dir, offline, dry_run=False)

    def load(checkpoint: Path, sha256: str | None) -> LoadedModel:
        loaded = load_model(
            checkpoint,
            device,
            backend,
            cache_dir=cache_dir,
            sha256=sha256,
            on_step=lambda step: console.print(step, markup=False, soft_wrap=True),
        )
        for note in loaded.notes:
            console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
        return loaded

    def note(text: str) -> None:
        console.print(f"note: {text}", style="yellow", markup=False, soft_wrap=True)

    (stage,) = prepare_stages(
        located, load, sampling={"ot_ode": ot_ode}, upsampled=records[0].upsampled, on_note=note
    )
    return stage


def _restore_all(
    stage: Stage,
    records: list[Record],
    root: Path,
    nfes: list[int],
    seed: int,
) -> dict[int, float | None]:
    """Restore every picture at every NFE under a progress bar (a picture's work: its pixels
    times the NFE); the median sampling seconds per picture of each NFE."""
    pixels = works([picture_pixels(record.degraded) for record in records])
    work = {record.degraded: p for record, p in zip(records, pixels, strict=True)}
    seconds = {}
    count, total = len(records) * len(nfes), sum(pixels) * sum(nfes)
    with PictureProgress(console, "restoring", count, total) as progress:
        model = dataclasses.replace(stage.model, denoise=progress.counting(stage.model.denoise))
        counted = dataclasses.replace(stage, model=model)
        for nfe in nfes:
            outcomes = []
            for outcome in restore_at(
                counted, records, root, nfe, seed=seed,
                on_step=lambda step: progress.step(step.index, step.total),
            ):  # fmt: skip
                outcomes.append(outcome)
                progress.finished(work[outcome.source] * nfe, timed=outcome.status == "restored")
                if outcome.status == "failed":
                    message = f"NFE {nfe} {outcome.source}: {outcome.message}"
                    errors.print(f"[red]failed[/] {escape(message)}", soft_wrap=True)
            seconds[nfe] = median_seconds(outcomes)
    return seconds


def _score_nfe(
    degrade_dir: Path,
    root: Path,
    nfe: int,
    seconds: float | None,
    distance: Perceptual | None,
    records: list[Record],
    json_lines: bool,
    noted: set[tuple[str, str]],
) -> NfePoint:
    folder = nfe_folder(root, nfe)
    summary, _ = _score_all(degrade_dir, folder, distance, records, json_lines, {"nfe": nfe}, noted)
    point = NfePoint(nfe, summary, seconds)
    if json_lines:
        print(json.dumps(point.to_json()), flush=True)
    return point


def _report_nfes(
    points: list[NfePoint],
    loaded: LoadedModel,
    records: list[Record],
    plot: Path | None,
) -> None:
    """The table of the NFE sweep, and its plot when asked for."""
    scored = [point for point in points if point.summary.count]
    if not scored:
        return
    baseline, name = baseline_name(records[0].task), loaded.meta.name
    _print(_nfe_table(scored, baseline, name))
    for point in scored:
        _note_identical(point.summary, f"at NFE {point.nfe}, ")
        _note_counts(point.summary, f"at NFE {point.nfe}, ")
    if plot is not None:
        title = f"{name} on {_pictures(scored[0].summary.count)} ({records[0].task})"
        plot_nfe(scored, plot, title=title, baseline=baseline)
        console.print(f"plot: {escape(str(plot))}")


def _note_identical(summary: Summary, where: str = "") -> None:
    """Say which means count pictures identical to their originals: the PSNR of each is capped
    (PSNR_CAP), and a few of them outweigh the rest of a mean."""
    for method, count in summary.identical.items():
        console.print(
            f"note: {where}{count} of {summary.count} {method} pictures are identical to their "
            f"originals; their PSNR, capped at {PSNR_CAP:g} dB, is in the {method} mean "
            "(--json gives each picture's)",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def _note_counts(summary: Summary, where: str = "") -> None:
    """Say which means leave out the pictures a metric is not defined for, and how many
    pictures they count."""
    for metric, count in summary.counts.items():
        if count < summary.count:
            console.print(
                f"note: {where}the {_TITLES[metric]} means count {count} of "
                f"{_pictures(summary.count)} (the notes above say why)",
                style="yellow",
                markup=False,
                soft_wrap=True,
            )


def _cell(metric: str, value: float | None) -> str:
    """A table cell: a dash where the metric is not defined."""
    return "-" if value is None else _FORMATS[metric].format(value)


def _print(table: Table) -> None:
    # Wide enough for every column whatever the terminal (or a pipe's 80 columns).
    wanted = sum(max(c.min_width or 0, 8) + 3 for c in table.columns) + 1
    if console.width >= wanted:
        console.print(table)
    else:
        make_console(stderr=True, width=wanted, quiet=console.quiet).print(table)


def _nfe_table(points: list[NfePoint], baseline: str, model: str) -> Table:
    means = [point.summary.means() for point in points]
    metrics = list(means[0])
    table = Table(
        title=f"{model} against NFE, {_pictures(points[0].summary.count)}", title_justify="left"
    )
    table.add_column("", min_width=8)
    for metric in metrics:
        table.add_column(_TITLES[metric], justify="right", no_wrap=True, min_width=7)
    table.add_column("s/picture", justify="right", no_wrap=True, min_width=7)

    def cells(scores: dict[str, dict[str, float | None]], method: str) -> list[str]:
        return [_cell(metric, scores[metric][method]) for metric in metrics]

    for point, scores in zip(points, means, strict=True):
        time = "-" if point.seconds is None else f"{point.seconds:.2f}"
        table.add_row(f"NFE {point.nfe}", *cells(scores, "restored"), time)
    table.add_section()
    table.add_row(baseline, *cells(means[0], "baseline"), "")
    table.add_row("input", *cells(means[0], "degraded"), "")
    return table


def _pictures(count: int) -> str:
    return f"{count} picture{'' if count == 1 else 's'}"


def _table(rows: Iterable[Scores], summary: Summary) -> Table:
    rows = list(rows)
    means = summary.means()
    metrics = list(means)
    baselines = sorted({row.baseline for row in rows})
    table = Table(
        title=f"{summary.count} pictures: restored vs baseline ({', '.join(baselines)}) "
        "vs degraded input",
        title_justify="left",
    )
    names = min(48, max(len(row.name) for row in rows))
    table.add_column("picture", min_width=names, overflow="fold")
    for metric in metrics:
        for method in METHODS:
            title = f"{_TITLES[metric]}\n{_SHORT[method]}"
            table.add_column(title, justify="right", no_wrap=True, min_width=7)

    def cells(scores: dict[str, dict[str, float | None]]) -> list[str]:
        return [_cell(metric, scores[metric][method]) for metric in metrics for method in METHODS]

    for row in rows:
        table.add_row(escape(row.name), *cells(row.scores))
    table.add_section()
    table.add_row("mean", *cells(means), style="bold")
    return table
