"""`i2sb export`: a checkpoint's network as ONNX, TorchScript or torch.export, parity-checked."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import UsageError
from ..models.checkpoint import load_checkpoint
from ..models.registry import resolve_model
from ..runtime import resolve_device
from ..runtime.export import ParityReport, check_output_name, export_network
from ..runtime.metadata import FORMATS, SUFFIXES
from .common import CacheDir, Offline, console, fail, reports_errors


def _check_format(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not a format; choose one of: {', '.join(FORMATS)}")
    return value


Model = Annotated[
    str,
    typer.Option(help="A model name or checkpoint file (.safetensors).", show_default=False),
]
Output = Annotated[
    Path,
    typer.Option(
        "-o",
        "--output",
        help="The file to write: .onnx, .pt (TorchScript) or .pt2 (torch.export).",
        show_default=False,
    ),
]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        help="onnx, torchscript or pt2. TorchScript is deprecated in PyTorch (every "
        "torch.jit call warns so) and kept because users ask for it; prefer pt2, its "
        "successor, or onnx.",
        callback=_check_format,
    ),
]
Fp16 = Annotated[
    bool,
    typer.Option(
        "--fp16",
        help="Store half-precision weights (for GPUs); inputs and output stay float32.",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        help="cpu or cuda[:N]: where the parity check runs, and where a TorchScript trace "
        "is made (it runs only on that device type)."
    ),
]
Tolerance = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Largest accepted error relative to the output's range (default: 1e-3, "
        "3e-2 with --fp16).",
        show_default=False,
    ),
]


@reports_errors
def export(
    model: Model,
    output: Output,
    cache_dir: CacheDir = None,
    offline: Offline = None,
    fmt: Format = "onnx",
    fp16: Fp16 = False,
    device: Device = "cpu",
    tolerance: Tolerance = None,
) -> None:
    """Export a model's network for other runtimes, with its metadata, and check it.

    The file takes x_t, the float time level t and, for conditioned models, x1 (all float32,
    any batch, height and width that are multiples of the model's size multiple) and returns
    the network's output. What a runtime needs to sample without the checkpoint (task,
    beta_max, ot_ode, cond_x1, interval, t0, t1, size multiple, tile size, default NFE, name)
    is embedded: ONNX metadata_props, or the extra file i2sb.json of .pt and .pt2 files.

    The export is loaded back and compared with PyTorch on random inputs at two sizes and two
    time levels; past the tolerance nothing is written and the exit code is 1. i2sb restore
    --model FILE runs the result.
    """
    check_output_name(output, fmt)
    torch_device = resolve_device(device)
    checkpoint = resolve_model(model, None, cache_dir=cache_dir, offline=offline)
    if checkpoint.suffix.lower() in SUFFIXES.values():
        raise UsageError(f"--model {checkpoint} is an export already; give its checkpoint")
    net, meta = load_checkpoint(checkpoint)
    console.print(
        f"exporting {meta.name} ({meta.task}) to {fmt}{' with fp16 weights' if fp16 else ''}...",
        markup=False,
    )
    report = export_network(
        net, meta, fmt, output, fp16=fp16, device=torch_device, tolerance=tolerance
    )
    console.print(_parity_table(report))
    worst = max(case.relative for case in report.cases)
    if not report.ok:
        raise fail(
            f"parity check failed: relative error {worst:.2e} > tolerance "
            f"{report.tolerance:g}; {output} was not written"
        )
    console.print(
        f"parity ok (worst relative error {worst:.1e} <= {report.tolerance:g}); "
        f"wrote {escape(str(output))}",
        soft_wrap=True,
    )


def _parity_table(report: ParityReport) -> Table:
    table = Table(title=f"parity: {report.format} ({report.precision}) against PyTorch fp32")
    for column in ("batch", "height x width", "t", "max abs error", "relative error", ""):
        table.add_column(column, justify="right")
    for case in report.cases:
        ok = case.relative <= report.tolerance
        table.add_row(
            str(case.batch),
            f"{case.height} x {case.width}",
            f"{case.t:.1f}",
            f"{case.max_abs:.2e}",
            f"{case.relative:.2e}",
            "[green]ok[/]" if ok else "[bold red]FAIL[/]",
        )
    return table
