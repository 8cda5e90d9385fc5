"""`i2sb train`: train a bridge network on photographs degraded on the fly."""

import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from ..bridge import make_schedule
from ..data import PhotoCrops, training_pair
from ..models.checkpoint import CheckpointMeta, save_checkpoint
from ..nets.adm import PRESET_NAMES, ADMUNet, count_parameters, preset
from ..runtime.torch_backend import resolve_device
from ..tasks import TASKS
from ..train import EMA, TrainLog, TrainSettings, train
from .common import console, reports_errors


@reports_errors
def train_command(
    data: Annotated[
        Path, typer.Argument(help="Folder of clean training photos.", exists=True, file_okay=False)
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Checkpoint file to write (.safetensors).")
    ],
    task: Annotated[
        str, typer.Option(help="Degradation applied on the fly: sr4x-bicubic or sr4x-pool.")
    ] = "sr4x-bicubic",
    arch: Annotated[
        str, typer.Option("--preset", help=f"Network preset: {', '.join(PRESET_NAMES)}.")
    ] = "tiny",
    cond_x1: Annotated[
        bool, typer.Option("--cond-x1/--no-cond-x1", help="Also feed x1 to the network.")
    ] = True,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    crop: Annotated[
        int, typer.Option(min=16, help="Training crop size (a multiple of the net's).")
    ] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 5e-4,
    ema_decay: Annotated[
        float, typer.Option(help="EMA decay of the weights used for sampling.")
    ] = 0.999,
    seed: Annotated[int, typer.Option(help="Seed of the crops, steps and noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    checkpoint_every: Annotated[
        int, typer.Option(min=0, help="Also write the checkpoint every N steps.")
    ] = 500,
    name: Annotated[str | None, typer.Option(help="Model name stored in the checkpoint.")] = None,
    default_nfe: Annotated[
        int, typer.Option(min=1, max=999, help="NFE that restore uses by default.")
    ] = 10,
    log: Annotated[
        Path | None, typer.Option(help="Append JSON lines of the training log here.")
    ] = None,
) -> None:
    """Train a small bridge network (Algorithm 1 of I2SB) on photos."""
    if task not in TASKS:
        raise typer.BadParameter(f"unknown task {task!r}", param_hint="--task")
    torch_device = resolve_device(device)
    config = preset(arch, conditioned=cond_x1)
    if crop % config.size_multiple:
        raise typer.BadParameter(
            f"must be a multiple of {config.size_multiple}", param_hint="--crop"
        )
    photos = PhotoCrops(data, crop=crop)
    spec = TASKS[task]
    schedule = make_schedule(spec.beta_max)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ADMUNet(config).to(torch_device)
    settings = TrainSettings(
        steps=steps, lr=lr, ema_decay=ema_decay, ot_ode=spec.ot_ode, cond_x1=cond_x1
    )
    console.print(
        f"training {arch} ({count_parameters(net):,} parameters) for {task} "
        f"on {len(photos)} photos, {steps} steps of {batch_size} crops of {crop}x{crop}, "
        f"on {torch_device}"
    )
    recipe = {
        "data": str(data),
        "photos": len(photos),
        "preset": arch,
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "lr": lr,
        "ema_decay": ema_decay,
        "seed": seed,
        "device": str(torch_device),
        "torch": torch.__version__,
    }
    started = time.monotonic()

    def batches(gen: torch.Generator):
        x0 = photos.batch(batch_size, gen)
        x1, mask = training_pair(task, x0)
        return (
            x0.to(torch_device),
            x1.to(torch_device),
            None if mask is None else mask.to(torch_device),
        )

    def save(done: int, ema: EMA) -> None:
        meta = CheckpointMeta(
            name=name or output.stem,
            config=config,
            task=task,
            beta_max=spec.beta_max,
            ot_ode=spec.ot_ode,
            cond_x1=cond_x1,
            default_nfe=default_nfe,
            licence="MIT",
            provenance="`i2sb train` (Algorithm 1 of I2SB) on the photos in training.data",
            training={
                **recipe,
                "steps_done": done,
                "wall_seconds": round(time.monotonic() - started),
            },
        )
        save_checkpoint(output, ema.state_dict(), meta, dtype=torch.float16)

    def report(entry: TrainLog) -> None:
        console.print(
            f"step {entry.step:>6}  loss {entry.loss:.5f}  lr {entry.lr:.2e}  {entry.seconds:.0f} s"
        )
        if log is not None:
            with log.open("a") as handle:
                handle.write(json.dumps(entry.__dict__) + "\n")

    ema = train(
        net,
        schedule,
        batches,
        settings,
        generator=generator,
        on_log=report,
        on_checkpoint=save,
        checkpoint_every=checkpoint_every,
    )
    save(steps, ema)
    console.print(f"wrote {output}")
