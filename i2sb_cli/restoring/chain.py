"""Restorations chained in one run (`--task jpeg,sr4x`): the plan of stages, and each stage.

A picture from the web is often small and compressed: it wants its JPEG artefacts removed and
then to be enlarged, in that order (an upscaler trained on clean pictures enlarges the artefacts
with the rest). A chain runs each picture through its stages in one run: each stage's result,
clamped to [-1, 1] but not rounded to 8 bits, is the next stage's degraded picture; each model
is loaded once for the whole run. The options that name models take one value per stage,
separated by commas (`--model ,my-sr.safetensors`: an empty item keeps the stage's bundled
model), and `--nfe` one for all stages or one per stage. Inpainting can only come first: its
mask marks the input picture.

Outputs record every stage: a metadata key holds the stages' values in order, separated by
commas as on the command line (`i2sb:model` = `jpeg-q,sr4x-p4`).
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..degrade.tasks import TASK_CHOICES
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta
from ..models.registry import bundled_models
from ..runtime.metadata import default_tile
from ..runtime.torch_backend import LoadedModel
from .start import Upscale, classical_degradation, make_x1, model_start

MAX_STAGES = 4
"""A longer chain is a mistake: each stage costs a model's memory and its network calls."""
MAX_NFE = 999


@dataclass(frozen=True)
class StageSpec:
    """What the command line asks of one stage (None: the default)."""

    task: str | None = None
    """A family or paper task name, whose bundled model runs when `model` is None."""
    model: str | None = None
    """A model name or checkpoint file."""
    nfe: int | None = None
    jpeg_only: bool = False
    """Run only on pictures with a JPEG history (the cleaning stage with_jpeg_cleaning adds)."""


@dataclass(frozen=True)
class Sampling:
    """How a stage runs the bridge sampler: what the command line asked, the model's defaults
    where it asked nothing (stage_sampling)."""

    nfe: int
    ot_ode: bool
    detail: float = 1.0
    """The sampler's mix of its sample with its one-step estimate (bridge.sample)."""
    ensemble: int = 1
    """Mirror images each network call averages (bridge.ensemble)."""

    def describe(self) -> str:
        """The settings as restore's announcement and --dry-run state them."""
        parts = [f"NFE {self.nfe}"]
        if self.detail < 1:
            parts.append(f"detail {self.detail:g}")
        if self.ensemble > 1:
            parts.append(f"{self.ensemble} mirror images")
        parts.append("OT-ODE" if self.ot_ode else "stochastic")
        return ", ".join(parts)


@dataclass(frozen=True)
class Stage:
    """One restoration of a chain: a loaded model and how to sample it."""

    model: LoadedModel
    family: str
    sampling: Sampling
    classical: str | None = None
    """The degradation whose classical restoration is x1 (models with start "classical")."""
    start: Upscale | None = None
    """The start network whose upscale is x1 (models whose start names one)."""
    model_sha256: str | None = None
    tile: int = 512
    tile_overlap: int = 64
    upsampled: bool = False
    """sr4x: the stage's input is nearest-upsampled already (the first stage only)."""
    jpeg_only: bool = False
    """The stage runs only on pictures with a JPEG history: a quality the file declares, the
    pixels show or --jpeg-quality gives (restoring/quality.py); the others pass it unchanged."""

    def metadata(self, image_seed: int) -> dict[str, str]:
        """What an output records of this stage."""
        meta, sampling = self.model.meta, self.sampling
        metadata = {
            "i2sb:model": meta.name,
            "i2sb:task": meta.task,
            "i2sb:nfe": str(sampling.nfe),
            "i2sb:sampler": "ot-ode" if sampling.ot_ode else "stochastic",
            "i2sb:detail": f"{sampling.detail:g}",
            "i2sb:ensemble": str(sampling.ensemble),
            "i2sb:image-seed": str(image_seed),
            "i2sb:backend": f"{self.model.backend} {self.model.precision}",
        }
        if self.model_sha256:
            metadata["i2sb:model-sha256"] = self.model_sha256
        return metadata


@dataclass(frozen=True)
class StageRecord:
    """What one stage did to one picture, for --json."""

    task: str
    model: str
    model_sha256: str | None
    nfe: int
    seed: int


def plan_chain(task: str | None, model: str | None, nfe: str | None) -> list[StageSpec]:
    """The stages that `--task`, `--model` and `--nfe` ask for, each a comma-separated list
    (one item per stage; `--nfe` may give one value for all). A UsageError names the option."""
    tasks = _task_items(task)
    models = _model_items(model)
    count = len(tasks or models or [None])
    if tasks and models and len(models) != len(tasks):
        raise UsageError(
            f"--task names {len(tasks)} stage(s) but --model {len(models)}: give one model per "
            "stage, or an empty item for a stage's bundled model (e.g. --model ,my-sr.safetensors)"
        )
    if count > MAX_STAGES:
        raise UsageError(f"a chain has at most {MAX_STAGES} stages, not {count}")
    nfes = _nfe_items(nfe)
    if len(nfes) not in (1, count):
        raise UsageError(f"--nfe {nfe}: give one value for all stages or one per stage ({count})")
    specs = []
    for index in range(count):
        spec = StageSpec(
            task=tasks[index] if tasks else None,
            model=models[index] if models else None,
            nfe=nfes[index if len(nfes) > 1 else 0],
        )
        if spec.task is None and spec.model is None:
            raise UsageError(
                f"stage {index + 1} has neither a task nor a model: name its --task or --model"
            )
        specs.append(spec)
    return specs


def with_jpeg_cleaning(chain: list[StageSpec]) -> list[StageSpec]:
    """The chain with a JPEG cleaning first when it starts by enlarging with the sr4x family's
    bundled model (`--task sr4x`, no --model for it): the jpeg family's bundled model runs
    first on each picture saved as JPEG (or showing a JPEG's 8x8 blocks), and not at all on
    the others. An upscaler trained on clean pictures enlarges a JPEG's blocks with the rest,
    into speckle. Issue 29's web thumbnail (4x LANCZOS, JPEG 75; 4 validation photos at
    512x512): bicubic 25.50 dB, sr4x-p4 alone 25.54, jpeg-q then sr4x-p4 26.13, the speckle gone.
    The cleaning stage samples at its model's defaults (--nfe given once is the enlarging's).
    Without a bundled jpeg model, nothing is added."""
    first = chain[0]
    if first.task != "sr4x" or first.model is not None or len(chain) >= MAX_STAGES:
        return chain
    if not any(entry.family == "jpeg" for entry in bundled_models()):
        return chain
    return [StageSpec(task="jpeg", jpeg_only=True), *chain]


def _task_items(task: str | None) -> list[str]:
    if task is None:
        return []
    items = [item.strip() for item in task.split(",")]
    for index, item in enumerate(items):
        if item not in TASK_CHOICES:
            raise UsageError(
                f"--task {task}: {item!r} is not a task; choose one of: {', '.join(TASK_CHOICES)}"
                + (" (a chain separates its stages with commas: jpeg,sr4x)" if "," in task else "")
            )
        if index > 0 and item.startswith("inpaint"):
            raise UsageError(
                f"--task {task}: inpainting can only be the first stage (its mask marks the input)"
            )
    return items


def _model_items(model: str | None) -> list[str | None]:
    """One model per stage: a file whose name holds a comma is one model, not a chain."""
    if model is None:
        return []
    if "," not in model or Path(model).expanduser().is_file():
        return [model]
    return [item.strip() or None for item in model.split(",")]


def _nfe_items(nfe: str | None) -> list[int | None]:
    if nfe is None:
        return [None]
    values: list[int | None] = []
    for item in (item.strip() for item in nfe.split(",")):
        if not item:
            values.append(None)  # the stage's model's default
        elif item.isdigit() and 1 <= int(item) <= MAX_NFE:
            values.append(int(item))
        else:
            raise UsageError(
                f"--nfe {nfe}: {item!r} is not a number of network calls from 1 to {MAX_NFE}"
            )
    return values


def refuses_stochastic(meta: CheckpointMeta) -> bool:
    """Whether the stochastic sampler is refused for this model: `i2sb train` for the OT-ODE
    sampler alone (no --ot-ode-share below 1) feeds the network bridge states without noise, so
    the stochastic sampler's noisy states are inputs it never saw (NFE 10: ~11 dB, noise).
    Official checkpoints record no training and are not refused."""
    return meta.ot_ode and bool(meta.training) and meta.training.get("ot_ode_share", 1.0) == 1.0


def stage_sampling(
    meta: CheckpointMeta,
    spec: StageSpec,
    ot_ode: bool | None = None,
    detail: float | None = None,
    ensemble: int | None = None,
) -> Sampling:
    """The sampler settings of a stage running the model of `meta` for `spec`: the options
    given, the model's defaults for those left unset; the stochastic sampler refused for a
    model trained without noise (refuses_stochastic). A JPEG cleaning stage (spec.jpeg_only)
    runs at its model's defaults: the options are the user's for the stages asked for."""
    if spec.jpeg_only:
        ot_ode = detail = ensemble = None
    if ot_ode is False and refuses_stochastic(meta):
        raise UsageError(
            f"--stochastic: {meta.name} was trained for the OT-ODE sampler (no noise in its "
            "training inputs) and returns noise with the stochastic one; drop --stochastic"
        )
    return Sampling(
        nfe=spec.nfe or meta.default_nfe,
        ot_ode=meta.ot_ode if ot_ode is None else ot_ode,
        detail=meta.default_detail if detail is None else detail,
        ensemble=meta.default_ensemble if ensemble is None else ensemble,
    )


def make_stage(
    model: LoadedModel,
    spec: StageSpec,
    family: str,
    *,
    ot_ode: bool | None = None,
    detail: float | None = None,
    ensemble: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    upsampled: bool = False,
    model_sha256: str | None = None,
) -> Stage:
    """A stage running `model` for `spec`, the options left unset taken from the model (its
    sampler, detail, ensemble and NFE: stage_sampling; a tile of 512, or its training size for
    nets with attention)."""
    meta = model.meta
    tile = default_tile(meta.config) if tile is None else tile
    return Stage(
        model=model,
        family=family,
        sampling=stage_sampling(meta, spec, ot_ode, detail, ensemble),
        classical=classical_degradation(meta.start, meta.degradation, spec.task),
        start=model_start(model),
        model_sha256=model_sha256,
        tile=tile,
        tile_overlap=min(64, tile // 4) if tile_overlap is None else tile_overlap,
        upsampled=upsampled,
        jpeg_only=spec.jpeg_only,
    )


def stage_input(stage: Stage, previous: Tensor) -> Tensor:
    """The x1 of a stage after the first, from the previous stage's [B, 3, H, W] result: its
    picture clamped to [-1, 1], as if written to a file and read back (less the rounding)."""
    pixels = previous.clamp(-1, 1)
    # make_x1's classical starts take one picture at a time.
    return torch.cat(
        [
            make_x1(stage.family, row[None], classical=stage.classical, start=stage.start)
            for row in pixels
        ]
    )
