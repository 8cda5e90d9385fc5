"""`i2sb compare`: a grid picture of a degrade folder's pictures beside their restorations."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..evaluation.compare import comparison_grid
from ..pictures.files import atomic_write
from .common import console, reports_errors


def _columns(values: list[str]) -> list[tuple[str, Path]]:
    """LABEL=FOLDER or LABEL=FILE pairs, each path checked, in the order given."""
    columns = []
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise UsageError(f"--column {value!r}: write it LABEL=FOLDER, e.g. nfe10=restored/")
        if not Path(path).exists():
            raise UsageError(f"--column {value}: {path} is neither a folder nor a file")
        columns.append((label, Path(path)))
    return columns


@reports_errors
def compare(
    degrade_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder written by `i2sb degrade -o` (its manifest.jsonl names the pictures).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="The grid picture to write (PNG).", show_default=False),
    ],
    column: Annotated[
        list[str] | None,
        typer.Option(
            help="A column of restorations, LABEL=FOLDER (FOLDER as `i2sb restore -o` wrote "
            "it), or LABEL=FILE for a grid of one picture (e.g. a sample of restore "
            "--samples); repeat for several, in order.",
            show_default=False,
        ),
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these pictures (their names in the manifest); repeat the option for "
            "several. Default: all.",
            show_default=False,
        ),
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option(min=1, help="Show a centred N x N crop of each picture, pixels enlarged."),
    ] = None,
    tile_width: Annotated[int, typer.Option(min=16, help="Width of each tile in pixels.")] = 256,
) -> None:
    """Draw degraded | classical baseline | each --column | original, one row per picture,
    each tile labelled with its PSNR against the original."""
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output {output}: the grid is written as PNG; name it .png")
    grid = comparison_grid(
        degrade_dir, _columns(column or []), names=names, crop=crop, tile_width=tile_width
    )
    atomic_write(output, lambda file: grid.save(file, "PNG"))
    console.print(f"wrote {output} ({grid.width} x {grid.height})", markup=False)
