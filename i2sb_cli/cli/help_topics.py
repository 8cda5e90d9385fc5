"""`i2sb help TOPIC`: the longer story behind restore's options, which --help keeps to a line or
two so that it reads at 80 columns. The README's "Restoring pictures" and "Scripting with i2sb"
say the same at more length.

A topic's text is paragraphs separated by blank lines; a paragraph's lines are joined and
wrapped to the terminal, except lines starting with two spaces, which are items of a list (one
item a line, its continuation indented under it).
"""

import shutil
import textwrap
from typing import Annotated

import typer

from ..restoring.chain import MAX_NFE, MAX_STAGES
from ..restoring.holes import MASK_THRESHOLD, SOFT_MASK_GROWTH
from ..restoring.jpeg_bins import (
    HIGH_QUALITY,
    LOW_QUALITY,
    SLACK_AT_HIGH_QUALITY,
    SLACK_AT_LOW_QUALITY,
)

_TASKS = f"""\
--task names what to restore, and so which model runs.

A family picks that family's bundled model; --model NAME|FILE runs any other one:
{{families}}

The deblur family's model is blind: it takes any blur, no kernel known, from the blurred picture
itself.

A paper task name also says exactly which degradation the input went through. The bundled
model in brackets runs it, with a note where that model was not trained on the task:
{{paper_tasks}}

Chains: --task jpeg,sr4x runs each picture through the stages in order, each taking the
previous one's result (a small web JPEG: clean it, then enlarge it). --model A,B gives each
stage its own model (an empty item keeps a stage's bundled model: --model ,my-sr.safetensors),
and --nfe 10,2 its own number of network calls; --ot-ode, --detail, --ensemble and --tile apply
to every stage. Inpainting can only come first, and a chain has at most {MAX_STAGES} stages.

sr4x takes the small picture you have and returns it 4 times larger; --upsampled takes one
already enlarged the paper's way (nearest neighbour, x4). A picture saved as JPEG (or showing a
JPEG's 8x8 blocks) is cleaned by the jpeg family's model first, as --task jpeg,sr4x would;
--no-clean-jpeg enlarges it as it is.

A jpeg model alone on a JPEG file keeps its result near the file's own DCT coefficients:
each within {SLACK_AT_LOW_QUALITY} of its quantisation step at quality {LOW_QUALITY} and below,
{SLACK_AT_HIGH_QUALITY} from quality {HIGH_QUALITY} (the file's grain and texture kept, its
blocks still smoothed); --no-jpeg-bins leaves the network free.

i2sb models list shows every model and what it is good for; i2sb degrade makes test pairs of a
task, and i2sb evaluate scores the restorations.
"""

_SAMPLING = f"""\
--nfe, the sampler, --detail and --ensemble default to what the model's checkpoint says;
i2sb restore --dry-run shows what each stage would use.

  --nfe N: network calls per picture, 1 to {MAX_NFE}; the time grows with it. A chain takes
    one for every stage (--nfe 10) or one per stage (--nfe 10,2).
  --ot-ode / --stochastic: the deterministic OT-ODE sampler or the stochastic one. A model
    trained for the OT-ODE sampler only never saw noisy inputs and refuses --stochastic.
  --seed S: each picture's noise comes from (seed, its relative path), so a picture restores
    the same whatever the batch, the tiling or the other inputs.
  --detail D: how much of the sampler's generated detail to keep, at no cost: 1 keeps the
    bridge's sample, 0 gives the network's one-step estimate (smoother, closer to the original
    on average), values between mix the two.
  --ensemble 1|2|4: average every network call over the picture and its left-right (2) and
    up-down (4) mirror images, the self-ensemble of super-resolution: estimates closer to the
    original, at 2 or 4 times the time; the steps and the noise are unchanged.
  --samples K: restore each picture K times (the stochastic sampler only), sample k seeded from
    (seed, path, k), sample 0 being the single restoration of the same seed. The files are
    <name>_s0 ... <name>_s{{K-1}} and <name>_spread.png, a heat map of the per-pixel standard
    deviation: where the input left the model unsure. A picture's samples run as one batch.
  --save-trajectory DIR: also write <name>_trajectory.png (the state x_n and the network's
    estimate x0_hat at up to 7 steps) and <name>_trajectory.gif (x_n step by step) into DIR.
    No extra network call.
  --clip-denoise: clamp the network's estimate of the clean picture to [-1, 1] at every step
    (off by default, as in the official sample.py).

The seed, model, task, NFE, detail and ensemble go into each output's metadata.
"""

_MASKS = f"""\
Inpainting restores the holes a mask marks.

  --mask FILE: one mask for every input. --mask DIR: one per picture, found by the picture's
    relative path as <name>.<ext> or <name>_mask.<ext>. A mask may be of any picture format.
  White is the hole: a pixel is a hole when its grey level is at least --mask-threshold of
    white (default {MASK_THRESHOLD:g}). --invert-mask makes black the hole. A mask of one colour
    whose transparency varies (an opaque layer with the hole erased) marks the hole by its
    transparency instead.
  Without --mask, the picture's transparent pixels are the hole (transparency at least the
    threshold), and the result is opaque. A run where no picture can have a mask stops with a
    usage error.
  A mask painted with a soft brush, or saved as JPEG, has soft edges (levels between black and
    white): its hole is grown by {SOFT_MASK_GROWTH} pixels, to cover the rim that JPEG leaves
    around the object in the photo. A mask of two levels, as programs write them, is taken as
    it is. The threshold and the growth are measured (benchmarks/mask_cleaning.py). The
    picture's line, its --json record and the output's metadata (i2sb:mask-*) say how its hole
    was cut.
  --mask-dilate N grows the hole by N pixels (a disc) instead, whatever its edges (0: not at
    all), for example to cover the halo a loosely drawn mask leaves around an object.
  --mask-feather N fades the restored hole into the original over the hole's first N pixels
    from its border, for a soft seam; pixels outside the hole stay untouched. Keep it at most
    --mask-dilate (--mask-dilate 6 --mask-feather 4) to replace every pixel you marked.
  A mask of the picture's shape (aspect ratio within 1%) but another size is resized to it by
    nearest neighbour, with a note; one of another shape is refused, unless --mask-resize
    stretches it to the picture.
  A mask that marks no pixel, or the whole picture once grown, is refused.
"""

_OUTPUTS = """\
Where the results go:

  -o DIR mirrors the inputs' sub-folders in DIR; -o FILE names the result of a single input;
    -o - writes it to stdout (where a picture from stdin goes by default, as PNG).
  -o may be a name template with the fields {stem}, {ext} (the output's extension), {name}
    (the input's file name) and {parent} (its folder under the one given), e.g.
    'out/{parent}/{stem}_x4.{ext}'. A template that gives two inputs one name is refused.
  Without -o, each result goes beside its input with the --suffix (default _restored); in an
    -o folder there is no suffix unless given.
  An output that exists is skipped (--skip-existing, the default) unless --overwrite, and
    results of earlier runs found in folders are not taken as inputs: running the same command
    again continues where it stopped. Files are written whole or not at all.

What they are:

  Each result keeps its input's format, bit depth, EXIF and ICC profile unless --format png,
    jpg, webp, tif or bmp says otherwise.
  --quality 1-100 sets JPEG quality (default 95) and makes WebP lossy; a WebP otherwise stays
    as it was (lossy at 90, or lossless).
  Transparency is kept in PNG, WebP and TIFF. JPEG and BMP cannot hold it: a transparent
    picture bound for them fails unless --background COLOUR (white, #808080) lays it over that
    colour, which makes the result opaque.
  --outscale S resizes the result to S times the input's size (up to 16): --task sr4x
    --outscale 2 gives a 2x picture, by area averaging down from the model's 4x; enlarging
    uses Lanczos. Default: the model's own scale (4 for sr4x, 1 for the others).

What a run reports:

  --dry-run lists each input and its output, the outputs that exist and would be skipped, and
    each stage's model and file, without loading a model or writing anything.
  --json prints one JSON object per picture on stdout, in input order: input, output, status
    (restored, skipped or failed; planned with --dry-run), error, seed, seconds, model,
    model_sha256, outscale, samples, spread_mean, stages (each stage's task, model,
    model_sha256, nfe and seed), jpeg_quality, told_jpeg_quality(_from), jpeg_slack (how near
    its JPEG file a jpeg model's result was kept) and mask (inpainting: what marked the hole,
    white, black, transparency or opacity, of the mask or the picture; the threshold, dilate
    and feather; soft_edges). Progress and messages go to stderr.
"""

_SPEED = """\
Where and how the network runs:

  --device auto picks the CUDA GPU when there is one, else the CPU; or cpu, cuda, cuda:N.
  --backend auto runs a checkpoint in ONNX Runtime on the CPU, in fp32, when it is installed
    and a one-off check has found that it restores the same pictures and runs the network
    faster (the export and the verdict are cached); otherwise, and on GPUs, in PyTorch, with a
    note saying why. An exported file runs by its suffix. --backend torch is the exact
    reference.
  --precision fp32, bf16 or fp16 (fp16 on CUDA only); default: fp32, or the export's.
  --compile runs the network through torch.compile (torch backend).
  --trust-pickle loads a TorchScript .pt or torch.export .pt2 export: both are programs (a .pt
    graph can read and write files, a .pt2 is unpickled), so only for files you made or trust.
  --batch-size N samples N pictures of the same size together.

Large pictures run in tiles: every network call goes tile by tile and blends the predictions
smoothly, while the bridge's state and noise stay whole, so there are no seams and the memory
is bounded by the tile.

  --tile T: the tile size (default 512, or the training size of models with attention).
  --tile-overlap O: the overlap of tiles (default 64, at most a quarter of the tile).
  --tile-batch K: K tiles per network call; faster where one tile leaves a GPU idle, at K
    times the memory (measure with i2sb benchmark --tile-batch).
  --max-pixels N: refuse larger pictures, a guard against decompression bombs.

Many processes: --shard I/N restores share I of N of the inputs (0 <= I < N), balanced by
pixels, so that N processes that know nothing of each other (a Slurm job array, xargs -P, GNU
parallel) cover the list exactly once, each picture as a single run would restore it. Under
torchrun (one process per GPU), the processes split the inputs, or share I of them, among
themselves. i2sb benchmark measures each configuration.
"""

TOPICS: dict[str, tuple[str, str]] = {
    "tasks": ("families, paper tasks and chains (--task, --model)", _TASKS),
    "sampling": ("NFE, sampler, seed, detail, mirror images, samples", _SAMPLING),
    "masks": ("inpainting masks (--mask and the options after it)", _MASKS),
    "outputs": ("where results go, their format, --dry-run and --json", _OUTPUTS),
    "speed": ("devices, backends, tiles and many processes", _SPEED),
}


def _task_lists() -> dict[str, str]:
    """The families and paper tasks, each with the bundled model that --task runs."""
    from ..degrade.tasks import FAMILIES, TASKS
    from ..errors import I2SBError
    from ..models.registry import default_model

    def model(task: str) -> str:
        try:
            return default_model(task).name
        except I2SBError:
            return "no bundled model yet"

    families = [f"  {family}: {model(family)}" for family in FAMILIES]
    tasks = [f"  {t.name}: {t.summary} ({model(t.name)})" for t in TASKS.values()]
    return {"families": "\n".join(families), "paper_tasks": "\n".join(tasks)}


def render(text: str, width: int) -> str:
    """A topic's text wrapped to `width`: prose paragraphs flowed, list items hanging."""
    blocks = []
    for paragraph in text.strip("\n").split("\n\n"):
        items: list[str] = []
        for line in paragraph.splitlines():
            if line.startswith("    ") and items:  # an item's continuation
                items[-1] += " " + line.strip()
            elif line.startswith("  "):
                items.append(line)
            elif items and not items[-1].startswith("  "):
                items[-1] += " " + line
            else:
                items.append(line)
        wrapped = [
            textwrap.fill(
                item.strip(),
                width,
                initial_indent="  " if item.startswith("  ") else "",
                subsequent_indent="    " if item.startswith("  ") else "",
                break_on_hyphens=False,
                break_long_words=False,
            )
            for item in items
        ]
        blocks.append("\n".join(wrapped))
    return "\n\n".join(blocks)


def topic_text(name: str) -> str:
    """The text of one topic, its task lists filled in."""
    text = TOPICS[name][1]
    return text.format(**_task_lists()) if name == "tasks" else text


def _width() -> int:
    return max(40, min(shutil.get_terminal_size().columns, 100) - 1)


def help_command(
    topic: Annotated[
        str | None,
        typer.Argument(
            metavar="TOPIC",
            help=f"One of: {', '.join(TOPICS)}. Without it, the list of topics.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Explain what restore's options do, at more length than its --help."""
    if topic is None:
        lines = [f"  {name:<9} {summary}" for name, (summary, _) in TOPICS.items()]
        typer.echo(
            "Topics of i2sb help TOPIC:\n"
            + "\n".join(lines)
            + "\n\nEach command's options: i2sb COMMAND --help."
        )
        return
    if topic not in TOPICS:
        raise typer.BadParameter(
            f"{topic!r} is not a topic; choose one of: {', '.join(TOPICS)}", param_hint="TOPIC"
        )
    typer.echo(render(topic_text(topic), _width()))
