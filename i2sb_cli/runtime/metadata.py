"""What an exported network carries about itself, so that it samples without its checkpoint.

Every format stores the same string map: ONNX in the model's `metadata_props`, TorchScript and
torch.export (.pt2) files in an extra file `i2sb.json`. The key "i2sb" holds the checkpoint's
whole metadata (architecture, task, schedule, licence...), which is what i2sb reads back; the
"i2sb.*" keys repeat the few values another runtime needs to run the bridge, one plain value
each, so that a C++ or JavaScript program can sample without parsing nested JSON.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .. import __version__
from ..errors import CheckpointError
from ..models.checkpoint import METADATA_KEY, CheckpointMeta
from ..nets.adm import UNetConfig

EXTRA_FILE = "i2sb.json"
FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}


def default_tile(config: UNetConfig) -> int:
    """The tile size restore uses: 512, or the training size for nets with attention, whose
    cost grows with the square of the picture's area (rounded up to the network's size
    multiple, so that a model's own default is always a tile it can run)."""
    if not config.attention_resolutions:
        return 512
    multiple = config.size_multiple
    return -(-config.image_size // multiple) * multiple


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file says about itself."""

    meta: CheckpointMeta
    format: str
    precision: str
    """The weights' precision; inputs and outputs are float32 whatever it is."""
    device: str
    """Where it was exported: TorchScript programs stay on that device type."""
    tile: int


def export_metadata(meta: CheckpointMeta, *, fmt: str, precision: str, device: str) -> dict:
    """The string map to embed in an exported file of format `fmt`."""
    inputs = "x_t,t,x1" if meta.cond_x1 else "x_t,t"
    return {
        METADATA_KEY: meta.to_json(),
        "i2sb.format": fmt,
        "i2sb.name": meta.name,
        "i2sb.task": meta.task,
        "i2sb.beta_max": repr(float(meta.beta_max)),
        "i2sb.ot_ode": json.dumps(meta.ot_ode),
        "i2sb.cond_x1": json.dumps(meta.cond_x1),
        "i2sb.condition": meta.condition,
        "i2sb.interval": str(meta.interval),
        "i2sb.t0": repr(float(meta.t0)),
        "i2sb.t1": repr(float(meta.t1)),
        "i2sb.default_nfe": str(meta.default_nfe),
        "i2sb.default_detail": repr(float(meta.default_detail)),
        "i2sb.default_ensemble": str(meta.default_ensemble),
        "i2sb.clip_denoise": json.dumps(meta.clip_denoise),
        "i2sb.start": meta.start,
        "i2sb.degradation": meta.degradation,
        "i2sb.size_multiple": str(meta.config.size_multiple),
        "i2sb.tile": str(default_tile(meta.config)),
        "i2sb.precision": precision,
        "i2sb.device": device,
        "i2sb.inputs": inputs,
        "i2sb.input_layout": _layout(meta),
        "i2sb.output": "float32 [B, 3, H, W]: (x_t - x0) / std_fwd[n]",
        "i2sb.licence": meta.licence,
        "i2sb.exported_by": f"i2sb {__version__}, torch {torch.__version__}",
    }


def _layout(meta: CheckpointMeta) -> str:
    x1 = "x1: float32 [B, 3, H, W] in [-1, 1]"
    if meta.condition == "jpeg-quality":
        x1 = (
            "x1: float32 [B, 4, H, W], the degraded picture in [-1, 1] and a constant plane "
            "q / 50 - 1 of its JPEG quality q"
        )
    times = (
        "t: float32 [B], the time level noise_levels[n] = (t0 + (t1 - t0) n / (interval - 1)) "
        "* interval"
    )
    if not meta.cond_x1:
        return f"x_t: float32 [B, 3, H, W] in [-1, 1]; {times}"
    return f"x_t: float32 [B, 3, H, W] in [-1, 1]; {x1}; {times}"


def read_metadata(props: Mapping[str, str], *, source: str) -> ExportInfo:
    """Parse an exported file's string map; a file i2sb did not export is a CheckpointError."""
    if METADATA_KEY not in props:
        raise CheckpointError(
            f"{source}: no i2sb metadata; only files written by `i2sb export` can be run"
        )
    meta = CheckpointMeta.from_json(props[METADATA_KEY], source=source)
    try:
        tile = int(props.get("i2sb.tile", default_tile(meta.config)))
    except ValueError:
        raise CheckpointError(f"{source}: i2sb.tile is not a number") from None
    return ExportInfo(
        meta=meta,
        format=props.get("i2sb.format", "unknown"),
        precision=props.get("i2sb.precision", "fp32"),
        device=props.get("i2sb.device", "cpu"),
        tile=tile,
    )


def extra_file(props: Mapping[str, str]) -> str:
    """The map as the JSON text of TorchScript's and torch.export's extra file."""
    return json.dumps(dict(props), indent=1)


def parse_extra_file(text: str | bytes, *, source: str) -> ExportInfo:
    try:
        props = json.loads(text or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{source}: its {EXTRA_FILE} is not valid JSON") from None
    if not isinstance(props, dict):
        raise CheckpointError(f"{source}: its {EXTRA_FILE} is not a JSON object")
    return read_metadata(props, source=source)
