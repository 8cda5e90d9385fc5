"""What every command shares: the stderr console and turning library errors into exit codes."""

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import I2SBError

# stdout is for data (--json); people read stderr (DESIGN.md decision 8). `console` carries
# progress, notes and per-picture lines, which --quiet silences; `errors` is never silenced.
console = Console(stderr=True, highlight=False)
errors = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")

# The exit codes the commands document (README "Scripting with i2sb").
EXIT_OK = 0
EXIT_FAILED = 1  # some pictures failed, or the model could not be loaded
EXIT_USAGE = 2  # as Typer's own usage errors: a bad option or argument, nothing was done
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)

# Where models and ONNX exports live, and whether a missing model may be downloaded: every
# command that loads a model by name takes these two.
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Cache folder (default: $I2SB_CACHE_DIR, else the user cache folder).",
        show_default=False,
    ),
]
Offline = Annotated[
    bool | None,
    typer.Option(
        "--offline/--online",
        help="Make no network call (default: on when I2SB_OFFLINE=1).",
        show_default=False,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        help="For scripts: no progress, no per-picture lines, no notes; only errors on stderr "
        "(and with --json the JSON lines on stdout).",
    ),
]


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print a one-line error on stderr and return the Exit to raise."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Map the library's errors to a one-line message and the error's exit code; a command
    with a `quiet` option (`Quiet`) runs with `console` silenced when it is given."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        saved = console.quiet
        console.quiet = saved or bool(kwargs.get("quiet"))
        try:
            return command(*args, **kwargs)
        except I2SBError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            # Outputs are written atomically: whatever exists now is complete.
            console.print("interrupted; every output written so far is complete", style="yellow")
            sys.exit(EXIT_INTERRUPTED)
        finally:
            console.quiet = saved

    return wrapper
