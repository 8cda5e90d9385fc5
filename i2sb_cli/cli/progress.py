"""Progress of a command that works through pictures, drawn on stderr.

People want to see pictures done of the total and the time left. Pictures differ in size, and
so in cost: the time left is the work left (a picture's pixels, times whatever multiplies every
picture's cost alike) at a smoothed rate of seconds per unit of work. `Eta` is that arithmetic
and `Calls` counts the network calls of the pictures being sampled; both are pure, and `Eta`
reads a clock passed in, so that tests drive it with a fake one. `PictureProgress` draws them
with rich: a bar of pictures with the time left, and a second bar of network calls shown only
while a picture runs in tiles (more than one call a step), which is when one picture takes long.
The bars are off when stderr is not a terminal (a log would get only their last frame) and under
--quiet; rich drops their colours when NO_COLOR is set.
"""

import math
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.text import Text
from torch import Tensor

from ..bridge import Denoise


class Eta:
    """The seconds left of a run, from the work left and a smoothed seconds per unit of work.

    The rate is seconds spent over work finished, both sums decaying by `memory` at each
    picture, so that recent pictures count most: a slow first picture (a network's first call)
    or a machine that gets busier moves the estimate over a few pictures instead of making it
    jump. Pictures sampled together finish together, the first carrying the batch's time and
    the others none: one that finishes with no time of its own joins the previous one's
    stretch without a decay, so that batches give the rate of the same pictures one by one.
    """

    def __init__(
        self, total: float, *, clock: Callable[[], float] = time.monotonic, memory: float = 0.7
    ) -> None:
        if not 0 <= memory < 1:
            raise ValueError(f"memory must be in [0, 1), not {memory}")
        self.left = float(total)
        """Work not finished yet."""
        self._clock = clock
        self._memory = memory
        self._mark = clock()
        self._seconds = 0.0
        self._work = 0.0

    @property
    def rate(self) -> float | None:
        """Smoothed seconds per unit of work; None before anything was finished."""
        return self._seconds / self._work if self._work > 0 else None

    def done(self, work: float) -> None:
        """`work` was finished now; the time since the previous event was spent on it."""
        now = self._clock()
        spent, rate = now - self._mark, self.rate
        if rate is None:
            decay = 0.0
        elif spent < 0.01 * rate * work:  # finished with the previous one: the same batch
            decay = 1.0
        else:
            decay = self._memory
        self._seconds = decay * self._seconds + spent
        self._work = decay * self._work + work
        self._mark = now
        self.left = max(0.0, self.left - work)

    def skip(self, work: float) -> None:
        """`work` needs no doing (a skipped or failed picture): it leaves the work left, and the
        time it took leaves the rate."""
        self._mark = self._clock()
        self.left = max(0.0, self.left - work)

    def seconds_left(self) -> float | None:
        """The time left, counting down while a picture is under way; None while unknown."""
        if self.left == 0:
            return 0.0
        rate = self.rate
        if rate is None:
            return None
        return max(0.0, self.left * rate - (self._clock() - self._mark))


class Calls:
    """The network calls of the batch being sampled: how many so far, and how many in all once
    its first step has shown how many calls a step takes (one, or its tiles)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new batch begins."""
        self.made = 0
        self.per_step: int | None = None
        self.steps = 0

    def call(self) -> None:
        self.made += 1

    def step(self, index: int, steps: int) -> None:
        """Step `index` of `steps` is done (1 after the first)."""
        if self.per_step is None:
            self.per_step, self.steps = self.made // index, steps

    @property
    def total(self) -> int | None:
        return None if self.per_step is None else self.per_step * self.steps

    @property
    def tiled(self) -> bool:
        """Whether a step takes several calls: known from the second call of the first step."""
        return self.per_step > 1 if self.per_step is not None else self.made > 1


def works(pixels: Sequence[int | None]) -> list[float]:
    """Each picture's work from its pixel count; an unknown one (a file whose header could not
    be read, which will fail soon) counts as the mean of the known ones."""
    known = [p for p in pixels if p is not None]
    mean = sum(known) / len(known) if known else 1.0
    return [float(mean if p is None else p) for p in pixels]


def format_seconds(seconds: float | None) -> str:
    """`1:02:03`, or `-:--:--` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    whole = math.ceil(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class _TimeLeft(ProgressColumn):
    """The Eta of the task, read at each refresh, so that it counts down between pictures."""

    def render(self, task: Task) -> Text:
        eta: Eta | None = task.fields.get("eta")
        if eta is None:
            return Text("")
        return Text(f"{format_seconds(eta.seconds_left())} left", style="progress.remaining")


class PictureProgress:
    """Pictures done of `count`, the time left of `total` work, and the network calls of a
    picture that runs in tiles. Use as a context manager."""

    def __init__(
        self,
        console: Console,
        label: str,
        count: int,
        total: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        disable: bool = False,
    ) -> None:
        self.eta = Eta(total, clock=clock)
        self.calls = Calls()
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _TimeLeft(),
            console=console,
            transient=True,
            # JSON lines and pictures on stdout must reach stdout, not the bar's console.
            redirect_stdout=False,
            disable=disable or console.quiet or not console.is_terminal,
            refresh_per_second=4,
        )
        self._pictures = self._bars.add_task(label, total=count, eta=self.eta)
        self._calls = self._bars.add_task("  network calls", total=None, visible=False)

    def __enter__(self) -> "PictureProgress":
        self._bars.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bars.__exit__(kind, error, trace)

    def __rich__(self) -> RenderableType:
        return self._bars.get_renderable()

    def finished(self, work: float, *, timed: bool = True) -> None:
        """A picture is done: `timed` when it was sampled, not skipped or failed early."""
        if timed:
            self.eta.done(work)
        else:
            self.eta.skip(work)
        self._bars.advance(self._pictures)
        self.calls.reset()
        self._bars.update(self._calls, completed=0, total=None, visible=False)

    def counting(self, denoise: Denoise) -> Denoise:
        """`denoise`, counting its calls into the second bar."""

        def counted(x_t: Tensor, n: int, cond: Tensor | None) -> Tensor:
            x0_hat = denoise(x_t, n, cond)
            self.calls.call()
            self._show_calls()
            return x0_hat

        return counted

    def step(self, index: int, steps: int) -> None:
        """The sampler finished step `index` of `steps` of the current batch."""
        self.calls.step(index, steps)
        self._show_calls()

    def _show_calls(self) -> None:
        calls = self.calls
        self._bars.update(self._calls, completed=calls.made, total=calls.total, visible=calls.tiled)
