"""`i2sb restore` before any model is loaded: which found pictures are earlier results, where
the model comes from, whether inpainting can find a hole, and the plan a --dry-run shows."""

import json
from pathlib import Path

from rich.markup import escape

from ..degrade.tasks import family_of
from ..errors import UsageError
from ..models.registry import find_model
from ..pictures.decode import default_max_pixels, may_have_alpha
from ..pictures.files import picture_pixels
from ..pictures.inputs import STDIO, InputFile, leave_out_outputs
from ..restoring.chain import StageSpec, stage_sampling
from ..restoring.loop import OUTPUT_MARK, Job, is_done
from ..restoring.prepare import Located, locate_stages, untrained_task_note
from .common import console

SUFFIX = "_restored"
"""The default --suffix of an output next to its input."""


def without_earlier_results(
    found: list[InputFile], suffix: str, folder: Path | None
) -> list[InputFile]:
    """The pictures found, less the results of earlier runs among them, counted on stderr."""
    sources, left_out = leave_out_outputs(found, suffix=suffix, folder=folder, mark=OUTPUT_MARK)
    if not left_out:
        return sources
    what = (
        f"{len(left_out)} earlier result(s) of i2sb restore (named *{suffix}.*, in the -o "
        "folder, or carrying its metadata)"
    )
    if not sources:
        raise UsageError(
            f"nothing to restore: the pictures found are {what}; name files to restore them again"
        )
    console.print(f"left out {what}; name a file to restore it again", markup=False, soft_wrap=True)
    return sources


def check_before_loading(
    chain: list[StageSpec],
    sources: list[InputFile],
    mask: Path | None,
    masking: dict[str, bool],
    cache_dir: Path | None,
    offline: bool | None,
    dry_run: bool,
) -> list[Located]:
    """Each stage's checkpoint and, when its file tells without loading the network, its
    metadata, checked against the options (`masking`: whether each inpainting option was
    given) and the pictures, so that a mistake is reported before anything loads."""
    located = locate_stages(chain, cache_dir, offline, dry_run=dry_run, masking=masking)
    head = located[0]
    check_hole_possible(head.spec.task or (head.meta.task if head.meta else None), sources, mask)
    return located


def check_hole_possible(task: str | None, sources: list[InputFile], mask: Path | None) -> None:
    """Inpainting without --mask takes the hole from each picture's transparency: when no
    picture can have any (a JPEG never does), say so before loading the model."""
    if task is None or family_of(task) != "inpaint" or mask is not None:
        return
    if any(s.path == STDIO or may_have_alpha(s.path) for s in sources):
        return
    which = (
        f"{sources[0].path} has no transparency"
        if len(sources) == 1
        else f"none of the {len(sources)} pictures has transparency"
    )
    raise UsageError(
        f"inpainting needs a mask: pass --mask FILE|DIR (white = hole); {which} to mark it"
    )


def _describe(where: Located, sampling: dict) -> tuple[str, str]:
    """A stage's model name, and that name with where it comes from and how it would sample
    (`sampling`: the sampler options given), for the dry run."""
    spec, checkpoint, meta = where.spec, where.checkpoint, where.meta
    entry = find_model(spec.model) if checkpoint is None and spec.model else None
    if entry is not None:
        where = f"({entry.family}), not downloaded yet: a run fetches {entry.url}"
        return entry.name, f"{entry.name} {where}"
    if meta is None:
        name = Path(str(checkpoint)).name
        return name, f"{name} from {checkpoint}"
    how = stage_sampling(meta, spec, **sampling).describe()
    if spec.jpeg_only:
        how += ", on pictures saved as JPEG only"
    return meta.name, f"{meta.name} ({meta.task}) from {checkpoint}, {how}"


def report_dry_run(
    located: list[Located],
    sampling: dict,
    jobs: list[Job],
    overwrite: bool,
    samples: int,
    json_lines: bool,
    max_pixels: int | None = None,
) -> None:
    """What a run would do, from the plan alone: no model loaded, nothing written. `located`
    holds each stage's checkpoint and metadata (locate_stages), `sampling` the sampler options
    given (stage_sampling's). A picture whose header gives more pixels than `max_pixels` (None:
    Pillow's bomb guard) would be refused, and is said to be."""
    described = [_describe(where, sampling) for where in located]
    name = ",".join(stage_name for stage_name, _ in described)  # as a run's metadata lists them
    for index, (_, text) in enumerate(described, start=1):
        stage = f"stage {index}: " if len(described) > 1 else ""
        console.print(f"dry run: {stage}{text}", markup=False, soft_wrap=True)
    for where in located:
        meta = where.meta
        note = untrained_task_note(meta, where.spec.task) if meta is not None else None
        if note is not None:
            console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
    limit = max_pixels if max_pixels is not None else default_max_pixels()
    counts = {"planned": 0, "skipped": 0, "refused": 0}
    for job in jobs:
        done = is_done(job.output, overwrite=overwrite, samples=samples)
        pixels = None if done or job.source.path == STDIO else picture_pixels(job.source.path)
        too_large = limit is not None and pixels is not None and pixels > limit
        status = "skipped" if done else "refused" if too_large else "planned"
        counts[status] += 1
        source, target = escape(str(job.source.path)), escape(str(job.output))
        target = "stdout" if job.output == STDIO else target
        mask = f" (mask {escape(str(job.mask))})" if job.mask else ""
        if done:
            console.print(f"[yellow]would skip[/] {source}: {target} exists", soft_wrap=True)
        elif too_large:
            console.print(
                f"[red]would refuse[/] {source}: {pixels:,} pixels, over the limit of "
                f"{limit:,} (--max-pixels)",
                soft_wrap=True,
            )
        else:
            console.print(f"would restore {source}{mask} -> {target}", soft_wrap=True)
        if json_lines:
            record = {"input": str(job.source.path), "output": str(job.output), "status": status}
            print(json.dumps({**record, "mask": job.mask and str(job.mask), "model": name}))
    refused = f", {counts['refused']} to refuse" if counts["refused"] else ""
    console.print(
        f"dry run: {counts['planned']} to restore, {counts['skipped']} to skip{refused}; "
        "no model loaded, nothing written"
    )
