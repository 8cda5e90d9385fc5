"""Quality against NFE (`i2sb evaluate DEGRADE_DIR --nfe 1,2,5`).

One loaded model restores the degraded pictures of a `degrade` folder at each NFE through the
restore loop (`loop.Restorer`, what `i2sb restore DIR/degraded -o OUT --mask DIR/masks` runs,
with the same seeds), and each NFE's restorations are scored as `evaluate` scores a folder: the
points are what restoring and evaluating at each NFE by hand would give, with one model load.
"""

import dataclasses
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bridge import StepInfo
from ..degrade import PAPER_TASKS, get_operator
from ..errors import UsageError
from ..evaluation.score import Record, Summary
from ..pictures.inputs import InputFile
from .chain import Stage
from .loop import Job, Outcome, Restorer, RestoreSettings


@dataclass(frozen=True)
class NfePoint:
    """The scores of one NFE: evaluate's means and the sampling time per picture."""

    nfe: int
    summary: Summary
    seconds: float | None
    """The median sampling seconds of a picture (a median: the network's slow first call
    falls on one picture of the first NFE); None when none was restored."""

    def to_json(self) -> dict[str, object]:
        seconds = None if self.seconds is None else round(self.seconds, 4)
        return {**self.summary.to_json(), "nfe": self.nfe, "seconds_per_picture": seconds}


def parse_nfes(values: Sequence[str]) -> list[int]:
    """`--nfe 1,2,5 --nfe 10` (commas, spaces or repeats) to sorted distinct NFEs."""
    nfes = set()
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or int(part) < 1:
                raise UsageError(f"--nfe takes positive whole numbers (1,2,5), not {part!r}")
            nfes.add(int(part))
    if not nfes:
        raise UsageError("--nfe needs at least one value, e.g. --nfe 1,2,5")
    return sorted(nfes)


def restore_task(records: Sequence[Record]) -> str:
    """The task `restore` takes for a degrade folder's pictures: the paper task itself, or the
    family of a real-world variant (as the manifest's `restore_task`)."""
    tasks = {record.task for record in records}
    if len(tasks) != 1:
        raise UsageError(f"the folder mixes tasks ({', '.join(sorted(tasks))}); sweep one")
    (task,) = tasks
    return task if task in PAPER_TASKS else get_operator(task).family


def nfe_folder(root: Path, nfe: int) -> Path:
    return root / f"nfe-{nfe}"


def restore_at(
    stage: Stage,
    records: Sequence[Record],
    root: Path,
    nfe: int,
    *,
    seed: int = 0,
    on_step: Callable[[StepInfo], None] | None = None,
) -> Iterator[Outcome]:
    """Restore every record's degraded picture at `nfe` with a prepared stage (prepare.py: the
    model checked against the folder's task and the sampler asked for, as restore checks it)
    into `nfe_folder(root, nfe)`, under its manifest name (where `evaluate` looks), replacing
    what is there; one Outcome each."""
    stage = dataclasses.replace(
        stage,
        sampling=dataclasses.replace(stage.sampling, nfe=nfe),
        upsampled=records[0].upsampled,
    )
    folder = nfe_folder(root, nfe)
    jobs = [Job(InputFile(r.degraded, Path(r.name)), folder / r.name, mask=r.mask) for r in records]
    settings = RestoreSettings(seed=seed, overwrite=True)
    yield from Restorer([stage], settings, on_step=on_step).run(jobs)


def median_seconds(outcomes: Sequence[Outcome]) -> float | None:
    seconds = [o.seconds for o in outcomes if o.status == "restored"]
    return statistics.median(seconds) if seconds else None
