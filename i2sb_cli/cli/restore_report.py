"""What `i2sb restore` tells its user: the run announced, each picture's line on stderr, its
--json record on stdout, and the summary with the exit code."""

import dataclasses
import json

import typer
from rich.markup import escape

from ..pictures.inputs import STDIO
from ..restoring.chain import Stage
from ..restoring.loop import Outcome, RestoreSettings
from ..restoring.split import Split
from ..runtime.cluster import Cluster
from .common import EXIT_FAILED, console, errors


def pictures_phrase(split: Split) -> str:
    """How many pictures the run restores, and how they are split."""
    counted = f"{split.in_shard} picture(s)"
    if split.shard is not None:
        index, count = split.shard
        counted = f"share {index}/{count}: {split.in_shard} of {split.total} picture(s)"
    return counted if split.processes == 1 else f"{counted} over {split.processes} processes"


def announce(stages: list[Stage], settings: RestoreSettings, pictures: str) -> None:
    first = stages[0]
    loaded = first.model
    meta = loaded.meta
    start = f", from the classical restoration of {first.classical}" if first.classical else ""
    if first.start is not None:
        start = f", from the upscale of {meta.start}"
    if first.jpeg_only:
        start = " (first, on pictures saved as JPEG only; --no-clean-jpeg skips it)"
    console.print(
        f"{meta.name} ({meta.task}) on {loaded.device} with {loaded.backend} "
        f"{loaded.precision}, {first.sampling.describe()}{start}, seed {settings.seed}: "
        f"{pictures}",
        markup=False,
        soft_wrap=True,
    )
    for stage in stages[1:]:
        console.print(
            f"then {stage.model.meta.name} ({stage.model.meta.task}), {stage.sampling.describe()}",
            markup=False,
            soft_wrap=True,
        )


def finish(
    outcomes: list[Outcome],
    json_lines: bool,
    cluster: Cluster,
    stages: list[Stage],
    settings: RestoreSettings,
) -> None:
    """The summary, and under torchrun the JSON report of all processes, from the main one;
    the exit code in every process."""
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
    if cluster.is_main:
        if json_lines and cluster.enabled:
            for outcome in outcomes:
                print_record(outcome, stages, settings)
        summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        console.print(f"done: {summary or 'nothing to do'}")
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


def report(outcome: Outcome) -> None:
    # Paths and messages are escaped: "photo [edit].png" is a file name, not rich markup.
    source, output = escape(str(outcome.source)), escape(str(outcome.output))
    if outcome.status == "failed":
        errors.print(f"[red]failed[/] {source}: {escape(outcome.message)}", soft_wrap=True)
    elif outcome.status == "skipped":
        # The output found before restoring, or written by another run meanwhile: the loop
        # says which.
        console.print(f"[yellow]skipped[/] {source}: {escape(outcome.message)}", soft_wrap=True)
    else:
        note = f"; {escape(outcome.message)}" if outcome.message else ""
        if outcome.hole is not None:
            note = f"; {outcome.hole.describe()}{note}"
        if outcome.jpeg_slack is not None:
            note = f"; kept within {outcome.jpeg_slack:.2f} step of the file's DCT{note}"
        if outcome.told is not None:
            note = f"; {outcome.told.describe()}{note}"
        elif outcome.jpeg_quality is not None:
            note = f"; JPEG quality {outcome.jpeg_quality}{note}"
        target = "stdout" if outcome.output == STDIO else output
        if outcome.samples:
            target = (
                f"{escape(str(outcome.samples[0]))} ... {escape(str(outcome.samples[-1]))}, "
                f"spread {output} (mean {outcome.spread_mean:.2f} levels)"
            )
        console.print(
            f"restored {source} -> {target} ({outcome.seconds:.1f} s{note})", soft_wrap=True
        )


def print_record(outcome: Outcome, stages: list[Stage], settings: RestoreSettings) -> None:
    """One picture's line of --json on stdout. A chain is named by its stages' models, in
    order, as the outputs' metadata names it; `outscale` is null where the model's own scale
    was kept. A restored picture names the stages that ran on it (a JPEG cleaning runs only
    on a JPEG's); the others name every stage."""
    ran = outcome.stages
    models = [r.model for r in ran] if ran else [s.model.meta.name for s in stages]
    digests = [r.model_sha256 for r in ran] if ran else [s.model_sha256 for s in stages]
    record = {
        "input": str(outcome.source),
        "output": str(outcome.output),
        "status": outcome.status,
        "error": outcome.message if outcome.status == "failed" else None,
        "seed": outcome.seed,
        "seconds": round(outcome.seconds, 3),
        "model": ",".join(models),
        "model_sha256": ",".join(digest or "" for digest in digests),
        "samples": [str(path) for path in outcome.samples],
        "outscale": settings.outscale,
        "spread_mean": (None if outcome.spread_mean is None else round(outcome.spread_mean, 4)),
        "jpeg_quality": outcome.jpeg_quality,
        "mask": None if outcome.hole is None else outcome.hole.record(),
        "told_jpeg_quality": None if outcome.told is None else outcome.told.quality,
        "told_jpeg_quality_from": None if outcome.told is None else outcome.told.source,
        "jpeg_slack": outcome.jpeg_slack,
        "stages": [dataclasses.asdict(stage) for stage in outcome.stages],
    }
    print(json.dumps(record), flush=True)
