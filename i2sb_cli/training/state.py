"""The resumable training state: one safetensors file, its tensors plus a JSON header.

`i2sb train -o runs/x.safetensors` keeps its state beside the model, in
`runs/x.state.safetensors` (`state_path_for`):

    tensors   net/<key>             the network's weights as trained (float32)
              ema/<key>             their EMA, the weights checkpoints hold (float32)
              optim/<i>/<name>      AdamW's state of parameter i (exp_avg, exp_avg_sq, step)
    metadata  "i2sb-train-state"    JSON: format, format_version, step (optimiser steps done),
                                    ema {decay, num_updates}, optimizer {param_groups},
                                    run {what defines the model and data: config, task(s),
                                    schedule, seed}, and `extra` (the recipe, wall time)

No generator state is stored: step k draws from seeds of (seed, rank, k) (see step.py), so the
step count is all a resumed run needs. safetensors cannot execute code, and the JSON holds
only plain values: no pickle is involved. The file is written to a temporary name and renamed
(pictures.files.atomic_write), so a crash while saving leaves the previous state whole.
"""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ..errors import CheckpointError
from ..pictures.files import atomic_write
from .step import TrainState

FORMAT = "i2sb-train-state"
FORMAT_VERSION = 1
METADATA_KEY = FORMAT
STATE_SUFFIX = ".state.safetensors"


def state_path_for(output: Path) -> Path:
    """Where the training state of a model file lives: `x.safetensors` -> `x.state.safetensors`."""
    stem = output.name.removesuffix(".safetensors")
    return output.with_name(stem + STATE_SUFFIX)


def save_state(path: Path, state: TrainState, run: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write `state` atomically; `run` and `extra` must be JSON-serialisable."""
    tensors = {f"net/{k}": v for k, v in state.net.state_dict().items()}
    tensors.update({f"ema/{k}": v for k, v in state.ema.shadow.items()})
    optimizer = state.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": state.step,
        "ema": {"decay": state.ema.decay, "num_updates": state.ema.num_updates},
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars},
        "run": run,
        "extra": extra,
    }
    data = save(
        {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
        metadata={METADATA_KEY: json.dumps(header)},
    )
    atomic_write(path, lambda file: file.write(data))


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a state file; a CheckpointError when it is not one we can read."""
    with _open(path) as handle:
        metadata = handle.metadata() or {}
    try:
        header = json.loads(metadata[METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is not an i2sb training state") from None
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: training state format {header.get('format_version')} is not the one this "
            f"i2sb reads ({FORMAT_VERSION})"
        )
    return header


def load_state(path: Path, state: TrainState) -> dict[str, Any]:
    """Load a saved state into `state` (same architecture) and return the file's header."""
    header = read_header(path)
    groups: dict[str, dict[str, torch.Tensor]] = {"net": {}, "ema": {}}
    optim: dict[int, dict[str, Any]] = {}
    with _open(path) as handle:
        try:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                kind, rest = key.split("/", 1)
                if kind == "optim":
                    index, name = rest.split("/", 1)
                    optim.setdefault(int(index), {})[name] = handle.get_tensor(key)
                else:
                    groups[kind][rest] = handle.get_tensor(key)
        except (SafetensorError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt training state ({exc})") from None
    for index, values in header["optimizer"]["scalars"].items():
        optim.setdefault(int(index), {}).update(values)
    try:
        state.net.load_state_dict(groups["net"], strict=True)
        for key, value in state.ema.shadow.items():
            value.copy_(groups["ema"][key])
        state.optimizer.load_state_dict(
            {"state": optim, "param_groups": header["optimizer"]["param_groups"]}
        )
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} does not fit this network ({first})") from None
    state.ema.decay = header["ema"]["decay"]
    state.ema.num_updates = header["ema"]["num_updates"]
    state.step = header["step"]
    return header


def _open(path: Path):
    if not path.is_file():
        raise CheckpointError(f"training state not found: {path}")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable training state ({exc})") from None
