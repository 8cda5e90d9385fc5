"""Official I2SB checkpoints (`latest.pt` + `options.pkl`) to our safetensors format.

Neither file is unpickled without restriction (docs/design.md decision 5): `latest.pt` goes through
`torch.load(weights_only=True)`, which builds only tensors and plain data, and `options.pkl`
through an unpickler that admits argparse.Namespace and path types and nothing else. The
sampling weights are the EMA's `shadow_params`, a list in the network's parameter order; that
order is the order of the `net` state dict's keys (ADM has no buffers), so each EMA tensor takes
the key at its position, and every shape must agree.
"""

import argparse
import dataclasses
import math
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from torch import Tensor

from ..degrade.tasks import TASKS
from ..errors import CheckpointError
from ..nets.adm import OFFICIAL_PREFIX, PRESET_NAMES, ADMUNet, UNetConfig, preset
from .checkpoint import CheckpointMeta

# The manifest's "import.format" of official I2SB folders.
OFFICIAL_FORMAT = "i2sb-official"
CHECKPOINT_FILE = "latest.pt"
OPTIONS_FILE = "options.pkl"

# Paths are rebuilt as pure paths: a PosixPath pickled on Linux cannot be instantiated on
# Windows, and the importer only reads them as text.
_PATH_TYPES = {
    "Path": PurePosixPath,
    "PosixPath": PurePosixPath,
    "PurePath": PurePosixPath,
    "PurePosixPath": PurePosixPath,
    "WindowsPath": PureWindowsPath,
    "PureWindowsPath": PureWindowsPath,
}
# Training options copied into the metadata. An allow-list: the official options also hold
# things like a W&B API key, which must never travel with a model.
_RECORDED_OPTIONS = (
    "name", "corrupt", "image_size", "beta_max", "ot_ode", "cond_x1", "add_x1_noise",
    "interval", "t0", "T", "clip_denoise", "batch_size", "microbatch", "num_itr", "lr",
    "lr_gamma", "lr_step", "l2_norm", "ema", "seed",
)  # fmt: skip
# Defaults of the official train.py, for options an older options.pkl may lack.
_DEFAULTS = {
    "image_size": 256, "t0": 1e-4, "T": 1.0, "interval": 1000, "beta_max": 0.3,
    "ot_ode": False, "clip_denoise": False, "cond_x1": False, "add_x1_noise": False,
}  # fmt: skip


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What an official folder holds, in our terms."""

    options: dict[str, Any]
    preset: str
    config: UNetConfig
    ema: dict[str, Tensor]
    ema_decay: float | None
    ema_updates: int | None


class _OptionsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        # Python 3.13 moved the path classes to pathlib._local.
        if module in ("pathlib", "pathlib._local") and name in _PATH_TYPES:
            return _PATH_TYPES[name]
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which i2sb does not load")


def official_files(source: Path) -> tuple[Path, Path]:
    """(latest.pt, options.pkl) from a folder, or from a checkpoint file with options beside it."""
    checkpoint = source / CHECKPOINT_FILE if source.is_dir() else source
    options = checkpoint.with_name(OPTIONS_FILE)
    for path in (checkpoint, options):
        if not path.is_file():
            raise CheckpointError(
                f"{path} not found: an official I2SB folder holds {CHECKPOINT_FILE} and "
                f"{OPTIONS_FILE}"
            )
    return checkpoint, options


def read_options(path: Path) -> dict[str, Any]:
    """The training options of an official `options.pkl`, checked, with defaults filled in."""
    try:
        with path.open("rb") as handle:
            namespace = _OptionsUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not an I2SB options file ({exc})") from None
    if not isinstance(namespace, argparse.Namespace):
        raise CheckpointError(f"{path}: not an I2SB options file (no argparse.Namespace)")
    options = {**_DEFAULTS, **vars(namespace)}
    problems = [
        (isinstance(options.get("corrupt"), str) and options["corrupt"] in TASKS,
         f"its task {options.get('corrupt')!r} is not one of {', '.join(TASKS)}"),
        (_number(options["beta_max"]) and options["beta_max"] > 0, "beta_max must be positive"),
        (_integer(options["interval"]) and options["interval"] >= 2, "bad interval"),
        (_number(options["t0"]) and _number(options["T"]), "t0 and T must be numbers"),
        (_integer(options["image_size"]) and options["image_size"] > 0, "bad image_size"),
        (all(isinstance(options[k], bool) for k in ("ot_ode", "cond_x1", "clip_denoise")),
         "ot_ode, cond_x1 and clip_denoise must be booleans"),
        (not options["add_x1_noise"], "add_x1_noise (the decolorisation setup) is not supported"),
    ]  # fmt: skip
    for ok, problem in problems:
        if not ok:
            raise CheckpointError(f"{path}: {problem}")
    return options


def _number(value: Any) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_official(source: Path, *, preset_name: str | None = None) -> OfficialCheckpoint:
    """Read an official folder (or latest.pt): options, architecture and the EMA weights.

    The architecture is the preset whose state-dict shapes the checkpoint matches (official
    checkpoints are adm256, conditioned when cond_x1), or `preset_name` when given.
    """
    checkpoint_path, options_path = official_files(source)
    options = read_options(options_path)
    blob = _load_tensors(checkpoint_path)
    net, ema = blob.get("net"), blob.get("ema")
    if not isinstance(net, Mapping) or not isinstance(ema, Mapping):
        raise CheckpointError(
            f"{checkpoint_path}: no 'net' and 'ema' entries; not an I2SB latest.pt"
        )
    keys = [our_key(k) for k in net]
    shadow = ema.get("shadow_params")
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(t, Tensor) for t in shadow):
        raise CheckpointError(f"{checkpoint_path}: the EMA has no shadow_params tensors")
    if len(shadow) != len(keys):
        raise CheckpointError(
            f"{checkpoint_path}: the EMA holds {len(shadow)} tensors but the network has "
            f"{len(keys)}; the checkpoint is incomplete or not from I2SB"
        )
    shapes = {k: tuple(t.shape) for k, t in zip(keys, net.values(), strict=True)}
    for position, (key, tensor) in enumerate(zip(keys, shadow, strict=True)):
        if tuple(tensor.shape) != shapes[key]:
            raise CheckpointError(
                f"{checkpoint_path}: EMA tensor {position} has shape {tuple(tensor.shape)}, but "
                f"parameter {key} has {shapes[key]}; the parameter order is not the official one"
            )
    name, config = match_preset(shapes, options["cond_x1"], preset_name, checkpoint_path)
    config = dataclasses.replace(config, image_size=options["image_size"])
    decay, updates = ema.get("decay"), ema.get("num_updates")
    return OfficialCheckpoint(
        options=options,
        preset=name,
        config=config,
        ema={k: t.float() for k, t in zip(keys, shadow, strict=True)},
        ema_decay=float(decay) if _number(decay) else None,
        ema_updates=int(updates) if _integer(updates) else None,
    )


def _load_tensors(path: Path) -> Mapping[str, Any]:
    try:
        # torch warns on stderr before it fails on some files (a TorchScript archive); the
        # failure is reported in one line, so the warning would only add lines before it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Memory-mapped where the format allows: latest.pt also holds the optimiser state
            # (several GB for adm256), which is never read.
            blob = torch.load(
                path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
            )
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: holds more than tensors and plain data, which i2sb does not load "
            f"({_first_line(exc)})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})"
        ) from None
    if not isinstance(blob, Mapping):
        raise CheckpointError(f"{path}: not an I2SB latest.pt (a {type(blob).__name__})")
    return blob


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes


def _first_line(exc: BaseException) -> str:
    """torch's messages span lines and carry terminal colour codes; the first line says it."""
    text = _ANSI.sub("", str(exc)).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def our_key(key: str) -> str:
    key = key.removeprefix("module.")  # saved from a DistributedDataParallel wrapper
    return key.removeprefix(OFFICIAL_PREFIX)


def match_preset(
    shapes: dict[str, tuple[int, ...]], cond_x1: bool, requested: str | None, source: Path
) -> tuple[str, UNetConfig]:
    names = [requested] if requested else list(PRESET_NAMES)
    for name in names:
        config = preset(name, conditioned=cond_x1)
        with torch.device("meta"):
            expected = {k: tuple(t.shape) for k, t in ADMUNet(config).state_dict().items()}
        if expected == shapes:
            return name, config
    tried = ", ".join(names)
    raise CheckpointError(
        f"{source}: the network matches no known architecture (tried {tried}, "
        f"cond_x1={cond_x1}); pass --preset if it was trained with another one"
    )


def official_meta(
    official: OfficialCheckpoint,
    *,
    name: str,
    licence: str,
    provenance: str,
    default_nfe: int,
) -> CheckpointMeta:
    """Our metadata for an official checkpoint: its own schedule options, and where it came
    from; `default_nfe` is capped below the interval."""
    o = official.options
    training = {
        "source": "official I2SB latest.pt (EMA weights)",
        "preset": official.preset,
        "ema_decay": official.ema_decay,
        "ema_num_updates": official.ema_updates,
        "options": {k: _json_safe(o[k]) for k in _RECORDED_OPTIONS if k in o},
    }
    return CheckpointMeta(
        name=name,
        config=official.config,
        task=o["corrupt"],
        beta_max=float(o["beta_max"]),
        ot_ode=o["ot_ode"],
        cond_x1=o["cond_x1"],
        interval=o["interval"],
        t0=float(o["t0"]),
        t1=float(o["T"]),
        default_nfe=min(default_nfe, o["interval"] - 1),
        # The official sample.py clamps x0_hat only when asked (--clip-denoise, off by
        # default), whatever the training options say: restore --clip-denoise asks.
        clip_denoise=False,
        licence=licence,
        provenance=provenance,
        training=training,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
