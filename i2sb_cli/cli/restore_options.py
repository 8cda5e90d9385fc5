"""The options of `i2sb restore`, one type alias each: its type, flags, help panel, help and
checks. Each help is a sentence or two that fits 80 columns; the longer story of an option is
in `i2sb help TOPIC` (help_topics.py) and the README's "Restoring pictures"."""

from pathlib import Path
from typing import Annotated

import typer

from ..bridge import COPIES
from ..errors import UsageError
from ..pictures.files import FORMATS, default_max_pixels
from ..pictures.resize import MAX_OUTSCALE, check_outscale
from ..restoring.holes import MASK_THRESHOLD, SOFT_MASK_GROWTH

_LIMIT = default_max_pixels()
_DEFAULT_LIMIT = f"{_LIMIT:,}" if _LIMIT else "none"

# Panels of restore --help. Options without one (-o, --task, --model, the shared --cache-dir,
# --offline and --quiet, and those for scripts) stay in Typer's first panel, Options. A panel's
# columns are as wide as its widest flag and value: a --flag/--no-flag pair or a range beside a
# long name leaves the help text a narrow column at 80, so these are grouped with that in mind.
_SAMPLING = "Sampling"
_BRIDGE = "Seeing the bridge"
_RESULT = "The result"
_NETWORK = "Running the network"
_LARGE = "Large pictures"
_MASKS = "Inpainting masks"
_INPUTS = "Inputs"


def _check_outscale(value: float | None) -> float | None:
    try:
        return None if value is None else check_outscale(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None


def _check_ensemble(value: int | None) -> int | None:
    if value is not None and value not in COPIES:
        raise typer.BadParameter(
            f"{value} is not one of {', '.join(map(str, COPIES))} (mirror images per network call)"
        )
    return value


def _check_format(value: str | None) -> str | None:
    if value is None:
        return None
    ext = value.lower().removeprefix(".")
    if f".{ext}" not in FORMATS:
        choices = ", ".join(sorted({e.removeprefix(".") for e in FORMATS}))
        raise typer.BadParameter(f"{value!r} is not a format; choose one of: {choices}")
    return ext


Inputs = Annotated[
    list[str],
    typer.Argument(
        help="Pictures, folders or globs; - is stdin.",
        show_default=False,
    ),
]
Output = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        help="Folder, file, or name template of {stem}, {ext}, {name} and {parent}.",
    ),
]
Suffix = Annotated[
    str | None,
    typer.Option(
        help="Added to output names (default: _restored; none in an -o folder).",
        show_default=False,
        rich_help_panel=_RESULT,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Show the plan; load or write nothing."),
]
Background = Annotated[
    str | None,
    typer.Option(
        metavar="COLOUR",
        help="Fill transparency with this colour (white, #808080); JPEG needs one.",
        show_default=False,
        rich_help_panel=_RESULT,
    ),
]
Task = Annotated[
    str | None,
    typer.Option(
        metavar="TASK",
        help="sr4x, deblur, jpeg, inpaint, a paper task or a chain (i2sb help tasks).",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        metavar="MODEL",
        help="A model name or file (default: the task's); a chain takes one per stage.",
    ),
]
Nfe = Annotated[
    str | None,
    typer.Option(
        metavar="N",
        help="Network calls per picture, or per stage: 10,2 (default: the model's).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
JpegQuality = Annotated[
    int | None,
    typer.Option(
        metavar="1-100",
        help="Told to a jpeg model (default: the file's).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
CleanJpeg = Annotated[
    bool,
    typer.Option(
        "--clean-jpeg/--no-clean-jpeg",
        help="--task sr4x: clean JPEG artefacts first (default: on).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
JpegBins = Annotated[
    bool,
    typer.Option(
        "--jpeg-bins/--no-jpeg-bins",
        help="Keep a jpeg result near its file's DCT (default: on).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
Outscale = Annotated[
    float | None,
    typer.Option(
        help=f"Resize the result to this scale, up to {MAX_OUTSCALE:g} (default: the model's).",
        callback=_check_outscale,
        show_default=False,
        rich_help_panel=_RESULT,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        help="Seeds each picture's noise, with its relative path (default: 0).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
OtOde = Annotated[
    bool | None,
    typer.Option(
        "--ot-ode/--stochastic",
        help="Deterministic OT-ODE or stochastic sampler (default: the model's).",
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
Detail = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of generated detail kept; 0 is smoother (default: the model's).",
        rich_help_panel=_RESULT,
    ),
]
Ensemble = Annotated[
    int | None,
    typer.Option(
        metavar="1|2|4",
        help="Mirror images per call: sharper, slower (default: the model's).",
        callback=_check_ensemble,
        show_default=False,
        rich_help_panel=_SAMPLING,
    ),
]
Device = Annotated[
    str,
    typer.Option(
        help="auto (default), cpu, cuda or cuda:N.",
        show_default=False,
        rich_help_panel=_NETWORK,
    ),
]
Backend = Annotated[
    str,
    typer.Option(
        help="auto (default), torch or onnxruntime: see i2sb help speed.",
        show_default=False,
        rich_help_panel=_NETWORK,
    ),
]
Precision = Annotated[
    str | None,
    typer.Option(
        help="fp32, bf16 or fp16 (fp16 on CUDA only; default: fp32 or the export's).",
        rich_help_panel=_NETWORK,
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile", help="torch.compile the network (torch backend).", rich_help_panel=_NETWORK
    ),
]
ClipDenoise = Annotated[
    bool,
    typer.Option(
        "--clip-denoise",
        help="Clamp the network's clean estimate to [-1, 1] at every step.",
        rich_help_panel=_NETWORK,
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load a .pt or .pt2 export: a program that can run any code.",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        min=1,
        help="Pictures of the same size sampled together (default: 1).",
        show_default=False,
        rich_help_panel=_NETWORK,
    ),
]
OutputFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="png, jpg, webp, tif or bmp (default: the input's own).",
        callback=_check_format,
        show_default=False,
        rich_help_panel=_RESULT,
    ),
]
Quality = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=100,
        help="JPEG and WebP quality (default: JPEG 95, WebP as its input).",
        show_default=False,
        rich_help_panel=_RESULT,
    ),
]
Mask = Annotated[
    Path | None,
    typer.Option(
        help="A mask or a folder of masks, white = hole (default: alpha).",
        rich_help_panel=_MASKS,
    ),
]
MaskThreshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help=f"White (or transparency) level of a hole (default: {MASK_THRESHOLD:g}).",
        show_default=False,
        rich_help_panel=_MASKS,
    ),
]
InvertMask = Annotated[
    bool,
    typer.Option("--invert-mask", help="Black marks the hole.", rich_help_panel=_MASKS),
]
MaskDilate = Annotated[
    int | None,
    typer.Option(
        min=0,
        metavar="N",
        help=f"Grow the hole N px (default: {SOFT_MASK_GROWTH} for soft edges, else 0).",
        show_default=False,
        rich_help_panel=_MASKS,
    ),
]
MaskResize = Annotated[
    bool,
    typer.Option(
        "--mask-resize",
        help="Resize masks of another shape.",
        rich_help_panel=_MASKS,
    ),
]
MaskFeather = Annotated[
    int,
    typer.Option(
        min=0,
        metavar="N",
        help="Fade the restored hole in over N pixels (default: 0).",
        show_default=False,
        rich_help_panel=_MASKS,
    ),
]
Tile = Annotated[
    int | None,
    typer.Option(
        min=16,
        help="Tile size (default: 512, or the training size of attention models).",
        rich_help_panel=_LARGE,
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Overlap of tiles, blended (default: 64, at most tile/4).",
        rich_help_panel=_LARGE,
    ),
]
TileBatch = Annotated[
    int,
    typer.Option(
        min=1,
        help="Tiles per network call: faster on a GPU, more memory (default: 1).",
        show_default=False,
        rich_help_panel=_LARGE,
    ),
]
Recursive = Annotated[
    bool,
    typer.Option("-r", "--recursive", help="Descend into sub-folders.", rich_help_panel=_INPUTS),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite/--skip-existing",
        help="Replace outputs that exist, or skip them (the default).",
        show_default=False,
        rich_help_panel=_INPUTS,
    ),
]
Upsampled = Annotated[
    bool,
    typer.Option(
        help="sr4x: the input is already 4x nearest-upsampled (the paper's x1).",
        show_default=False,
        rich_help_panel=_INPUTS,
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"Refuse pictures with more pixels (default: {_DEFAULT_LIMIT}).",
        show_default=False,
        rich_help_panel=_LARGE,
    ),
]
SaveTrajectory = Annotated[
    Path | None,
    typer.Option(
        "--save-trajectory",
        metavar="DIR",
        help="Also write each picture's sampling path into DIR, as a PNG and a GIF.",
        show_default=False,
        rich_help_panel=_BRIDGE,
    ),
]
Samples = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="K",
        help="Restorations per picture, and a map of where they differ (default: 1).",
        show_default=False,
        rich_help_panel=_BRIDGE,
    ),
]
JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON object per picture on stdout (i2sb help outputs).",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        metavar="I/N",
        help="Restore share I of N of the inputs.",
        show_default=False,
    ),
]
