"""`i2sb train`: train a bridge network on photos degraded on the fly, or on pairs."""

from pathlib import Path

import typer
from rich.markup import escape

from ..training.run import run
from ..training.setup import TrainJob
from .common import console, reports_errors
from .train_options import (
    BatchSize,
    BetaMax,
    CheckpointEvery,
    Condition,
    CondX1,
    ConfigJson,
    Crop,
    DefaultNfe,
    DegradeSize,
    Device,
    EmaDecay,
    GradClip,
    InitFrom,
    LearningRate,
    LogEvery,
    LossWeight,
    MetricsLog,
    ModelName,
    OtOde,
    OtOdeShare,
    Output,
    Pairs,
    Photos,
    Precision,
    Preset,
    Resume,
    Seed,
    Start,
    StatePath,
    Steps,
    Tasks,
    ValCrop,
    ValEvery,
    ValNfe,
    ValPairs,
    ValPhotos,
    WarmupSteps,
    WeightDecay,
)


def _say(text: str) -> None:
    console.print(escape(text), soft_wrap=True)


@reports_errors
def train_command(
    output: Output,
    data: Photos = None,
    task: Tasks = None,
    pairs: Pairs = None,
    crop: Crop = 64,
    degrade_size: DegradeSize = None,
    batch_size: BatchSize = 16,
    seed: Seed = 0,
    arch: Preset = None,
    config: ConfigJson = None,
    init: InitFrom = None,
    cond_x1: CondX1 = None,
    condition: Condition = None,
    beta_max: BetaMax = None,
    ot_ode: OtOde = None,
    ot_ode_share: OtOdeShare = None,
    start: Start = None,
    default_nfe: DefaultNfe = 10,
    name: ModelName = None,
    steps: Steps = 2000,
    lr: LearningRate = 5e-4,
    warmup_steps: WarmupSteps = 200,
    weight_decay: WeightDecay = 0.0,
    grad_clip: GradClip = 1.0,
    loss_weight: LossWeight = "uniform",
    ema_decay: EmaDecay = 0.999,
    precision: Precision = "auto",
    device: Device = "auto",
    checkpoint_every: CheckpointEvery = 500,
    resume: Resume = False,
    state: StatePath = None,
    val: ValPhotos = None,
    val_pairs: ValPairs = None,
    val_every: ValEvery = 500,
    val_nfe: ValNfe = None,
    val_crop: ValCrop = 256,
    log_every: LogEvery = 50,
    log: MetricsLog = None,
) -> None:
    """Train a bridge network (Algorithm 1 of I2SB) on photos or on pairs of pictures.

    Several GPUs or machines: torchrun --nproc-per-node G -m i2sb_cli train ...
    (one process per GPU, --batch-size crops each; only rank 0 writes files).
    Exit codes: 0 done; 1 failed; 2 usage error; 130 stopped by Ctrl-C or
    SIGTERM after saving: the same command with --resume then continues.
    """
    _check_data(data, pairs, task)
    job = TrainJob(
        output=output,
        tasks=tuple(task or ["sr4x-bicubic"]),
        photos=data,
        pairs=pairs,
        preset=arch,
        config_json=config,
        init=init,
        cond_x1=cond_x1,
        condition=condition,
        beta_max=beta_max,
        ot_ode=ot_ode,
        ot_ode_share=ot_ode_share,
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
        loss_weight=loss_weight,
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
    if code := run(job, _say):
        raise typer.Exit(code)


def _check_data(data: Path | None, pairs: tuple[Path, Path] | None, task: list[str] | None) -> None:
    if data is not None and pairs is not None:
        raise typer.BadParameter("give either a photo folder or --pairs, not both")
    if pairs is not None and not task:
        raise typer.BadParameter(
            "say what the pairs teach: a family (sr4x, deblur, jpeg, inpaint) or a paper task",
            param_hint="--task",
        )
