"""Exporting a bridge network to ONNX, TorchScript or torch.export (.pt2), checked for parity.

The exported program is the network alone, net(x_t, t[, x1]) -> (x_t - x0) / std_fwd[n], with
float32 inputs and output whatever the weights' precision, dynamic batch, height and width
(multiples of the net's size multiple), and the checkpoint's metadata embedded
(runtime/metadata.py): the bridge itself stays in i2sb or in whatever program samples with it.

Each export is written into a temporary folder beside its destination, loaded back through
the runtime that will run it, compared with the PyTorch network on random inputs at two sizes
and two time levels, and moved into place only when every case is within the tolerance.
"""

import contextlib
import copy
import logging
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

from .. import __version__
from ..bridge import make_schedule
from ..errors import CheckpointError, UsageError
from ..models.cache import cache_root, record_sha256, recorded_sha256, sha256_file
from ..models.checkpoint import CheckpointMeta, load_checkpoint
from ..nets.adm import ADMUNet
from .metadata import EXTRA_FILE, FORMATS, SUFFIXES, export_metadata, extra_file
from .torch_backend import cast_network

# Relative to the largest output value. fp32 leaves room for TF32 convolutions on CUDA (the CPU
# runtimes agree to about 1e-6); fp16 weights and activations carry about 3 significant digits.
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}
# Over this, ONNX's 2 GB protobuf limit needs the weights in a separate FILE.data.
_SINGLE_FILE_BYTES = 1_800_000_000


class ExportNet(nn.Module):
    """The network as exported: float32 (x_t, t[, x1]) in, float32 out, whatever the weights."""

    def __init__(self, net: ADMUNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x_t: Tensor, t: Tensor, x1: Tensor | None = None) -> Tensor:
        cond = None if x1 is None else x1.to(self.dtype)
        return self.net(x_t.to(self.dtype), t, cond).float()


@dataclass(frozen=True)
class ParityCase:
    batch: int
    height: int
    width: int
    t: float
    max_abs: float
    relative: float
    """max_abs over the largest absolute value of the PyTorch output."""


@dataclass(frozen=True)
class ParityReport:
    format: str
    precision: str
    tolerance: float
    cases: tuple[ParityCase, ...]

    @property
    def ok(self) -> bool:
        return all(case.relative <= self.tolerance for case in self.cases)


def check_output_name(output: Path, fmt: str) -> None:
    """The runtimes pick by suffix, so an export must carry its format's."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if output.suffix.lower() != SUFFIXES[fmt]:
        raise UsageError(
            f"-o {output}: a {fmt} export must end in {SUFFIXES[fmt]}, which is how i2sb "
            "knows how to run it"
        )


def export_network(
    net: ADMUNet,
    meta: CheckpointMeta,
    fmt: str,
    output: Path,
    *,
    fp16: bool = False,
    device: torch.device | None = None,
    tolerance: float | None = None,
) -> ParityReport:
    """Export a float32 `net` to `output`, check it, and keep it only if the check passes.

    Returns the parity report; when `report.ok` is False nothing was written.
    """
    check_output_name(output, fmt)
    device = device or torch.device("cpu")
    precision = "fp16" if fp16 else "fp32"
    net = net.float().eval().cpu()
    # A copy, cast and moved as the target wants; `net` stays the float32 CPU reference.
    copied = copy.deepcopy(net)
    if fp16:
        program = ExportNet(cast_network(copied, torch.float16), torch.float16)
    else:
        program = ExportNet(copied)
    props = export_metadata(meta, fmt=fmt, precision=precision, device=device.type)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        staged = staging / output.name
        _WRITERS[fmt](program.to(device).eval(), meta, staged, props, device)
        limit = TOLERANCE[precision] if tolerance is None else tolerance
        report = check_parity(net, meta, staged, fmt, precision, device, limit)
        if report.ok:
            # FILE and, for large ONNX models, its FILE.data: both keep their names.
            for part in staging.iterdir():
                os.replace(part, output.parent / part.name)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _dynamic_shapes(meta: CheckpointMeta) -> tuple:
    m = meta.config.size_multiple
    batch = torch.export.Dim("batch", min=1, max=4096)
    # Height and width are declared as multiples of m, which the network requires.
    height = m * torch.export.Dim("height_units", min=1, max=16384 // m)
    width = m * torch.export.Dim("width_units", min=1, max=16384 // m)
    image = {0: batch, 2: height, 3: width}
    return (image, {0: batch}, image) if meta.cond_x1 else (image, {0: batch})


def _example(meta: CheckpointMeta, device: torch.device) -> tuple[Tensor, ...]:
    # Batch 2 and a side over 1 unit: torch.export would specialise dimensions of size 1.
    side = 2 * max(meta.config.size_multiple, 16)
    x = torch.randn(2, meta.config.out_channels, side, side, device=device)
    t = torch.tensor([0.3, 0.7], device=device) * meta.interval
    cond = meta.network_cond(x.clone())
    return (x, t) if cond is None else (x, t, cond)


def _torch_export(program: ExportNet, meta: CheckpointMeta, device: torch.device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
        return torch.export.export(
            program, _example(meta, device), dynamic_shapes=_dynamic_shapes(meta)
        )


def _math_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    # The ONNX exporter translates only 4-D scaled_dot_product_attention; ADM's legacy attention
    # is 3-D ([batch * heads, tokens, channels]), so it is spelled out as what it computes.
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1) @ v


def check_onnx_exporter() -> None:
    """The exporter needs onnxscript: say so before it fails deep inside torch."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise UsageError("ONNX export needs onnxscript: pip install 'i2sb[onnx]'") from None


def to_onnx(exported: torch.export.ExportedProgram, **options: Any):
    """torch.onnx.export of an exported program (dynamo), without the exporter's chatter: its
    warnings about torchvision ops we never use, and torch's own deprecations."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(exported, dynamo=True, verbose=False, **options)
    finally:
        onnx_logger.setLevel(level)


def _write_onnx(program, meta, path, props, device) -> None:
    check_onnx_exporter()
    exported = _torch_export(program.cpu(), meta, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        exported = exported.run_decompositions(
            {torch.ops.aten.scaled_dot_product_attention.default: _math_attention}
        )
    names = ["x_t", "t", "x1"] if meta.cond_x1 else ["x_t", "t"]
    converted = to_onnx(exported, input_names=names, output_names=["out"])
    converted.model.metadata_props.update(props)
    size = sum(p.numel() * p.element_size() for p in program.parameters())
    converted.save(str(path), external_data=size > _SINGLE_FILE_BYTES)


def _write_torchscript(program, meta, path, props, device) -> None:
    with warnings.catch_warnings():
        # Tracer warnings flag Python-side shape checks, which the trace drops; the parity
        # check at other sizes than the example's proves the trace general.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(program, _example(meta, device), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: extra_file(props)})


def _write_pt2(program, meta, path, props, device) -> None:
    exported = _torch_export(program.cpu(), meta, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.export.save(exported, str(path), extra_files={EXTRA_FILE: extra_file(props)})


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript, "pt2": _write_pt2}


def parity_inputs(meta: CheckpointMeta) -> list[tuple[Tensor, Tensor, Tensor | None]]:
    """Random (x_t, t, cond) at two sizes (neither the export example's) and two time levels."""
    unit = max(meta.config.size_multiple, 16)
    levels = make_schedule(meta.beta_max, meta.interval, meta.t0, meta.t1).noise_levels
    times = [float(levels[meta.interval // 10]), float(levels[meta.interval - 1])]
    generator = torch.Generator().manual_seed(0)
    cases = []
    for batch, height, width in ((1, 3 * unit, 3 * unit), (3, 2 * unit, 4 * unit)):
        for t in times:
            shape = (batch, meta.config.out_channels, height, width)
            x = torch.randn(shape, generator=generator)
            cond = meta.network_cond(torch.rand(shape, generator=generator) * 2 - 1)
            cases.append((x, torch.full((batch,), t), cond))
    return cases


def check_parity(
    net: ADMUNet,
    meta: CheckpointMeta,
    path: Path,
    fmt: str,
    precision: str,
    device: torch.device,
    tolerance: float,
) -> ParityReport:
    """Compare the exported file, run by its runtime on `device`, with float32 `net` on the CPU."""
    if fmt == "onnx":
        from .onnx_backend import open_onnx

        exported, _ = open_onnx(path, device)
    else:
        from .exported import open_exported

        # The file was written a moment ago by this process, from the network in hand.
        exported, _ = open_exported(path, device, trust_pickle=True)
    results = []
    with torch.inference_mode():
        for x, t, cond in parity_inputs(meta):
            want = net(x, t, cond)
            got = exported(x, t, cond).float().cpu()
            max_abs = float((got - want).abs().max())
            scale = max(float(want.abs().max()), 1e-12)
            b, _, h, w = x.shape
            results.append(ParityCase(b, h, w, float(t[0]), max_abs, max_abs / scale))
    return ParityReport(fmt, precision, tolerance, tuple(results))


def cached_onnx(
    checkpoint: Path,
    *,
    fp16: bool = False,
    cache_dir: Path | None = None,
    sha256: str | None = None,
) -> tuple[Path, str | None]:
    """An ONNX export of `checkpoint` from the cache, made now if missing; and a note if made.

    Keyed by the checkpoint's sha256, the precision, and the i2sb and torch versions. Like a
    cached model, an export is used only while its files match the sha256 recorded beside
    them when it was made; one that does not is made again. `sha256` is the checkpoint's when
    the caller knows it (restoring/prepare.py hashes each model once a run); None hashes it.
    """
    precision = "fp16" if fp16 else "fp32"
    digest = sha256 or sha256_file(checkpoint)
    name = f"{digest[:16]}-{precision}-i2sb{__version__}-torch{torch.__version__}.onnx"
    path = cache_root(cache_dir) / "onnx" / name

    def make() -> None:
        net, meta = load_checkpoint(checkpoint)
        report = export_network(net, meta, "onnx", path, fp16=fp16)
        if not report.ok:
            worst = max(case.relative for case in report.cases)
            raise CheckpointError(
                f"{checkpoint}: its ONNX export differs from PyTorch (relative error "
                f"{worst:.2g} > {report.tolerance:g}); use --backend torch"
            )

    return cached_export(path, make, checkpoint.name)


def cached_export(path: Path, make: Callable[[], None], what: str) -> tuple[Path, str | None]:
    """The ONNX export at `path` in the cache, used only while its files match the sha256
    recorded beside them when it was made; made by `make` (which raises when the export does
    not match PyTorch) when it is missing or changed, and recorded. A note when made, naming
    `what` was exported."""
    damaged = path.is_file() and not _intact(path)
    if path.is_file() and not damaged:
        return path, None
    make()
    for part in _onnx_parts(path):
        record_sha256(part, sha256_file(part))
    if damaged:
        return path, (
            f"the cached ONNX export {path} did not match its recorded sha256 (modified, "
            "corrupt, or made before exports were verified); exported it again"
        )
    return path, f"exported {what} to ONNX once; cached at {path}"


def remove_cached_exports(digest: str, cache_dir: Path | None = None) -> int:
    """Delete every cached ONNX export made from the checkpoint of sha256 `digest` (each
    precision and version, with its weights, hash records and agreement check); the bytes freed.
    A removed model leaves nothing of itself in the cache."""
    folder = cache_root(cache_dir) / "onnx"
    freed = 0
    for path in folder.glob(f"{digest[:16]}-*") if folder.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            freed += path.stat().st_size
            path.unlink()
    return freed


def _onnx_parts(path: Path) -> list[Path]:
    """The export and, for a large model, its weights beside it (FILE.data)."""
    data = path.with_name(path.name + ".data")
    return [path, data] if data.is_file() else [path]


def _intact(path: Path) -> bool:
    return all(recorded_sha256(part) == sha256_file(part) for part in _onnx_parts(path))
