"""Exported torch programs as the sampler's model: TorchScript (.pt) and torch.export (.pt2).

Both take float32 (x_t, t[, x1]) and return float32, whatever their weights' precision (see
export.py), and carry the checkpoint's metadata in an extra file (metadata.py). A .pt2 program
is moved to the requested device on load; a TorchScript trace keeps the device it was traced on
baked into some of its constants, so it runs only on that device type.

A .pt2 archive cannot be loaded without unpickling: `torch.export.load` reads its example
inputs (and any pickled weights or constants) with `torch.load`, falling back to
`weights_only=False` when the restricted load fails, so a crafted archive runs code as it
loads. A TorchScript file is a program too: its graph runs as written, and TorchScript can call
operators that read and write files (`torch.from_file(..., shared=True)` overwrites one). Both
kinds are refused unless the caller trusts the file (`--trust-pickle`); checkpoints
(safetensors) and ONNX graphs hold data and fixed operators only and need no such trust.
"""

import warnings
from pathlib import Path

import torch

from ..bridge import make_schedule
from ..errors import CheckpointError, UsageError
from ..nets.denoiser import BridgeDenoiser, NetFn
from .metadata import EXTRA_FILE, ExportInfo, parse_extra_file
from .torch_backend import LoadedModel

TORCHSCRIPT_NOTE = (
    "TorchScript is deprecated in this torch; prefer an .onnx or .pt2 export (i2sb export)"
)


def _refuse(path: Path, why: str) -> None:
    raise CheckpointError(
        f"{path}: {why}; if you made it yourself or trust it, pass --trust-pickle, else use a "
        "checkpoint or an .onnx export"
    )


def _load_pt2(
    path: Path, device: torch.device, trust_pickle: bool
) -> tuple[torch.nn.Module, ExportInfo]:
    if not trust_pickle:
        _refuse(path, "a torch.export (.pt2) file is loaded with pickle, which can run code")
    files = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.load(str(path), extra_files=files)
    except Exception as exc:  # a corrupt archive fails deep in torch with many exception types
        raise CheckpointError(f"{path}: not a readable torch.export program ({exc})") from None
    info = parse_extra_file(files[EXTRA_FILE], source=str(path))
    if device.type != "cpu":
        program = torch.export.passes.move_to_device_pass(program, device)
    return program.module(), info


def _load_torchscript(
    path: Path, device: torch.device, trust_pickle: bool
) -> tuple[torch.nn.Module, ExportInfo]:
    if not trust_pickle:
        _refuse(path, "a TorchScript (.pt) file is a program that can read and write files")
    files = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # Deprecated, and said once as a note of the loaded model instead of a traceback line.
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=device, _extra_files=files)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable TorchScript file ({first})") from None
    info = parse_extra_file(files[EXTRA_FILE], source=str(path))
    traced_on = torch.device(info.device).type
    if traced_on != device.type:
        raise UsageError(
            f"{path} is a TorchScript trace made on {traced_on}, which cannot run on "
            f"{device.type}; export it with --device {device.type}, or use .pt2 or .onnx"
        )
    return module.eval(), info


def open_exported(
    path: Path, device: torch.device, *, trust_pickle: bool = False
) -> tuple[NetFn, ExportInfo]:
    """The program in `path` (.pt2 or TorchScript .pt) as a NetFn on `device`, with its info.

    Either is refused unless `trust_pickle` (see the module notes)."""
    if path.suffix.lower() == ".pt2":
        module, info = _load_pt2(path, device, trust_pickle)
    else:
        module, info = _load_torchscript(path, device, trust_pickle)

    def run(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        args = [x_t, t] if cond is None else [x_t, t, cond]
        return module(*(a.to(device, torch.float32) for a in args))

    return run, info


def load_exported_model(
    path: Path,
    device: torch.device,
    *,
    clip_denoise: bool | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """An exported .pt or .pt2 file as the sampler's model on `device` (only when
    `trust_pickle`)."""
    net, info = open_exported(path, device, trust_pickle=trust_pickle)
    if info.precision == "fp16" and device.type != "cuda":
        raise UsageError(f"{path} holds fp16 weights, which run on a CUDA GPU only")
    meta = info.meta
    schedule = make_schedule(meta.beta_max, meta.interval, meta.t0, meta.t1)
    clip = meta.clip_denoise if clip_denoise is None else clip_denoise
    notes = (TORCHSCRIPT_NOTE,) if info.format == "torchscript" else ()
    return LoadedModel(
        meta,
        schedule,
        BridgeDenoiser(net, schedule, clip_denoise=clip),
        meta.config.size_multiple,
        device,
        "torch",
        info.precision,
        notes,
    )
