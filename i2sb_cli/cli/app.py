"""The `i2sb` command: one Typer app, one small module per subcommand."""

import signal
from types import FrameType

import typer
from typer import rich_utils

from .. import __version__
from . import benchmark, compare, degrade, export, restore, train
from .common import Command, Group, no_color
from .evaluate import evaluate_command
from .examples import epilog
from .help_topics import help_command
from .models import app as models_app

if no_color():
    # Typer's help and usage errors print through consoles of its own; this is its switch.
    rich_utils.COLOR_SYSTEM = None

app = typer.Typer(
    name="i2sb",
    cls=Group,
    help="Restore pictures with the Image-to-Image Schrödinger Bridge (I2SB).",
    epilog=epilog("i2sb"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"i2sb {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "-V",
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Restore pictures with the Image-to-Image Schrödinger Bridge (I2SB)."""


COMMANDS = {
    "restore": restore.restore,
    "degrade": degrade.degrade,
    "train": train.train_command,
    "export": export.export,
    "benchmark": benchmark.benchmark,
    "evaluate": evaluate_command,
    "compare": compare.compare,
    "help": help_command,
}
for name, command in COMMANDS.items():
    app.command(name, cls=Command, epilog=epilog(name))(command)
app.add_typer(models_app, name="models")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # A SIGTERM (kill, a job scheduler, a container stopping) is a Ctrl-C: partial downloads
    # are kept for resuming and outputs stay whole, where the default would just die.
    signal.signal(signal.SIGTERM, _interrupt)
    app()
