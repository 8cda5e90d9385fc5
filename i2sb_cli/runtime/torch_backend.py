"""The PyTorch backend: a checkpoint file in, a `denoise` callable on a device out."""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..bridge import Denoise, Schedule, make_schedule
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta, load_checkpoint
from ..nets.adm import ADMUNet
from ..nets.denoiser import BridgeDenoiser


@dataclass(frozen=True)
class LoadedModel:
    """Everything the sampler needs from a checkpoint."""

    meta: CheckpointMeta
    schedule: Schedule
    denoise: Denoise
    size_multiple: int
    device: torch.device


def resolve_device(spec: str) -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` to a usable device; a UsageError names --device."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(
            f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif device.type != "cpu":
        raise UsageError(f"--device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def _run_net(net: ADMUNet, device: torch.device):
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format

    def run(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        # channels_last is a free 1.3-1.7x for convolutions on CPU (see STACK.md).
        x_t = x_t.to(device, memory_format=memory_format)
        if cond is not None:
            cond = cond.to(device, memory_format=memory_format)
        return net(x_t, t.to(device), cond).contiguous()

    return run


def load_torch_model(
    path: Path, device: torch.device, *, clip_denoise: bool | None = None
) -> LoadedModel:
    """Load a checkpoint onto `device` and wrap it as the sampler's denoise callable."""
    net, meta = load_checkpoint(path, device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    schedule = make_schedule(meta.beta_max, meta.interval, meta.t0, meta.t1)
    clip = meta.clip_denoise if clip_denoise is None else clip_denoise
    denoise = BridgeDenoiser(_run_net(net, device), schedule, clip_denoise=clip)
    return LoadedModel(meta, schedule, denoise, meta.config.size_multiple, device)
