"""The options of `i2sb restore`, one type alias each: its type, flags, help and checks."""

from pathlib import Path
from typing import Annotated

import typer

from ..bridge import COPIES
from ..degrade.tasks import TASK_CHOICES
from ..errors import UsageError
from ..pictures.files import FORMATS, default_max_pixels
from ..pictures.resize import MAX_OUTSCALE, check_outscale
from ..restoring.chain import MAX_NFE

_LIMIT = default_max_pixels()
_DEFAULT_LIMIT = f"{_LIMIT:,}" if _LIMIT else "none"


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
        help="Pictures, folders or globs to restore; - reads one from stdin.",
        show_default=False,
    ),
]
Output = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        help="Output folder (mirrors sub-folders), a file for one input, or a name template "
        "with the fields {stem}, {ext} (the output's extension), {name} and {parent} (the "
        "input's folder under the one given), e.g. 'out/{parent}/{stem}_x4.{ext}'. "
        "Default: next to each input, with the --suffix.",
    ),
]
Suffix = Annotated[
    str | None,
    typer.Option(
        help="Added to the name of each output: next to its input (default _restored) or in "
        "an -o folder (default none).",
        show_default=False,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List what would be done (each input -> output, the outputs that exist and are "
        "skipped, the model and its file) without loading the model or writing anything.",
    ),
]
Background = Annotated[
    str | None,
    typer.Option(
        help="Lay transparent pictures over this colour (white, #808080): the result is "
        "opaque, so JPEG and BMP can hold it. Default: the transparency is kept (PNG, WebP, "
        "TIFF), and a picture that has some fails for JPEG or BMP.",
        show_default=False,
    ),
]
Task = Annotated[
    str | None,
    typer.Option(
        help=f"What to restore: {', '.join(TASK_CHOICES)}. A family picks its bundled model "
        "(deblur: a blind one, for any blur), a paper task name the model made for its operator. "
        "Several, separated by commas, run one after the other on each picture: "
        "--task jpeg,sr4x cleans a small JPEG, then enlarges it (inpaint first only).",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        help="A model name or checkpoint file (default: the task's bundled model); for a "
        "chain, one per stage (--model ,my-sr.safetensors: an empty item is the bundled one)."
    ),
]
Nfe = Annotated[
    str | None,
    typer.Option(
        help=f"Network calls per picture, 1 to {MAX_NFE} (default: the model's); for a chain, "
        "one for every stage or one per stage (--nfe 10,2).",
        show_default=False,
    ),
]
Outscale = Annotated[
    float | None,
    typer.Option(
        help="Resize the result to this factor of the input's size (as Real-ESRGAN's "
        "option): --task sr4x --outscale 2 gives a 2x picture, by area averaging down from "
        f"the model's 4x (Lanczos to enlarge); up to {MAX_OUTSCALE:g}. Default: the model's "
        "own scale (4 for sr4x, 1 for the others).",
        callback=_check_outscale,
        show_default=False,
    ),
]
Seed = Annotated[
    int, typer.Option(help="Seed; each picture's noise comes from (seed, its relative path).")
]
OtOde = Annotated[
    bool | None,
    typer.Option(
        "--ot-ode/--stochastic",
        help="Deterministic OT-ODE or stochastic sampler (default: the model's).",
        show_default=False,
    ),
]
Detail = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="How much of the sampler's generated detail to keep: 1 the bridge's sample, "
        "0 the network's one-step estimate (smoother, closer to the original on average), "
        "between them a mix; costs nothing (default: the model's).",
    ),
]
Ensemble = Annotated[
    int | None,
    typer.Option(
        help="Average each network call over the picture and its mirror images: 1 (none), "
        "2 (left-right) or 4 (and up-down); sharper estimates, closer to the original on "
        "average, at 2 or 4 times the time (default: the model's).",
        callback=_check_ensemble,
        show_default=False,
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Backend = Annotated[
    str,
    typer.Option(
        help="auto, torch or onnxruntime. auto: a checkpoint runs in ONNX Runtime on the "
        "CPU in fp32 when it is installed, gives the same pictures and is faster for that "
        "network (checked once; the export is cached), else in torch; an exported file by "
        "its suffix. --backend torch is the exact reference."
    ),
]
Precision = Annotated[
    str | None,
    typer.Option(help="fp32, bf16 or fp16 (fp16 on CUDA only; default: fp32 or the export's)."),
]
Compile = Annotated[
    bool, typer.Option("--compile", help="torch.compile the network (torch backend).")
]
ClipDenoise = Annotated[
    bool,
    typer.Option(
        "--clip-denoise",
        help="Clamp the network's estimate of the clean picture to [-1, 1] at every step "
        "(off, as in the official sample.py).",
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load a torch.export .pt2 file, which torch unpickles and which can therefore "
        "run code: only for files you made or trust (refused otherwise).",
    ),
]
BatchSize = Annotated[int, typer.Option(min=1, help="Pictures of the same size sampled together.")]
OutputFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Output format: png, jpg, webp, tif or bmp (default: each input's own; PNG on "
        "stdout). Pictures with transparency need --background for jpg and bmp.",
        callback=_check_format,
        show_default=False,
    ),
]
Quality = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=100,
        help="JPEG and WebP quality (default: JPEG 95; WebP as the input was: lossy at 90, "
        "or lossless).",
        show_default=False,
    ),
]
Mask = Annotated[
    Path | None,
    typer.Option(
        help="Inpainting mask FILE or DIR (white = hole); one of another size than its picture "
        "is resized to it (nearest neighbour), with a note. Default: the picture's alpha channel."
    ),
]
MaskThreshold = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Grey level, as a fraction of white, from which a mask pixel is a hole "
        "(for alpha: below which it is). Default 0.5.",
        show_default=False,
    ),
]
InvertMask = Annotated[
    bool, typer.Option("--invert-mask", help="Swap hole and kept pixels: black = hole.")
]
MaskDilate = Annotated[
    int,
    typer.Option(
        min=0,
        help="Grow the hole by N pixels (a disc) before restoring it, to cover the halo "
        "around an object.",
    ),
]
MaskFeather = Annotated[
    int,
    typer.Option(
        min=0,
        help="Fade the restored hole into the original picture over its first N pixels "
        "from the border (a soft seam; pixels outside the hole stay untouched). Keep it at "
        "most --mask-dilate to replace every pixel you marked.",
    ),
]
Tile = Annotated[
    int | None,
    typer.Option(
        min=16,
        help="Tile size for large pictures (default: 512, or the "
        "model's training size for models with attention).",
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option(
        min=0, help="Overlap between tiles, blended smoothly (default: 64, at most tile/4)."
    ),
]
TileBatch = Annotated[
    int,
    typer.Option(
        min=1,
        help="Tiles of a large picture per network call: faster on a GPU that one tile "
        "leaves idle, more memory (measure with i2sb benchmark --tile-batch).",
    ),
]
Recursive = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into sub-folders.")]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite/--skip-existing",
        help="Replace outputs that exist, or skip them (so that a rerun continues).",
    ),
]
Upsampled = Annotated[
    bool,
    typer.Option(
        help="sr4x: the input is already 4x nearest-upsampled (the paper's x1), not small."
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Refuse pictures with more pixels than this, a guard against decompression "
        f"bombs (default: {_DEFAULT_LIMIT}).",
        show_default=False,
    ),
]
SaveTrajectory = Annotated[
    Path | None,
    typer.Option(
        "--save-trajectory",
        help="Also write, into this folder, each picture's path from the degraded picture to "
        "the restoration: <name>_trajectory.png (the state x_n and the network's estimate "
        "x0_hat at up to 7 steps) and <name>_trajectory.gif (x_n step by step). No extra "
        "network call.",
        show_default=False,
    ),
]
Samples = Annotated[
    int,
    typer.Option(
        min=1,
        help="Restorations per picture, from seeds derived from (seed, path, k); above 1 they "
        "are written as <name>_s0 ... <name>_s{K-1} with <name>_spread.png, a heat map of "
        "where they differ (standard deviation). Sample 0 is the single restoration of the "
        "same seed. The stochastic sampler only; a picture's samples run as one batch.",
    ),
]
JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON object per picture on stdout: input, output, status "
        "(restored, skipped, failed), error, seed, seconds, model, model_sha256, samples, "
        "spread_mean, stages (each stage's task, model, model_sha256, nfe and seed).",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        metavar="I/N",
        help="Restore share I of N (0 <= I < N) of the inputs, balanced by pixels: N processes "
        "that know nothing of each other (a Slurm job array, xargs -P, GNU parallel) cover "
        "the list exactly once, each picture as a single run would restore it. Under torchrun "
        "(one process per GPU), the processes split share I further; without --shard they "
        "split the whole list.",
        show_default=False,
    ),
]
