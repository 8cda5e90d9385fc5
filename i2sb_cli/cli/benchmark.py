"""`i2sb benchmark`: how fast restoring runs here, per backend, precision, size, batch and NFE."""

import json
import tempfile
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from ..errors import UsageError
from ..nets.adm import PRESET_NAMES
from ..restoring.bench import Case, Measurement, RunConfig, Source, parse_config, run_benchmark
from ..restoring.chain import StageSpec
from ..restoring.prepare import locate_stages
from .common import CacheDir, Offline, console, make_console, reports_errors
from .restore_options import TrustPickle

_CONFIG_HELP = (
    "torch (restore's default: channels_last on the CPU), torch+nchw (plain eager), torch+cl, "
    "torch+compile, onnxruntime (or ort); :bf16 or :fp16 may follow"
)


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    try:
        size = (int(height), int(width or height))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not N or HxW", param_hint="--size") from None
    if min(size) < 1:
        raise typer.BadParameter(f"{text!r} must be positive", param_hint="--size")
    return size


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


Model = Annotated[
    str | None,
    typer.Option(
        help="A model name, checkpoint or exported file (default: the bundled sr4x model).",
        show_default=False,
    ),
]
Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help=f"Instead of --model, a network preset with random weights: "
        f"{', '.join(PRESET_NAMES)}.",
        show_default=False,
    ),
]
CondX1 = Annotated[
    bool, typer.Option("--cond-x1/--no-cond-x1", help="With --preset: also feed x1 to the net.")
]
Backends = Annotated[
    list[str] | None,
    typer.Option("--backend", help=f"Repeatable (default torch): {_CONFIG_HELP}."),
]
Precisions = Annotated[
    list[str] | None,
    typer.Option("--precision", help="fp32, bf16 or fp16 (CUDA only), repeatable (default fp32)."),
]
Sizes = Annotated[
    list[str] | None,
    typer.Option(
        "--size",
        help="N or HxW, repeatable or comma-separated (default 256); e.g. "
        "--size 256,512,1024,2048 shows the cost per megapixel over sizes.",
    ),
]
Batches = Annotated[
    list[int] | None, typer.Option("--batch", min=1, help="Repeatable (default 1).")
]
Nfes = Annotated[
    list[int] | None,
    typer.Option("--nfe", min=1, max=999, help="Network calls per run, repeatable (default 10)."),
]
Warmup = Annotated[int, typer.Option(min=0, help="Untimed runs first, per case.")]
Repeat = Annotated[int, typer.Option(min=1, help="Timed runs per case.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Threads = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for torch and ONNX Runtime (default: torch's)."),
]
Tile = Annotated[
    int | None,
    typer.Option(
        min=16, help="Tile size, as restore's (default: the model's).", show_default=False
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option(
        min=0, help="Overlap between tiles (default: 64, at most tile/4).", show_default=False
    ),
]
TileBatch = Annotated[
    int,
    typer.Option(min=1, help="Tiles per network call, as restore's --tile-batch."),
]
Compare = Annotated[
    tuple[str, str] | None,
    typer.Option(
        metavar="A B",
        help="Two configurations (e.g. torch+nchw onnxruntime) run alternately at each "
        "case; prints how many times B's throughput is A's.",
        show_default=False,
    ),
]
Output = Annotated[
    Path | None,
    typer.Option("-o", "--output", help="Write the JSON report here instead of stdout."),
]


@reports_errors
def benchmark(
    model: Model = None,
    preset_name: Preset = None,
    cond_x1: CondX1 = False,
    backends: Backends = None,
    precisions: Precisions = None,
    sizes: Sizes = None,
    batches: Batches = None,
    nfes: Nfes = None,
    warmup: Warmup = 1,
    repeat: Repeat = 5,
    device: Device = "auto",
    threads: Threads = None,
    tile: Tile = None,
    tile_overlap: TileOverlap = None,
    tile_batch: TileBatch = 1,
    cache_dir: CacheDir = None,
    offline: Offline = None,
    trust_pickle: TrustPickle = False,
    compare: Compare = None,
    output: Output = None,
) -> None:
    """Measure restore's speed and memory: latency per NFE and per image (median, p90),
    images/s, peak RSS and CUDA memory, and the share of time outside the network.

    Every configuration runs at every size, batch and NFE: warm-up runs, then timed runs of
    the bridge sampler on a synthetic picture through the same tiled denoise as restore. A
    table goes to stderr; the JSON report, with a description of the machine, to stdout or
    --output. Runs on the CPU and, unchanged, on CUDA.
    """
    _check_options(model, preset_name, compare, backends, precisions)
    if threads is not None:
        torch.set_num_threads(threads)
    configs = _configs(compare, backends, precisions)
    cases = [
        Case(height, width, batch, nfe)
        for height, width in map(_size, _split(sizes or ["256"]))
        for batch in batches or [1]
        for nfe in nfes or [10]
    ]
    source = _source(model, preset_name, cond_x1, cache_dir, offline, trust_pickle)
    with tempfile.TemporaryDirectory(prefix="i2sb-bench-") as workdir:
        report = run_benchmark(
            source,
            configs,
            cases,
            device=device,
            warmup=warmup,
            repeat=repeat,
            tile=tile,
            overlap=tile_overlap,
            tile_batch=tile_batch,
            compare=compare is not None,
            workdir=Path(workdir),
            on_result=_progress,
        )
    _print_report(report, output)


def _check_options(
    model: str | None,
    preset_name: str | None,
    compare: tuple[str, str] | None,
    backends: list[str] | None,
    precisions: list[str] | None,
) -> None:
    if model is not None and preset_name is not None:
        raise UsageError("give --model or --preset, not both")
    if preset_name is not None and preset_name not in PRESET_NAMES:
        raise UsageError(f"--preset {preset_name!r}: choose one of {', '.join(PRESET_NAMES)}")
    if compare is not None and (backends or precisions):
        raise UsageError("--compare names its two configurations; drop --backend/--precision")


def _configs(
    compare: tuple[str, str] | None, backends: list[str] | None, precisions: list[str] | None
) -> list[RunConfig]:
    if compare is not None:
        return [parse_config(spec) for spec in compare]
    return [
        parse_config(spec, precision)
        for spec in backends or ["torch"]
        for precision in precisions or ["fp32"]
    ]


def _source(
    model: str | None,
    preset_name: str | None,
    cond_x1: bool,
    cache_dir: Path | None,
    offline: bool | None,
    trust_pickle: bool,
) -> Source:
    """The preset, or the model as restore locates it (prepare.locate_stages)."""
    if preset_name is not None:
        return Source(preset=preset_name, cond_x1=cond_x1)
    spec = StageSpec(task=None if model else "sr4x", model=model)
    (located,) = locate_stages([spec], cache_dir, offline, dry_run=False)
    return Source(located=located, trust_pickle=trust_pickle)


def _print_report(report: dict, output: Path | None) -> None:
    """The table and any comparison on stderr; the JSON report on stdout or in `output`."""
    # A log file or pipe gets the whole table rather than one folded to 80 columns.
    wide = console if console.is_terminal else make_console(stderr=True, width=160)
    wide.print(_table(report))
    for ratio in report["comparison"] or []:
        console.print(
            f"{ratio['case']}: {ratio['b']} runs at {ratio['b_over_a']:.2f}x the throughput "
            f"of {ratio['a']}",
            markup=False,
        )
    text = json.dumps(report, indent=1)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"report written to {output}", markup=False)


def _progress(measurement: Measurement, _said: set[str] = set()) -> None:  # noqa: B006
    # The default set outlives calls on purpose: a model's notes are said once per process.
    for note in measurement.notes:
        if note not in _said:
            _said.add(note)
            console.print(f"note: {note}", markup=False, style="yellow", soft_wrap=True)
    summary = measurement.summary()
    console.print(
        f"{summary['config']} on {measurement.device}, {measurement.case.label}: "
        f"{summary['ms_per_nfe_median']:.1f} ms/NFE, {summary['images_per_s']:.3g} images/s",
        markup=False,
    )


def _table(report: dict) -> Table:
    table = Table(title=f"i2sb benchmark: {report['model']} (median, p90 in brackets)")
    columns = ("config", "size", "batch", "NFE", "ms/NFE", "s/image", "s/MP", "img/s", "outside")
    for column in (*columns, "RSS MiB", "CUDA MiB"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for r in report["results"]:
        table.add_row(
            f"{r['config']} {r['device']}",
            f"{r['height']}x{r['width']}",
            str(r["batch"]),
            str(r["nfe"]),
            f"{r['ms_per_nfe_median']:.1f} ({r['ms_per_nfe_p90']:.1f})",
            f"{r['s_per_image_median']:.3f} ({r['s_per_image_p90']:.3f})",
            f"{r['s_per_megapixel_median']:.3g}",
            f"{r['images_per_s']:.3g}",
            f"{100 * r['outside_network_fraction']:.2f}%",
            _mib(r["peak_rss_bytes"]),
            _mib(r["cuda_peak_bytes"]),
        )
    return table
