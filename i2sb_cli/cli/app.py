"""The `i2sb` command: one Typer app, one small module per subcommand."""

import signal
from types import FrameType

import typer

from .. import __version__
from . import benchmark, compare, degrade, export, restore, train
from .evaluate import evaluate_command
from .models import app as models_app

app = typer.Typer(
    name="i2sb",
    help="Restore pictures with the Image-to-Image Schrödinger Bridge (I2SB).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"i2sb {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Restore pictures with the Image-to-Image Schrödinger Bridge (I2SB)."""


EXIT_CODES = (
    "Exit codes: 0 all pictures restored or skipped; 1 some pictures failed (or the model could "
    "not be loaded); 2 usage error; 130 interrupted."
)

app.command("restore", epilog=EXIT_CODES)(restore.restore)
app.command("degrade")(degrade.degrade)
app.command("train")(train.train_command)
app.command("export")(export.export)
app.command("benchmark")(benchmark.benchmark)
app.command("evaluate")(evaluate_command)
app.command("compare")(compare.compare)
app.add_typer(models_app, name="models")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # A SIGTERM (kill, a job scheduler, a container stopping) is a Ctrl-C: partial downloads
    # are kept for resuming and outputs stay whole, where the default would just die.
    signal.signal(signal.SIGTERM, _interrupt)
    app()
