"""Deterministic shares of an input list, for many processes restoring one folder.

A Slurm job array, `xargs -P` or GNU parallel runs N independent processes with `--shard I/N`;
under torchrun each rank takes share RANK of WORLD_SIZE. Every process computes the same split
from the same sorted input list, with no communication, and together they cover the list
exactly once. Shares are balanced by pixels when the sizes are known (pictures of mixed sizes),
else by count. A picture's noise depends only on (seed, its relative path), so which process
restores it does not change the result.
"""

import heapq
from collections.abc import Sequence

from ..errors import UsageError
from .files import picture_pixels
from .inputs import InputFile


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N -> (I, N); a UsageError says what is wrong."""
    index_text, slash, count_text = text.partition("/")
    try:
        if not slash:
            raise ValueError
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageError(f"--shard {text!r}: write it I/N, e.g. 0/4 (shares 0..N-1 of N)") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: I must be in 0..N-1 and N at least 1")
    return index, count


def share(
    sources: Sequence[InputFile], index: int, count: int, *, pixels: Sequence[int] | None = None
) -> list[InputFile]:
    """The sources of share `index` of `count`, in their original order.

    Without `pixels`, every count-th picture from `index` on (by sorted relative path). With
    `pixels` (one per source), the largest pictures are dealt first, each to the share with the
    fewest pixels so far (ties: the lower share), which keeps shares within one picture of equal.
    """
    if pixels is not None and len(pixels) != len(sources):
        raise ValueError(f"{len(pixels)} sizes for {len(sources)} pictures")
    order = sorted(range(len(sources)), key=lambda i: sources[i].relative.as_posix())
    if pixels is None:
        mine = set(order[index::count])
    else:
        by_size = sorted(order, key=lambda i: -pixels[i])
        loads = [(0, s) for s in range(count)]
        mine = set()
        for i in by_size:
            load, shard = heapq.heappop(loads)
            if shard == index:
                mine.add(i)
            heapq.heappush(loads, (load + pixels[i], shard))
    return [source for i, source in enumerate(sources) if i in mine]


def header_pixels(sources: Sequence[InputFile]) -> list[int]:
    """Each picture's width x height from its file header (no pixel is decoded): what `share`
    balances. A picture whose header cannot be read counts 0; it fails later in the process
    that draws it, with the reader's message."""
    return [picture_pixels(source.path) or 0 for source in sources]
