"""The ONNX Runtime backend: an `i2sb export` .onnx file in, the same `denoise` callable out.

The session computes the network only; the bridge (schedule, sampler, tiling) stays in torch,
so a picture restores the same with either backend up to float rounding (docs/design.md decision 1).
The CUDA execution provider is used where it really loads: onnxruntime-gpu lists it as
available even without CUDA libraries or a GPU, and ORT then falls back to the CPU on its own,
so the session's providers are checked after it is created. On CUDA, inputs and outputs stay
on the GPU through I/O binding when torch has CUDA too; otherwise they pass through numpy.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bridge import make_schedule
from ..errors import CheckpointError, UsageError
from ..nets.denoiser import BridgeDenoiser
from .metadata import ExportInfo, read_metadata
from .torch_backend import LoadedModel

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# ORT's own severity scale: 3 is error, 4 fatal. A CUDA provider that cannot load logs an error
# before ORT falls back to the CPU; that case is reported here as a one-line notice instead.
_QUIET = 4


def import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(
            "the onnxruntime backend needs ONNX Runtime: pip install 'i2sb[onnx]'"
        ) from None
    return onnxruntime


@dataclass
class OnnxNet:
    """A session as the denoiser's NetFn: net(x_t, t, cond) -> output, all float32."""

    session: Any
    info: ExportInfo
    device: torch.device
    """Where inputs are expected and outputs returned."""

    def __post_init__(self) -> None:
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self.on_cuda = self.session.get_providers()[0] == CUDA

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        feeds = [x_t, t] if cond is None else [x_t, t, cond]
        if len(feeds) != len(self.input_names):
            raise ValueError(f"the network takes {self.input_names}, got {len(feeds)} inputs")
        if self.device.type == "cuda":
            return self._bound(feeds)
        arrays = {
            name: feed.detach().to("cpu", torch.float32).contiguous().numpy()
            for name, feed in zip(self.input_names, feeds, strict=True)
        }
        (out,) = self.session.run([self.output_name], arrays)
        return torch.from_numpy(out)

    def _bound(self, feeds: list[torch.Tensor]) -> torch.Tensor:
        """Run on torch's CUDA tensors in place, without copies through the host."""
        index = self.device.index or 0
        feeds = [f.detach().to(self.device, torch.float32).contiguous() for f in feeds]
        x_t = feeds[0]
        out_channels = self.info.meta.config.out_channels
        out = torch.empty((x_t.shape[0], out_channels, *x_t.shape[2:]), device=self.device)
        binding = self.session.io_binding()
        for name, feed in zip(self.input_names, feeds, strict=True):
            binding.bind_input(name, "cuda", index, np.float32, tuple(feed.shape), feed.data_ptr())
        binding.bind_output(
            self.output_name, "cuda", index, np.float32, tuple(out.shape), out.data_ptr()
        )
        # ORT computes on its own stream: the inputs torch queued must be ready first. The run
        # itself returns once ORT's stream is done.
        torch.cuda.synchronize(self.device)
        self.session.run_with_iobinding(binding)
        return out


def _wants_cuda(ort: Any, spec: str) -> tuple[bool, int]:
    """Whether `--device spec` asks for ORT's CUDA provider (auto: where it is listed), and
    which GPU."""
    auto_cuda = spec == "auto" and CUDA in ort.get_available_providers()
    index = (torch.device(spec).index or 0) if spec.startswith("cuda") else 0
    return spec.startswith("cuda") or auto_cuda, index


def open_session(path: Path, spec: str, *, threads: int | None = None) -> Any:
    """A session on `path` with i2sb's options, on the CUDA provider where `--device spec`
    asks for it and on the CPU's otherwise (ORT falls back to the CPU on its own)."""
    ort = import_ort()
    want_cuda, index = _wants_cuda(ort, spec)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One knob for both backends: torch's thread count (i2sb benchmark --threads sets it).
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Spinning workers would keep the cores busy between runs, where the sampler's torch ops
    # need them: measured on 2 cores, no slower per call, and half the time outside the net.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The memory pattern keeps one planned block per input shape for the session's life:
    # measured no faster, and it doubled the peak memory of a tiled 4096x4096 restore.
    options.enable_mem_pattern = False
    providers: list[Any] = [CPU]
    if want_cuda:
        providers.insert(0, (CUDA, {"device_id": index}))
    ort.set_default_logger_severity(_QUIET)
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own unexported exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({first})") from None
    finally:
        ort.set_default_logger_severity(2)
    return session


def open_onnx(
    path: Path, device: str | torch.device = "auto", *, threads: int | None = None
) -> tuple[OnnxNet, list[str]]:
    """A session on the best provider `device` allows, and notes about fallbacks taken."""
    spec = str(device)
    session = open_session(path, spec, threads=threads)
    want_cuda, index = _wants_cuda(import_ort(), spec)
    info = read_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    notes: list[str] = []
    on_cuda = session.get_providers()[0] == CUDA
    # With --device auto nobody asked for CUDA: the CPU is the answer, not news (onnxruntime-gpu
    # lists its CUDA provider even where no GPU or CUDA library exists).
    if want_cuda and not on_cuda and spec.startswith("cuda"):
        raise UsageError(
            f"--device {spec}: ONNX Runtime's CUDA provider does not load here (it needs "
            "onnxruntime-gpu, a GPU, and CUDA and cuDNN libraries); use --device cpu"
        )
    # Torch tensors can be bound on the GPU only where torch itself has CUDA.
    bound = on_cuda and torch.cuda.is_available()
    sampler_device = torch.device("cuda", index) if bound else torch.device("cpu")
    return OnnxNet(session, info, sampler_device), notes


def load_onnx_model(
    path: Path,
    device: str | torch.device = "auto",
    *,
    clip_denoise: bool | None = None,
    threads: int | None = None,
) -> LoadedModel:
    """An exported .onnx file as the sampler's model."""
    net, notes = open_onnx(path, device, threads=threads)
    if net.info.precision == "fp16" and not net.on_cuda:
        # ORT's CPU provider runs fp16 graphs, but through casts and slower than fp32.
        raise UsageError(f"{path} is an fp16 export, made for GPUs; export without --fp16")
    meta = net.info.meta
    schedule = make_schedule(meta.beta_max, meta.interval, meta.t0, meta.t1)
    clip = meta.clip_denoise if clip_denoise is None else clip_denoise
    denoise = BridgeDenoiser(net, schedule, clip_denoise=clip)
    if net.on_cuda and net.device.type == "cpu":
        notes.append("ONNX Runtime runs on CUDA; the sampler runs on the CPU (torch has no CUDA)")
    return LoadedModel(
        meta,
        schedule,
        denoise,
        meta.config.size_multiple,
        net.device,
        "onnxruntime",
        net.info.precision,
        tuple(notes),
    )
