"""Preparing a run's models: where each stage's checkpoint is, what it holds, and each loaded.

`i2sb restore`, `i2sb benchmark` and the Python API (`i2sb_cli.api`) take their models through
here, so that a run resolves each model once (a name may mean a download), hashes each file
once (the sha256 that outputs record is also the key of the ONNX export cache, so the runtime
is handed it rather than hashing the file again) and loads each once however many stages run
it; and so that every caller checks a model against its options the same way: its family, its
NFE, the inpainting options, and the stochastic sampler refused for a model trained without
noise (chain.refuses_stochastic).

Two steps, because a mistake should be reported before anything loads: `locate_stages` finds
each checkpoint and, where the file tells without loading the network, its metadata, checked
against the stage's task and NFE (a dry run stops there); `prepare_stages` loads and checks.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..degrade.tasks import TASKS, family_of
from ..errors import CheckpointError, UsageError
from ..models.cache import OfflineError, is_offline, sha256_file
from ..models.checkpoint import CheckpointMeta, read_meta
from ..models.registry import resolve_model
from ..runtime.torch_backend import LoadedModel
from .chain import Stage, StageSpec, make_stage

Load = Callable[[Path, str | None], LoadedModel]
"""Loads a checkpoint, given its sha256 (None when the file could not be hashed)."""


@dataclass(frozen=True)
class Located:
    """Where one stage's model is, before anything loads."""

    spec: StageSpec
    checkpoint: Path | None
    """None: a download that a dry run leaves to the real run."""
    meta: CheckpointMeta | None
    """The metadata, when the file gives it without loading the network (a safetensors
    checkpoint; not an export, not a download still to be made)."""


def locate_model(
    model: str | None,
    task: str | None,
    cache_dir: Path | None,
    offline: bool | None,
    *,
    dry_run: bool,
) -> tuple[Path | None, CheckpointMeta | None]:
    """The checkpoint (None: a download a dry run leaves to the real one) and its metadata when
    the file gives it without loading the net (a safetensors checkpoint; not an export)."""
    try:
        checkpoint = resolve_model(
            model, task, cache_dir=cache_dir, offline=True if dry_run else offline
        )
    except OfflineError:
        if not dry_run or is_offline(offline):
            raise
        return None, None
    try:
        return checkpoint, read_meta(checkpoint)
    except CheckpointError:
        return checkpoint, None


def check_model(
    meta: CheckpointMeta, task: str | None, nfe: int | None, masking: Mapping[str, bool]
) -> str:
    """The task family the model restores, once the options are checked against it
    (`masking`: whether each inpainting option was given, by the name the caller knows it by)."""
    family = family_of(task or meta.task)
    if family != family_of(meta.task):
        raise UsageError(
            f"--model {meta.name} restores {meta.task} pictures, not the {family} family"
        )
    for name, given in masking.items():
        if given and family != "inpaint":
            raise UsageError(f"{name} is for inpainting; {meta.name} does {meta.task}")
    if nfe is not None and nfe >= meta.interval:
        raise UsageError(f"--nfe must be less than the model's interval {meta.interval}, not {nfe}")
    return family


def untrained_task_note(meta: CheckpointMeta, task: str | None) -> str | None:
    """A note when `task` names a paper degradation the model was not trained on (the bundled
    sr4x model restores sr4x-pool, trained on sr4x-bicubic alone): it runs, a user should know."""
    if task not in TASKS:
        return None
    trained = list((meta.training or {}).get("tasks") or [meta.task])
    if task in trained:
        return None
    return (
        f"{meta.name} was trained on {', '.join(trained)}, not {task}; it may restore it less well"
    )


def locate_stages(
    chain: Sequence[StageSpec],
    cache_dir: Path | None,
    offline: bool | None,
    *,
    dry_run: bool,
    masking: Mapping[str, bool] | None = None,
) -> list[Located]:
    """Each stage's checkpoint and, where readable without loading, its metadata, checked
    against the stage's task and NFE (and the first stage's against `masking`, whether each
    inpainting option was given), so that a mistake is reported before anything loads. Stages
    that name the same model resolve it once. A dry run downloads nothing (locate_model)."""
    found: dict[tuple[str | None, str | None], tuple[Path | None, CheckpointMeta | None]] = {}
    located = []
    for index, spec in enumerate(chain):
        # A model named is the same file whatever the task; without one, the task picks it.
        key = (spec.model, None) if spec.model is not None else (None, spec.task)
        if key not in found:
            found[key] = locate_model(spec.model, spec.task, cache_dir, offline, dry_run=dry_run)
        checkpoint, meta = found[key]
        if meta is not None:
            check_model(meta, spec.task, spec.nfe, (masking or {}) if index == 0 else {})
        located.append(Located(spec, checkpoint, meta))
    return located


def checkpoint_digests(located: Sequence[Located]) -> dict[Path, str | None]:
    """The sha256 of each distinct checkpoint, hashed once (None for a file that cannot be
    read: loading it then says why, in the loader's words)."""
    digests: dict[Path, str | None] = {}
    for where in located:
        path = where.checkpoint
        if path is None:
            raise ValueError("a dry run's plan has a model still to download: nothing to hash")
        if path not in digests:
            try:
                digests[path] = sha256_file(path)
            except OSError:
                digests[path] = None
    return digests


def prepare_stages(
    located: Sequence[Located],
    load: Load,
    *,
    masking: Mapping[str, bool] | None = None,
    sampling: Mapping[str, Any] | None = None,
    upsampled: bool = False,
    on_note: Callable[[str], None] | None = None,
    digests: Mapping[Path, str | None] | None = None,
) -> list[Stage]:
    """The stages of `located`, each model loaded once (`load`, given the checkpoint's sha256)
    however many stages run it, and checked against the options: its family and NFE, the
    inpainting options (`masking`, for the first stage), the sampler options (`sampling`:
    make_stage's ot_ode, detail, ensemble, tile, tile_overlap; the stochastic sampler refused
    for a model trained without noise). `upsampled` describes the input picture, so the first
    stage's. `on_note` hears a stage whose paper task its model was not trained on, after that
    stage's model loaded. `digests` are sha256s known already (checkpoint_digests), for callers
    that prepare the same models more than once in a run; None hashes each checkpoint now."""
    digests = checkpoint_digests(located) if digests is None else digests
    loaded: dict[Path, LoadedModel] = {}
    stages = []
    for index, where in enumerate(located):
        spec, path = where.spec, where.checkpoint
        if path is None:
            raise ValueError("a dry run's plan has a model still to download: nothing to load")
        if path not in loaded:
            loaded[path] = load(path, digests[path])
        model = loaded[path]
        family = check_model(model.meta, spec.task, spec.nfe, (masking or {}) if index == 0 else {})
        note = untrained_task_note(model.meta, spec.task)
        if note is not None and on_note is not None:
            on_note(note)
        stage = make_stage(
            model,
            spec,
            family,
            upsampled=upsampled and index == 0,
            model_sha256=digests[path],
            **(sampling or {}),
        )
        stages.append(stage)
    return stages
