"""The command line: `app` builds the Typer app from one small module per command; option types
shared between commands live in `common`. Only strings to objects and results to text.

`main` is the `i2sb` program. It answers `i2sb -V` before importing the app, which imports
torch (seconds on a cold or loaded machine) for a question that needs none of it."""

import sys

from .. import __version__


def main() -> None:
    if sys.argv[1:] in (["-V"], ["--version"]):
        print(f"i2sb {__version__}")
        return
    from .app import main as run

    run()
