"""`i2sb train`: train a bridge network on photos degraded on the fly, or on pairs."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..nets.adm import PRESET_NAMES
from ..training.run import run
from ..training.setup import TrainJob
from .common import console, reports_errors

_DATA = "Data"
_MODEL = "Model"
_OPTIM = "Optimisation"
_RUN = "Checkpoints, validation and logs"


def _say(text: str) -> None:
    console.print(escape(text), soft_wrap=True)


@reports_errors
def train_command(
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Checkpoint file to write (.safetensors).", show_default=False
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of clean training photos (or use --pairs).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            help="Degradation applied on the fly (any `i2sb degrade` task); repeat it for a "
            "mixture of one family. With --pairs: the family or paper task the pairs are.",
            rich_help_panel=_DATA,
            show_default="sr4x-bicubic",
        ),
    ] = None,
    pairs: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            help="Train on CLEAN_DIR DEGRADED_DIR pictures matched by relative name.",
            metavar="CLEAN_DIR DEGRADED_DIR",
            rich_help_panel=_DATA,
            show_default=False,
        ),
    ] = None,
    crop: Annotated[
        int, typer.Option(min=8, help="Training crop size.", rich_help_panel=_DATA)
    ] = 64,
    degrade_size: Annotated[
        int | None,
        typer.Option(
            help="Degrade crops of this size, then train on a --crop window of them.",
            rich_help_panel=_DATA,
            show_default="--crop",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Crops per step and process.", rich_help_panel=_DATA)
    ] = 16,
    seed: Annotated[
        int,
        typer.Option(help="Seed of the weights, crops, steps and noise.", rich_help_panel=_DATA),
    ] = 0,
    arch: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help=f"Network preset: {', '.join(PRESET_NAMES)}.",
            rich_help_panel=_MODEL,
            show_default="tiny",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            help='UNet config as JSON or a JSON file, over the preset: {"model_channels": 64}.',
            rich_help_panel=_MODEL,
            show_default=False,
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="Fine-tune from this checkpoint (file or model name); it sets the architecture.",
            rich_help_panel=_MODEL,
            show_default=False,
        ),
    ] = None,
    cond_x1: Annotated[
        bool | None,
        typer.Option(
            "--cond-x1/--no-cond-x1",
            help="Also feed x1 to the network.",
            rich_help_panel=_MODEL,
            show_default="cond-x1",
        ),
    ] = None,
    beta_max: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Schedule's beta_max.", rich_help_panel=_MODEL, show_default="the task's"
        ),
    ] = None,
    ot_ode: Annotated[
        bool | None,
        typer.Option(
            "--ot-ode/--stochastic",
            help="Train for the deterministic OT-ODE sampler (no bridge noise).",
            rich_help_panel=_MODEL,
            show_default="the task's",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="x1, the bridge's start: degraded (the paper's form) or classical, its "
            "classical restoration (Tikhonov/Wiener deconvolution, Telea inpainting...), which "
            "an untrained network already matches.",
            rich_help_panel=_MODEL,
            show_default="degraded, or --init's",
        ),
    ] = None,
    default_nfe: Annotated[
        int,
        typer.Option(
            min=1, max=999, help="NFE that restore uses by default.", rich_help_panel=_MODEL
        ),
    ] = 10,
    name: Annotated[
        str | None,
        typer.Option(
            help="Model name stored in the checkpoint.",
            rich_help_panel=_MODEL,
            show_default="output's stem",
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(min=1, help="Optimiser steps in all.", rich_help_panel=_OPTIM)
    ] = 2000,
    lr: Annotated[
        float, typer.Option(help="Peak AdamW learning rate.", rich_help_panel=_OPTIM)
    ] = 5e-4,
    warmup_steps: Annotated[
        int,
        typer.Option(
            min=1, help="Linear warm-up steps, then cosine decay.", rich_help_panel=_OPTIM
        ),
    ] = 200,
    weight_decay: Annotated[
        float, typer.Option(min=0.0, help="AdamW weight decay.", rich_help_panel=_OPTIM)
    ] = 0.0,
    grad_clip: Annotated[
        float, typer.Option(min=0.0, help="Clip the gradient norm to this.", rich_help_panel=_OPTIM)
    ] = 1.0,
    ema_decay: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="EMA decay of the weights used for sampling.",
            rich_help_panel=_OPTIM,
        ),
    ] = 0.999,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 autocast on CUDA, else fp32), fp32 or bf16.", rich_help_panel=_OPTIM
        ),
    ] = "auto",
    device: Annotated[
        str,
        typer.Option(
            help="auto, cpu, cuda or cuda:N (torchrun: each process's GPU).", rich_help_panel=_OPTIM
        ),
    ] = "auto",
    checkpoint_every: Annotated[
        int,
        typer.Option(
            min=0, help="Write the checkpoint and the state every N steps.", rich_help_panel=_RUN
        ),
    ] = 500,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the saved state (OUTPUT.state.safetensors).",
            rich_help_panel=_RUN,
        ),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Where the resumable state lives.",
            rich_help_panel=_RUN,
            show_default="OUTPUT.state.safetensors",
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(
            help="Held-out photos to validate on, degraded by each task.",
            exists=True,
            file_okay=False,
            rich_help_panel=_RUN,
            show_default=False,
        ),
    ] = None,
    val_pairs: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            help="Held-out pairs to validate on (with --pairs).",
            metavar="CLEAN_DIR DEGRADED_DIR",
            rich_help_panel=_RUN,
            show_default=False,
        ),
    ] = None,
    val_every: Annotated[
        int, typer.Option(min=0, help="Validate every N steps.", rich_help_panel=_RUN)
    ] = 500,
    val_nfe: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=999,
            help="NFE of validation.",
            rich_help_panel=_RUN,
            show_default="--default-nfe",
        ),
    ] = None,
    val_crop: Annotated[
        int, typer.Option(min=16, help="Validation centre-crop size.", rich_help_panel=_RUN)
    ] = 256,
    log_every: Annotated[
        int, typer.Option(min=1, help="Print the loss every N steps.", rich_help_panel=_RUN)
    ] = 50,
    log: Annotated[
        Path | None,
        typer.Option(
            "--metrics",
            "--log",
            help="Append the metrics (loss, validation PSNR...) here as JSON lines. Under "
            "torchrun spell it --metrics: torchrun takes --log for its own --log-dir.",
            rich_help_panel=_RUN,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a bridge network (Algorithm 1 of I2SB) on photos or on pairs of pictures.

    Several GPUs or machines: torchrun --nproc-per-node G -m i2sb_cli train ...
    (one process per GPU, --batch-size crops each; only rank 0 writes files).
    Exit codes: 0 done; 1 failed; 2 usage error; 130 stopped by Ctrl-C or
    SIGTERM after saving: the same command with --resume then continues.
    """
    if data is not None and pairs is not None:
        raise typer.BadParameter("give either a photo folder or --pairs, not both")
    if pairs is not None and not task:
        raise typer.BadParameter(
            "say what the pairs teach: a family (sr4x, deblur, jpeg, inpaint) or a paper task",
            param_hint="--task",
        )
    job = TrainJob(
        output=output,
        tasks=tuple(task or ["sr4x-bicubic"]),
        photos=data,
        pairs=pairs,
        preset=arch,
        config_json=config,
        init=init,
        cond_x1=cond_x1,
        beta_max=beta_max,
        ot_ode=ot_ode,
        start=start,
        steps=steps,
        batch_size=batch_size,
        crop=crop,
        degrade_size=degrade_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        precision=precision,
        seed=seed,
        device=device,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        val=val,
        val_pairs=val_pairs,
        val_every=val_every,
        val_nfe=val_nfe,
        val_crop=val_crop,
        name=name,
        default_nfe=default_nfe,
        log=log,
        state=state,
        resume=resume,
    )
    code = run(job, _say)
    if code:
        raise typer.Exit(code)
