"""What every command shares: the stderr console, the look of --help, and turning library
errors into exit codes."""

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Annotated, Any, ParamSpec, TypeVar, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup

from ..errors import I2SBError


def no_color() -> bool:
    """Whether NO_COLOR (no-color.org) is set to anything but the empty string."""
    return os.environ.get("NO_COLOR", "") != ""


def make_console(**options: Any) -> Console:
    """A rich Console that writes no ANSI style at all under NO_COLOR: rich itself drops only
    the colours and keeps bold, dim and underline; without a colour system it styles nothing."""
    if no_color():
        options["color_system"] = None
    return Console(**options)


# stdout is for data (--json); people read stderr (docs/design.md decision 8). `console` carries
# progress, notes and per-picture lines, which --quiet silences; `errors` is never silenced.
console = make_console(stderr=True, highlight=False)
errors = make_console(stderr=True, highlight=False)

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


# Placeholders for --help. Recent Typer (0.29) prints a parameter's Python type (`<bool>` beside
# every flag, `<list[str]>`, `{inputs}`); these are click's: a flag takes no value, an option
# shows its value's kind, an argument its name in capitals.
_KINDS = {str: "TEXT", int: "INTEGER", float: "FLOAT"}


def _value_kind(annotation: Any, path_type: str) -> str:
    if get_origin(annotation) is list:
        return _value_kind(get_args(annotation)[0], path_type)
    if get_origin(annotation) is tuple:
        return " ".join(_value_kind(a, path_type) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return {"dir": "DIR", "file": "FILE"}.get(path_type, "PATH")
    return _KINDS.get(annotation, "VALUE")


class _Argument(TyperArgument):
    """An argument shown by its placeholder alone, required bare and optional in brackets."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        return self.metavar if self.required else f"[{self.metavar}]"


def _with_placeholders(params: list[Any]) -> list[Any]:
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None:
            continue  # an older Typer, which prints click's placeholders itself
        if isinstance(param, TyperArgument):
            # Typer offers no hook for its argument class; _Argument only changes the display.
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
        elif param.metavar is None:
            kind = _value_kind(descriptor.annotation, descriptor.path_type)
            param.metavar = "" if param.is_flag else kind
    return params


class Command(TyperCommand):
    """Every subcommand's class: click's placeholders in --help and usage lines."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_placeholders(super().get_params(ctx))


class Group(TyperGroup):
    """Every command group's class: click's placeholders in --help and usage lines."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_placeholders(super().get_params(ctx))
