"""One list of pictures restored by many processes: this process's share, and everyone's outcomes.

Two ways to split, which compose. `--shard I/N` serves N processes that know nothing of each
other (a Slurm job array, `xargs -P`, GNU parallel); the ranks of a torchrun job split further
whatever share their job has. Every process plans the same list, reads the same picture
headers and computes the same shares (pictures/shards.py), so no process tells another what to
do; and a picture restores the same in any process, its noise depending only on (seed, its
relative path). Under torchrun the processes meet twice: at the start, where the main one loads
the model first (a download or an ONNX export is made once, then found by the others), and at
the end, where everyone's outcomes are gathered for the main one to report them all.

The group is gloo even between GPUs: its only messages are a few Python objects, and NCCL
would abort a process that waits for a slower one longer than its watchdog allows.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..errors import UsageError
from ..pictures.inputs import STDIO, InputFile
from ..pictures.shards import header_pixels, share
from ..runtime import cluster as group
from ..runtime.cluster import Cluster
from .loop import Outcome

_WAIT = timedelta(hours=24)
"""How long a process waits at a meeting: for the main one's download or export, or for the
slowest share. A process that dies is noticed at once, as its connections close; this bounds
the wait for one that hangs."""


@dataclass(frozen=True)
class Split:
    """Which of the pictures this process restores."""

    total: int
    """Pictures in the whole list."""
    shard: tuple[int, int] | None
    """--shard (I, N), or None for the whole list."""
    in_shard: int
    """Pictures in this shard (the whole list without --shard), over all its processes."""
    mine: list[int]
    """The places in the list of this process's pictures, in list order."""
    processes: int
    """The processes that split the shard (torchrun's world size)."""


def check_splittable(
    shard: tuple[int, int] | None, sources: list[InputFile], outputs: list[Path]
) -> None:
    """Refuse to split what is one picture in and out of a pipe: stdin, stdout."""
    if (shard or (0, 1))[1] * group.launched_world_size() == 1:
        return
    how = "--shard" if shard else "torchrun"
    if any(source.path == STDIO for source in sources):
        raise UsageError(f"{how} splits a list of files; - (stdin) is one picture: give files")
    if STDIO in outputs:
        raise UsageError(
            f"{how} writes several files, which -o - (stdout) cannot take: give -o DIR"
        )


@contextmanager
def joined(device_spec: str) -> Iterator[Cluster]:
    """This process's place in its torchrun job (alone outside torchrun), for the block."""
    cluster = group.join(device_spec, backend="gloo", timeout=_WAIT)
    try:
        yield cluster
    finally:
        group.leave(cluster)


def device_for(device_spec: str, cluster: Cluster) -> str:
    """The device this process restores on: under torchrun, `auto` and `cuda` mean its own GPU."""
    return group.rank_device(device_spec, cluster.local_rank) if cluster.enabled else device_spec


def plan_split(sources: list[InputFile], shard: tuple[int, int] | None, cluster: Cluster) -> Split:
    """This process's share: share I of N of the list (all of it without --shard), then share
    RANK of WORLD_SIZE of that; both balanced by pixels."""
    places = list(range(len(sources)))
    if shard is None and not cluster.enabled:
        return Split(len(sources), None, len(sources), places, 1)
    pixels = header_pixels(sources)
    if shard is not None:
        places = _share(places, sources, pixels, *shard)
    mine = _share(places, sources, pixels, cluster.rank, cluster.world_size)
    return Split(len(sources), shard, len(places), mine, cluster.world_size)


def _share(
    places: list[int], sources: list[InputFile], pixels: list[int], index: int, count: int
) -> list[int]:
    """Share `index` of `count` of the pictures at `places`, as places."""
    at = {sources[i]: i for i in places}
    picked = share([sources[i] for i in places], index, count, pixels=[pixels[i] for i in places])
    return [at[source] for source in picked]


def gather(cluster: Cluster, outcomes: list[Outcome], sources: list[InputFile]) -> list[Outcome]:
    """Every process's outcomes, in the order of the list, in every process."""
    if not cluster.enabled:
        return outcomes
    place = {source.path: i for i, source in enumerate(sources)}
    everyone = [outcome for part in group.all_gather(cluster, outcomes) for outcome in part]
    return sorted(everyone, key=lambda outcome: place[outcome.source])
