"""The options of `i2sb train`, one type alias each: its type, flags, help panel and help."""

from pathlib import Path
from typing import Annotated

import typer

from ..nets.adm import PRESET_NAMES

_DATA = "Data"
_MODEL = "Model"
_OPTIM = "Optimisation"
_RUN = "Checkpoints, validation and logs"

Output = Annotated[
    Path,
    typer.Option(
        "-o", "--output", help="Checkpoint file to write (.safetensors).", show_default=False
    ),
]
Photos = Annotated[
    Path | None,
    typer.Argument(
        help="Folder of clean training photos (or use --pairs).",
        exists=True,
        file_okay=False,
        show_default=False,
    ),
]
Tasks = Annotated[
    list[str] | None,
    typer.Option(
        help="Degradation applied on the fly (any `i2sb degrade` task); repeat it for a "
        "mixture of one family. With --pairs: the family or paper task the pairs are.",
        rich_help_panel=_DATA,
        show_default="sr4x-bicubic",
    ),
]
Pairs = Annotated[
    tuple[Path, Path] | None,
    typer.Option(
        help="Train on CLEAN_DIR DEGRADED_DIR pictures matched by relative name.",
        metavar="CLEAN_DIR DEGRADED_DIR",
        rich_help_panel=_DATA,
        show_default=False,
    ),
]
Crop = Annotated[int, typer.Option(min=8, help="Training crop size.", rich_help_panel=_DATA)]
DegradeSize = Annotated[
    int | None,
    typer.Option(
        help="Degrade crops of this size, then train on a --crop window of them.",
        rich_help_panel=_DATA,
        show_default="--crop",
    ),
]
BatchSize = Annotated[
    int, typer.Option(min=1, help="Crops per step and process.", rich_help_panel=_DATA)
]
Seed = Annotated[
    int,
    typer.Option(help="Seed of the weights, crops, steps and noise.", rich_help_panel=_DATA),
]
Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"Network preset: {', '.join(PRESET_NAMES)}.",
        rich_help_panel=_MODEL,
        show_default="tiny",
    ),
]
ConfigJson = Annotated[
    str | None,
    typer.Option(
        help='UNet config as JSON or a JSON file, over the preset: {"model_channels": 64}.',
        rich_help_panel=_MODEL,
        show_default=False,
    ),
]
InitFrom = Annotated[
    str | None,
    typer.Option(
        help="Fine-tune from this checkpoint (file or model name); it sets the architecture.",
        rich_help_panel=_MODEL,
        show_default=False,
    ),
]
CondX1 = Annotated[
    bool | None,
    typer.Option(
        "--cond-x1/--no-cond-x1",
        help="Also feed x1 to the network.",
        rich_help_panel=_MODEL,
        show_default="cond-x1",
    ),
]
BetaMax = Annotated[
    float | None,
    typer.Option(
        min=0.0, help="Schedule's beta_max.", rich_help_panel=_MODEL, show_default="the task's"
    ),
]
OtOde = Annotated[
    bool | None,
    typer.Option(
        "--ot-ode/--stochastic",
        help="Train for the deterministic OT-ODE sampler (no bridge noise).",
        rich_help_panel=_MODEL,
        show_default="the task's",
    ),
]
OtOdeShare = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of training examples drawn without bridge noise (the OT-ODE bridge); one "
        "between 0 and 1 trains a network that restore can run with either sampler.",
        rich_help_panel=_MODEL,
        show_default="1 with --ot-ode, else 0",
    ),
]
Condition = Annotated[
    str | None,
    typer.Option(
        help="What the network is told besides x1: jpeg-quality (jpeg family), each picture's "
        "JPEG quality, which restore reads from the file. An --init without it gains the "
        "input with zero weights, so training starts from what --init does.",
        rich_help_panel=_MODEL,
        show_default="nothing, or --init's",
    ),
]
Start = Annotated[
    str | None,
    typer.Option(
        help="x1, the bridge's start: degraded (the paper's form); classical, its "
        "classical restoration (Tikhonov/Wiener deconvolution, Telea inpainting...), which "
        "an untrained network already matches; or realesrgan-x4plus (sr4x), the upscale of "
        'Real-ESRGAN x4plus (pip install "i2sb\\[start]").',
        rich_help_panel=_MODEL,
        show_default="degraded, or --init's",
    ),
]
DefaultNfe = Annotated[
    int,
    typer.Option(min=1, max=999, help="NFE that restore uses by default.", rich_help_panel=_MODEL),
]
ModelName = Annotated[
    str | None,
    typer.Option(
        help="Model name stored in the checkpoint.",
        rich_help_panel=_MODEL,
        show_default="output's stem",
    ),
]
Steps = Annotated[int, typer.Option(min=1, help="Optimiser steps in all.", rich_help_panel=_OPTIM)]
LearningRate = Annotated[
    float, typer.Option(help="Peak AdamW learning rate.", rich_help_panel=_OPTIM)
]
WarmupSteps = Annotated[
    int,
    typer.Option(min=1, help="Linear warm-up steps, then cosine decay.", rich_help_panel=_OPTIM),
]
WeightDecay = Annotated[
    float, typer.Option(min=0.0, help="AdamW weight decay.", rich_help_panel=_OPTIM)
]
LossWeight = Annotated[
    str,
    typer.Option(
        help="How each picture counts in the loss: uniform, or input-error (relative to its "
        "degraded input's error, so that a lightly degraded picture counts as much as a "
        "heavily degraded one; not for inpainting). May change on --resume.",
        rich_help_panel=_OPTIM,
    ),
]
GradClip = Annotated[
    float, typer.Option(min=0.0, help="Clip the gradient norm to this.", rich_help_panel=_OPTIM)
]
EmaDecay = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="EMA decay of the weights used for sampling.",
        rich_help_panel=_OPTIM,
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        help="auto (bf16 autocast on CUDA, else fp32), fp32 or bf16.", rich_help_panel=_OPTIM
    ),
]
Device = Annotated[
    str,
    typer.Option(
        help="auto, cpu, cuda or cuda:N (torchrun: each process's GPU).", rich_help_panel=_OPTIM
    ),
]
CheckpointEvery = Annotated[
    int,
    typer.Option(
        min=0, help="Write the checkpoint and the state every N steps.", rich_help_panel=_RUN
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue from the saved state (the --state file).",
        rich_help_panel=_RUN,
    ),
]
StatePath = Annotated[
    Path | None,
    typer.Option(
        help="Where the resumable state lives.",
        rich_help_panel=_RUN,
        show_default="OUTPUT's stem + .state.safetensors",
    ),
]
ValPhotos = Annotated[
    Path | None,
    typer.Option(
        help="Held-out photos to validate on, degraded by each task.",
        exists=True,
        file_okay=False,
        rich_help_panel=_RUN,
        show_default=False,
    ),
]
ValPairs = Annotated[
    tuple[Path, Path] | None,
    typer.Option(
        help="Held-out pairs to validate on (with --pairs).",
        metavar="CLEAN_DIR DEGRADED_DIR",
        rich_help_panel=_RUN,
        show_default=False,
    ),
]
ValEvery = Annotated[int, typer.Option(min=0, help="Validate every N steps.", rich_help_panel=_RUN)]
ValNfe = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=999,
        help="NFE of validation.",
        rich_help_panel=_RUN,
        show_default="--default-nfe",
    ),
]
ValCrop = Annotated[
    int, typer.Option(min=16, help="Validation centre-crop size.", rich_help_panel=_RUN)
]
LogEvery = Annotated[
    int, typer.Option(min=1, help="Print the loss every N steps.", rich_help_panel=_RUN)
]
MetricsLog = Annotated[
    Path | None,
    typer.Option(
        "--metrics",
        "--log",
        help="Append the metrics (loss, validation PSNR...) here as JSON lines. Under "
        "torchrun spell it --metrics: torchrun takes --log for its own --log-dir.",
        rich_help_panel=_RUN,
        show_default=False,
    ),
]
