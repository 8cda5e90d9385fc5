"""What a training run is made of, decided before the first step: the network's architecture
and initial weights, the schedule, and where the batches come from.

`TrainJob` is the command line's description of a run; the functions here turn it into
objects, reading only what they must (photos, pairs, an --init checkpoint).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..degrade import get_operator
from ..degrade.tasks import FAMILIES, TASKS
from ..errors import CheckpointError, UsageError
from ..models.checkpoint import STARTS, load_checkpoint
from ..models.condition import CONDITIONS, network_cond
from ..models.registry import resolve_model
from ..nets.adm import UNetConfig, preset
from ..nets.starts import START_NETWORKS
from ..restoring.start import start_of
from .data import Degrader, PhotoCrops, random_subcrop, schedule_defaults
from .pairs import PairedCrops
from .step import LOSS_WEIGHTS, BatchSource


@dataclass(frozen=True)
class TrainJob:
    """Everything `i2sb train` was asked to do."""

    output: Path
    tasks: tuple[str, ...]
    photos: Path | None = None
    pairs: tuple[Path, Path] | None = None
    preset: str | None = None
    config_json: str | None = None
    init: str | None = None
    cond_x1: bool | None = None
    condition: str | None = None
    """What the network is told besides x1 (CheckpointMeta.condition); None: --init's, else
    nothing. An --init without it gains it, its new input weighed zero at first."""
    beta_max: float | None = None
    ot_ode: bool | None = None
    ot_ode_share: float | None = None
    """Share of examples on the OT-ODE bridge (TrainSettings.ot_ode_share); None: 1 for an
    OT-ODE model, else 0."""
    loss_weight: str = "uniform"
    """How each picture counts in the loss (TrainSettings.loss_weight); it may change when a
    run is resumed."""
    start: str | None = None
    """x1's form, "degraded", "classical" or a start network (CheckpointMeta.start); None:
    --init's, else "degraded"."""
    steps: int = 2000
    batch_size: int = 16
    crop: int = 64
    degrade_size: int | None = None
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    precision: str = "auto"
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    log_every: int = 50
    val: Path | None = None
    val_pairs: tuple[Path, Path] | None = None
    val_every: int = 500
    val_nfe: int | None = None
    val_crop: int = 256
    name: str | None = None
    default_nfe: int = 10
    log: Path | None = None
    state: Path | None = None
    resume: bool = False


@dataclass(frozen=True)
class Model:
    """The network to train and what it is for."""

    config: UNetConfig
    cond_x1: bool
    condition: str
    task: str
    """The checkpoint's task: a paper task or a family name."""
    family: str
    beta_max: float
    ot_ode: bool
    """The sampler restore uses by default."""
    ot_ode_share: float
    start: str
    degradation: str
    """The degradation a family request stands for, for start "classical" ("" otherwise)."""
    init_weights: dict[str, Tensor] | None
    source: str
    """How the architecture was chosen, for the recipe: a preset name, "config" or "init:..."."""


def family_of_task(name: str) -> str:
    """The family of a family name, a paper task or any degradation `degrade` knows."""
    return name if name in FAMILIES else get_operator(name).family


def checkpoint_task(tasks: tuple[str, ...]) -> str:
    """What the checkpoint says it restores: the one paper task or family named, else the family
    (a mixture, or a real-world variant such as jpeg-real-10, which restore knows by family)."""
    if len(tasks) == 1 and (tasks[0] in TASKS or tasks[0] in FAMILIES):
        return tasks[0]
    families = {family_of_task(t) for t in tasks}
    if len(families) != 1:
        raise UsageError(f"the tasks {', '.join(tasks)} are not of one family")
    return families.pop()


def assumed_degradation(tasks: tuple[str, ...]) -> str:
    """The degradation a family request (`--task deblur`) stands for: the first real-world
    variant trained on (blur-gauss-plain, jpeg-real-10...), else the first task."""
    real = [t for t in tasks if not get_operator(t).paper]
    return (real or list(tasks))[0]


def _custom_config(text: str, base_preset: str, cond_x1: bool) -> UNetConfig:
    """--config: a JSON object (or a file holding one) of UNetConfig fields over a preset,
    itself named by an optional "preset" key (default: --preset or tiny)."""
    source = text if text.lstrip().startswith("{") else None
    try:
        if source is None:
            source = Path(text).read_text(encoding="utf-8")
        fields: dict[str, Any] = json.loads(source)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        base = preset(fields.pop("preset", base_preset), conditioned=cond_x1).to_dict()
        channels = base["in_channels"]
        if fields.get("in_channels", channels) != channels:
            raise ValueError(f"in_channels follows --cond-x1/--no-cond-x1 ({channels})")
        return UNetConfig.from_dict({**base, **fields})
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config: {exc}") from None


def _with_condition(config: UNetConfig, condition: str) -> UNetConfig:
    if condition not in CONDITIONS:
        raise UsageError(
            f"--condition must be one of {', '.join(c for c in CONDITIONS if c)}, not {condition!r}"
        )
    planes = CONDITIONS[condition]
    return UNetConfig.from_dict({**config.to_dict(), "in_channels": config.in_channels + planes})


def _told_more(
    init: str, before: str, condition: str, net: torch.nn.Module
) -> tuple[UNetConfig, dict[str, Tensor]]:
    """The --init network given the inputs of `condition` as well: its first convolution
    gains zero weights for them (the new planes come last, models/condition.py), so that it
    starts out computing exactly what --init computed and learns to use what it is told."""
    if before:
        raise UsageError(f"--init {init} is told {before!r}; it cannot be retrained without it")
    config = _with_condition(net.config, condition)
    weights = dict(net.state_dict())
    stem = weights["input_blocks.0.0.weight"]  # [C, in_channels * p^2, 3, 3]
    added = (config.in_channels - net.config.in_channels) * config.patch_size**2
    weights["input_blocks.0.0.weight"] = torch.cat(
        [stem, stem.new_zeros(stem.shape[0], added, *stem.shape[2:])], dim=1
    )
    return config, weights


def resolve_network(job: TrainJob) -> Model:
    """Architecture, initial weights and schedule of the run."""
    task = checkpoint_task(job.tasks)
    beta_max, ot_ode = schedule_defaults(task)
    init_weights, cond_x1 = None, True if job.cond_x1 is None else job.cond_x1
    start = job.start or "degraded"
    if job.init is not None:
        if job.config_json is not None or job.preset is not None:
            raise UsageError("--init takes the architecture from its checkpoint: drop --preset")
        try:
            net, meta = load_checkpoint(resolve_model(job.init, None))
        except CheckpointError as exc:
            raise UsageError(f"--init: {exc}") from None
        if job.cond_x1 is not None and job.cond_x1 != meta.cond_x1:
            raise UsageError(f"--init {job.init} has cond_x1={meta.cond_x1}; drop --cond-x1")
        config, cond_x1, source = meta.config, meta.cond_x1, f"init:{meta.name}"
        start = job.start or meta.start
        init_weights = net.state_dict()
        condition = meta.condition if job.condition is None else job.condition
        if condition != meta.condition:
            config, init_weights = _told_more(job.init, meta.condition, condition, net)
    else:
        condition = job.condition or ""
        if job.config_json is not None:
            config = _custom_config(job.config_json, job.preset or "tiny", cond_x1)
            source = "config"
        else:
            try:
                config, source = (
                    preset(job.preset or "tiny", conditioned=cond_x1),
                    job.preset or "tiny",
                )
            except ValueError as exc:
                raise UsageError(f"--preset: {exc}") from None
        config = _with_condition(config, condition)
    if condition and (not cond_x1 or family_of_task(task) != "jpeg"):
        raise UsageError(f"--condition {condition} is for networks of the jpeg family given x1")
    if start not in STARTS:
        raise UsageError(f"--start must be one of {', '.join(STARTS)}, not {start!r}")
    if start == "classical" and job.pairs is not None:
        raise UsageError("--start classical forms x1 from known degradations: drop --pairs")
    if start in START_NETWORKS and family_of_task(task) != "sr4x":
        raise UsageError(f"--start {start} upscales 4x: it starts sr4x models, not {task}")
    ot_ode = job.ot_ode if job.ot_ode is not None else ot_ode
    share = job.ot_ode_share if job.ot_ode_share is not None else float(ot_ode)
    if not 0.0 <= share <= 1.0:
        raise UsageError(f"--ot-ode-share must be between 0 and 1, not {share}")
    if share in (0.0, 1.0) and share != float(ot_ode):
        default, other = ("OT-ODE", "--stochastic") if ot_ode else ("stochastic", "--ot-ode")
        raise UsageError(
            f"--ot-ode-share {share:g} trains for the other sampler than the {default} one "
            f"restore would use: pass {other} instead, or a share between 0 and 1"
        )
    if job.crop % config.size_multiple:
        raise UsageError(f"--crop must be a multiple of {config.size_multiple} for this network")
    if job.loss_weight not in LOSS_WEIGHTS:
        raise UsageError(f"--loss-weight must be one of {', '.join(LOSS_WEIGHTS)}")
    if job.loss_weight == "input-error" and family_of_task(task) == "inpaint":
        # x1's hole holds noise or a classical fill, not an error that measures the picture.
        raise UsageError("--loss-weight input-error is for sr4x, deblur and jpeg: drop it")
    return Model(
        config=config,
        cond_x1=cond_x1,
        condition=condition,
        task=task,
        family=family_of_task(task),
        beta_max=job.beta_max if job.beta_max is not None else beta_max,
        ot_ode=ot_ode,
        ot_ode_share=share,
        start=start,
        degradation=assumed_degradation(job.tasks) if start == "classical" else "",
        init_weights=init_weights,
        source=source,
    )


def paired_crops(clean: Path, degraded: Path, model: Model, crop: int) -> PairedCrops:
    """Pairs for the model; a start network's upscales of them are kept beside the degraded
    folder (DEGRADED.x1-NAME), so that later runs and resumes read them back."""
    start = start_of(model.start)
    cache = degraded.parent / f"{degraded.name}.x1-{model.start}" if start else None
    pairs = PairedCrops(
        clean, degraded, family=model.family, crop=crop, start=start, start_cache=cache
    )
    unknown = pairs.without_quality if model.condition == "jpeg-quality" else []
    if unknown:
        raise UsageError(
            f"pair {unknown[0]}: a network told the JPEG quality trains on degraded JPEG files, "
            f"which declare it; {degraded} holds {len(unknown)} other files"
        )
    return pairs


@dataclass(frozen=True)
class Data:
    batches: BatchSource
    size: int
    """How many photos or pairs feed it."""
    description: str
    degrader: Degrader | None = None
    pairs: PairedCrops | None = None


def training_data(job: TrainJob, model: Model, device: torch.device) -> Data:
    """The batch source: photos degraded on the fly by the tasks, or pairs of pictures."""
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def placed(x0: Tensor, x1: Tensor, mask: Tensor | None, quality: Tensor | None):
        x0, x1 = (x.to(device, memory_format=layout) for x in (x0, x1))
        cond = network_cond(
            x1, cond_x1=model.cond_x1, condition=model.condition, jpeg_quality=quality
        )
        return x0, x1, None if mask is None else mask.to(device), cond

    if job.pairs is not None:
        pairs = paired_crops(*job.pairs, model, job.crop)
        described = f"{len(pairs)} pairs from {job.pairs[0]} and {job.pairs[1]}"
        return Data(lambda g: placed(*pairs.batch(job.batch_size, g)), len(pairs), described)
    if job.photos is None:
        raise UsageError("give a folder of photos, or --pairs CLEAN_DIR DEGRADED_DIR")
    degrader = Degrader(
        job.tasks, classical=model.start == "classical", start=start_of(model.start)
    )
    size = job.degrade_size or job.crop
    if size < job.crop:
        raise UsageError("--degrade-size must be at least --crop")
    photos = PhotoCrops(job.photos, crop=size)
    align = 4 if degrader.family == "sr4x" else 1

    def batches(generator: torch.Generator):
        x0 = photos.batch(job.batch_size, generator).to(device)
        x1, mask, quality = degrader(x0, generator)
        if size > job.crop:
            x0, x1, mask = random_subcrop([x0, x1, mask], job.crop, generator, align=align)
        return placed(x0, x1, mask, quality)

    described = f"{photos.description} from {job.photos}, degraded by {', '.join(job.tasks)}"
    return Data(batches, len(photos), described, degrader=degrader)
