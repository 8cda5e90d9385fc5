"""`i2sb evaluate`: score restorations against the originals of a `degrade` folder."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..evaluation.metrics import load_perceptual
from ..evaluation.score import METHODS, PERCEPTUAL, Failure, Summary, evaluate
from ..runtime.torch_backend import resolve_device
from .common import EXIT_FAILED, console, make_console, reports_errors

_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", PERCEPTUAL: "{:.4f}"}
_TITLES = {"psnr": "PSNR dB", "ssim": "SSIM", PERCEPTUAL: "ST-LPIPS"}
_SHORT = {"restored": "rest.", "baseline": "base.", "degraded": "input"}


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
    restored_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder of restorations, as `i2sb restore DEGRADE_DIR/degraded -o` wrote it.",
            show_default=False,
        ),
    ],
    perceptual: Annotated[
        bool,
        typer.Option(
            "--perceptual/--no-perceptual",
            help="Shift-tolerant LPIPS where stlpips-pytorch is installed (extra 'perceptual').",
        ),
    ] = True,
    device: Annotated[str, typer.Option(help="Device of the perceptual metric.")] = "cpu",
    json_lines: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per picture, then the means."),
    ] = False,
) -> None:
    """Score restorations (PSNR, SSIM, perceptual distance) beside the classical baseline.

    Each restoration is compared with its clean original, and so are the
    degraded input and the task's classical baseline, computed here: bicubic
    (sr4x), Tikhonov through the operator's SVD (blur-uni, blur-gauss), Wiener
    (the -plain blurs), the decoded picture (JPEG), OpenCV Telea (inpainting).
    PSNR and SSIM (11x11 Gaussian window, sigma 1.5) are computed on RGB.
    A table goes to stderr; --json prints the scores on stdout.
    """
    distance = None
    if perceptual:
        distance, reason = load_perceptual(resolve_device(device))
        if distance is None:
            console.print(f"[yellow]no perceptual column:[/] {escape(reason)}", soft_wrap=True)
    summary = Summary()
    rows = []
    for row in evaluate(degrade_dir, restored_dir, distance):
        if isinstance(row, Failure):
            summary.failed += 1
            console.print(
                f"[red]failed[/] {escape(row.name)}: {escape(row.reason)}", soft_wrap=True
            )
            continue
        summary.add(row)
        rows.append(row)
        if json_lines:
            print(json.dumps(row.to_json()), flush=True)
    if summary.count:
        table = _table(rows, summary)
        # Wide enough for every column whatever the terminal (or a pipe's 80 columns).
        wanted = sum(max(c.min_width or 0, 8) + 3 for c in table.columns) + 1
        out = console if console.width >= wanted else make_console(stderr=True, width=wanted)
        out.print(table)
    if json_lines:
        print(json.dumps(summary.to_json()), flush=True)
    console.print(f"{summary.count} scored, {summary.failed} failed")
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


def _table(rows: list, summary: Summary) -> Table:
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

    def cells(scores: dict[str, dict[str, float]]) -> list[str]:
        return [
            _FORMATS[metric].format(scores[metric][method])
            for metric in metrics
            for method in METHODS
        ]

    for row in rows:
        table.add_row(escape(row.name), *cells(row.scores))
    table.add_section()
    table.add_row("mean", *cells(means), style="bold")
    return table
