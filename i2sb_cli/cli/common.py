"""What every command shares: the stderr console, the look of --help, and turning library
errors into exit codes."""

import functools
import inspect
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Annotated, Any, ParamSpec, TypeVar, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape
from typer import rich_utils
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
        help="Only errors on stderr: no progress, per-picture lines or notes.",
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


def fit_paragraphs(text: str, width: int) -> str:
    """A command's help with the line breaks that cannot hold at `width` taken out.

    Typer (0.29) keeps every line break of a docstring, so lines wrapped for 90 columns come
    out ragged at 80: each wraps again and leaves a word or two on a line of its own. Where the
    text is wider than `width`, a line joins the next one of its paragraph when it is itself too
    wide, or when its break was only the docstring's wrapping (the next word would not have fit
    within the docstring's widest line); a line that ends early on purpose keeps its break, so
    lists stay lists. Text that fits is left as written.
    """
    text = inspect.cleandoc(text)
    written = max(map(len, text.splitlines()), default=0)
    if written <= width:
        return text
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.split("\n")
        if paragraph.startswith("\b"):  # click's mark for a paragraph kept as written
            paragraphs.append(paragraph)
            continue
        flowed = [lines[0]]
        for before, line in itertools.pairwise(lines):
            wrapped = len(before) + 1 + len(line.split(" ", 1)[0]) > written
            if len(before) > width or wrapped:
                flowed[-1] = f"{flowed[-1]} {line.strip()}"
            else:
                flowed.append(line)
        paragraphs.append("\n".join(flowed))
    return "\n\n".join(paragraphs)


def _help_width() -> int:
    """The width Typer gives a command's help text: its console's, less a column each side."""
    return Console(width=rich_utils.MAX_WIDTH).width - 2


class Command(TyperCommand):
    """Every subcommand's class: click's placeholders in --help and usage lines, and the help
    text flowed where its line breaks do not fit the terminal (`fit_paragraphs`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_placeholders(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        written = self.help
        if written:
            self.help = fit_paragraphs(written, _help_width())
        try:
            super().format_help(ctx, formatter)
        finally:
            self.help = written


class Group(TyperGroup):
    """Every command group's class: click's placeholders in --help and usage lines."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_placeholders(super().get_params(ctx))
