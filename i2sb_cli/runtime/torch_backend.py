"""The PyTorch backend: a checkpoint file in, a `denoise` callable on a device out.

Fast paths, each on by default only where it was measured faster (README "Speed"):
- `torch.inference_mode` around every network call (BridgeDenoiser);
- channels_last memory format: on the CPU (1.2x with sr4x-tiny, benchmarks/cpu.md) and for
  bf16/fp16 on CUDA, whose tensor-core convolutions want NHWC; `channels_last=...` forces it;
- `compile=True`: torch.compile, with CUDA graphs on CUDA ("reduce-overhead": tiles give the
  static shapes they need); off by default, since on the CPU it never repays its compile time;
- `precision` bf16/fp16 casts the convolutions and linear layers, keeping GroupNorm in float32 as
  ADM's own fp16 mode does (casting weights, not autocast, which casts at every op). fp16 is
  refused on the CPU; bf16 runs there, about 2x faster than fp32 on CPUs with AMX, and stays
  opt-in because it changes the numbers (benchmarks/cpu.md).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..bridge import Denoise, Schedule, make_schedule
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta, load_checkpoint
from ..nets.adm import ADMUNet
from ..nets.denoiser import BridgeDenoiser, NetFn

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """Everything the sampler needs from a checkpoint or an exported network."""

    meta: CheckpointMeta
    schedule: Schedule
    denoise: Denoise
    size_multiple: int
    device: torch.device
    """Where the sampler's tensors live (the CPU for ONNX Runtime without a CUDA torch)."""
    backend: str = "torch"
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    """One-line remarks for the user (a fallback taken, an export cached), printed by the CLI."""
    start: Callable[[Tensor], Tensor] | None = None
    """The start network its checkpoint names (nets/starts.py), in this runtime where that is
    not PyTorch (start_export.py: ONNX Runtime), untiled: [B, 3, h, w] to [B, 3, 4h, 4w] in
    [-1, 1]. None: PyTorch runs it (restoring/start.py), or the checkpoint names none."""


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


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of `precision`, or a UsageError where the device cannot run it."""
    if precision not in DTYPES:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA GPU; on the CPU use fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--precision bf16: this GPU has no bfloat16 support; use fp16")
    return DTYPES[precision]


def cast_network(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the convolutions and linear layers to `dtype` in place; norms stay float32.

    GroupNorm32 computes in float32 and returns the input's dtype, so the activations between
    layers are `dtype` while the statistics keep full precision (guided-diffusion's fp16 mode).
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.to(dtype)
    return net


def use_channels_last(device: torch.device, precision: str, requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return device.type == "cpu" or precision != "fp32"


def _run_net(
    net: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool
) -> NetFn:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def run(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x_t = x_t.to(device, dtype, memory_format=memory_format)
        if cond is not None:
            cond = cond.to(device, dtype, memory_format=memory_format)
        out = net(x_t, t.to(device, torch.float32), cond)
        # The sampler works in float32 and in the default layout, whatever the net used.
        return out.to(torch.float32, memory_format=torch.contiguous_format)

    return run


def wrap_network(
    net: ADMUNet,
    meta: CheckpointMeta,
    device: torch.device,
    *,
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
    clip_denoise: bool | None = None,
) -> LoadedModel:
    """Turn a float32 network into the sampler's model with the requested fast paths."""
    dtype = check_precision(precision, device)
    net = net.to(device).eval()
    if dtype != torch.float32:
        cast_network(net, dtype)
    nhwc = use_channels_last(device, precision, channels_last)
    if nhwc:
        net = net.to(memory_format=torch.channels_last)
    runner: nn.Module = net
    if compile:
        mode = "reduce-overhead" if device.type == "cuda" else None
        runner = torch.compile(net, mode=mode)
    schedule = make_schedule(meta.beta_max, meta.interval, meta.t0, meta.t1)
    clip = meta.clip_denoise if clip_denoise is None else clip_denoise
    denoise = BridgeDenoiser(_run_net(runner, device, dtype, nhwc), schedule, clip_denoise=clip)
    return LoadedModel(
        meta, schedule, denoise, meta.config.size_multiple, device, "torch", precision
    )


def load_torch_model(
    path: Path,
    device: torch.device,
    *,
    clip_denoise: bool | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
) -> LoadedModel:
    """Load a checkpoint onto `device` and wrap it as the sampler's denoise callable."""
    check_precision(precision, device)  # before the weights are read: a usage error is cheap
    net, meta = load_checkpoint(path, "cpu")
    return wrap_network(
        net,
        meta,
        device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        clip_denoise=clip_denoise,
    )
