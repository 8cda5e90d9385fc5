"""Benchmarking the restore path: latency, throughput, memory, and time outside the network.

A run samples one batch of a synthetic x1 exactly as restore does (tiled denoise, per-picture
generators, the model's sampler), timing the whole run and, separately, every network call;
what is not network time is the sampler's arithmetic, the noise draws, the tiling and the
denoiser's x0 step ("outside the network"; file decoding and encoding are not part of it).
On CUDA each network call is bracketed by synchronisations so that queued work is counted
where it belongs. Memory is the process's peak resident set and torch's CUDA peak over each
case (runtime/resources.py).
"""

import copy
import functools
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..bridge import nfe_steps, per_image_noise, sample
from ..degrade.tasks import family_of
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta
from ..nets.adm import ADMUNet, preset
from ..nets.denoiser import BridgeDenoiser, NetFn
from ..runtime import load_model
from ..runtime.resources import machine_info, memory_window
from ..runtime.torch_backend import LoadedModel, check_precision, resolve_device, wrap_network
from .chain import Stage, StageSpec, make_stage
from .prepare import Located, checkpoint_digests, prepare_stages
from .tiling import tiled

MODIFIERS = {"cl": ("channels_last", True), "nchw": ("channels_last", False)}


@dataclass(frozen=True)
class RunConfig:
    """One way of running the network: `BACKEND[+cl|+nchw][+compile][:PRECISION]`."""

    backend: str
    precision: str = "fp32"
    channels_last: bool | None = None
    """None: the backend's default (channels_last on the CPU, see torch_backend.py)."""
    compile: bool = False

    @property
    def label(self) -> str:
        mods = {True: "+cl", False: "+nchw", None: ""}[self.channels_last]
        return f"{self.backend}{mods}{'+compile' if self.compile else ''}:{self.precision}"


def parse_config(spec: str, precision: str | None = None) -> RunConfig:
    """`torch`, `torch+nchw`, `torch+cl+compile:bf16`, `onnxruntime` (or `ort`), ..."""
    head, _, given = spec.partition(":")
    backend, *mods = head.split("+")
    backend = {"ort": "onnxruntime"}.get(backend, backend)
    if backend not in ("torch", "onnxruntime"):
        raise UsageError(f"{spec!r}: the backend is torch or onnxruntime")
    channels_last, compile_ = None, False
    for mod in mods:
        if mod == "compile":
            compile_ = True
        elif mod in MODIFIERS:
            channels_last = MODIFIERS[mod][1]
        else:
            raise UsageError(f"{spec!r}: unknown modifier +{mod} (known: +cl, +nchw, +compile)")
    if backend == "onnxruntime" and (compile_ or channels_last is not None):
        raise UsageError(f"{spec!r}: +cl, +nchw and +compile are torch options")
    chosen = given or precision or "fp32"
    if backend == "onnxruntime" and chosen == "bf16":
        raise UsageError(f"{spec!r}: ONNX Runtime runs fp32 or fp16 exports, not bf16")
    return RunConfig(backend, chosen, channels_last, compile_)


@dataclass(frozen=True)
class Case:
    height: int
    width: int
    batch: int
    nfe: int

    @property
    def label(self) -> str:
        return f"{self.height}x{self.width} b{self.batch} nfe{self.nfe}"

    @property
    def megapixels(self) -> float:
        """Of one picture."""
        return self.height * self.width / 1e6


@dataclass(frozen=True)
class Source:
    """What to benchmark: a checkpoint or exported file, or a preset with random weights."""

    located: Located | None = None
    """The file (prepare.locate_stages)."""
    preset: str | None = None
    cond_x1: bool = False
    trust_pickle: bool = False
    """Load a .pt2 file, which torch unpickles (runtime/exported.py)."""

    @property
    def path(self) -> Path | None:
        return None if self.located is None else self.located.checkpoint


@dataclass
class Measurement:
    config: RunConfig
    case: Case
    device: str
    seconds: list[float] = field(default_factory=list)
    net_seconds: list[float] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    cuda_peak_bytes: int | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> dict:
        runs = np.array(self.seconds)
        per_nfe, per_image = runs / self.case.nfe * 1e3, runs / self.case.batch
        outside = 1 - sum(self.net_seconds) / sum(self.seconds)
        return {
            "config": self.config.label,
            "backend": self.config.backend,
            "precision": self.config.precision,
            "channels_last": self.config.channels_last,
            "compile": self.config.compile,
            "device": self.device,
            "height": self.case.height,
            "width": self.case.width,
            "batch": self.case.batch,
            "nfe": self.case.nfe,
            "runs": len(self.seconds),
            "seconds": [round(s, 6) for s in self.seconds],
            "ms_per_nfe_median": float(np.median(per_nfe)),
            "ms_per_nfe_p90": float(np.percentile(per_nfe, 90)),
            "s_per_image_median": float(np.median(per_image)),
            "s_per_image_p90": float(np.percentile(per_image, 90)),
            "images_per_s": self.case.batch / float(np.median(runs)),
            # Cost per output megapixel: flat when cost follows the pixels; a jump between two
            # close sizes shows a tile plan that pays for pixels it does not need.
            "s_per_megapixel_median": float(np.median(per_image)) / self.case.megapixels,
            "outside_network_fraction": max(outside, 0.0),
            "peak_rss_bytes": self.peak_rss_bytes,
            "cuda_peak_bytes": self.cuda_peak_bytes,
            "notes": list(self.notes),
        }


class NetTimer:
    """Wraps a NetFn and adds up the seconds spent in it."""

    def __init__(self, device: torch.device) -> None:
        self.total = 0.0
        self._cuda = device if device.type == "cuda" else None

    def sync(self) -> None:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)

    def wrap(self, net: NetFn) -> NetFn:
        def timed(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
            self.sync()
            start = time.perf_counter()
            out = net(x_t, t, cond)
            self.sync()
            self.total += time.perf_counter() - start
            return out

        return timed


def random_network(name: str, cond_x1: bool, seed: int = 0) -> tuple[ADMUNet, CheckpointMeta]:
    """A preset with random weights (speed does not depend on the values)."""
    config = preset(name, conditioned=cond_x1)
    torch.manual_seed(seed)
    meta = CheckpointMeta(
        name=f"{name} (random weights)",
        config=config,
        task="sr4x-bicubic",
        beta_max=0.3,
        ot_ode=False,
        cond_x1=cond_x1,
        licence="none",
        provenance="random weights for benchmarking",
    )
    return ADMUNet(config).eval(), meta


class Loader:
    """Loads a Source for each RunConfig as restore prepares its models (prepare.py: the file
    hashed once, checked, and the tile restore would use); random weights are made once and
    exported once."""

    def __init__(
        self, source: Source, device: str, workdir: Path, tile: int | None, overlap: int | None
    ) -> None:
        self.source, self.device, self.workdir = source, device, workdir
        self.tiling = {"tile": tile, "tile_overlap": overlap}
        self._random = random_network(source.preset, source.cond_x1) if source.preset else None
        located = source.located
        self._digests = checkpoint_digests([located]) if located is not None else {}

    def load(self, config: RunConfig) -> Stage:
        located = self.source.located
        if located is not None:
            load = functools.partial(self._load_file, config)
            return prepare_stages([located], load, sampling=self.tiling, digests=self._digests)[0]
        net, meta = self._random
        if config.backend == "torch":
            model = wrap_network(
                copy.deepcopy(net),
                meta,
                resolve_device(self.device),
                precision=config.precision,
                channels_last=config.channels_last,
                compile=config.compile,
            )
        else:
            model = self._onnx(net, meta, config.precision)
        return make_stage(model, StageSpec(), family_of(meta.task), **self.tiling)

    def _load_file(self, config: RunConfig, path: Path, sha256: str | None) -> LoadedModel:
        # Exported files carry their own precision; fp32 is the default that means "as is".
        exported = path.suffix.lower() in (".onnx", ".pt", ".pt2")
        return load_model(
            path,
            self.device,
            config.backend,
            precision=None if exported and config.precision == "fp32" else config.precision,
            compile=config.compile,
            channels_last=config.channels_last,
            trust_pickle=self.source.trust_pickle,
            sha256=sha256,
        )

    def _onnx(self, net: ADMUNet, meta: CheckpointMeta, precision: str) -> LoadedModel:
        from ..runtime.export import export_network

        path = self.workdir / f"random-{precision}.onnx"
        if not path.is_file():
            report = export_network(net, meta, "onnx", path, fp16=precision == "fp16")
            if not report.ok:
                raise UsageError(f"the ONNX export of {meta.name} failed its parity check")
        return load_model(path, self.device, "onnxruntime")


class Runner:
    """Restore-path sampling runs of one loaded model at one case."""

    def __init__(self, stage: Stage, case: Case, tile_batch: int = 1) -> None:
        model = stage.model
        self.model, self.case = model, case
        base = model.denoise
        if not isinstance(base, BridgeDenoiser):
            raise TypeError("benchmarks need a BridgeDenoiser model")
        self.timer = NetTimer(model.device)
        denoise = BridgeDenoiser(
            self.timer.wrap(base.net), base.schedule, clip_denoise=base.clip_denoise
        )
        # restore's tiles: the model's, or the size asked for (make_stage).
        self.denoise = tiled(
            denoise,
            tile=stage.tile,
            overlap=stage.tile_overlap,
            multiple=model.size_multiple,
            tile_batch=tile_batch,
        )
        self.steps = nfe_steps(case.nfe, model.schedule.interval)
        generator = torch.Generator().manual_seed(0)
        channels = model.meta.config.out_channels
        shape = (case.batch, channels, case.height, case.width)
        self.x1 = (torch.rand(shape, generator=generator) * 2 - 1).to(model.device)

    def once(self) -> tuple[float, float]:
        """(seconds of the run, seconds inside the network)."""
        model = self.model
        generators = [torch.Generator().manual_seed(i) for i in range(self.case.batch)]
        self.timer.total = 0.0
        self.timer.sync()
        start = time.perf_counter()
        sample(
            self.denoise,
            self.x1,
            model.schedule,
            self.steps,
            ot_ode=model.meta.ot_ode,
            noise=per_image_noise(generators),
            cond=model.meta.network_cond(self.x1),
        )
        self.timer.sync()
        return time.perf_counter() - start, self.timer.total


def _record(measurement: Measurement, window: dict) -> None:
    measurement.peak_rss_bytes = window.get("rss")
    measurement.cuda_peak_bytes = window.get("cuda")
    if not window.get("scoped"):
        measurement.notes += ("peak RSS is the process's lifetime peak",)


def _run_grid(
    loader: Loader,
    configs: list[RunConfig],
    cases: list[Case],
    *,
    warmup: int,
    repeat: int,
    tile_batch: int,
    on_result: Callable[[Measurement], None],
) -> list[Measurement]:
    results = []
    for config in configs:
        stage = loader.load(config)
        model = stage.model
        for case in cases:
            runner = Runner(stage, case, tile_batch)
            measurement = Measurement(config, case, str(model.device), notes=model.notes)
            with memory_window(model.device) as window:
                for _ in range(warmup):
                    runner.once()
                for _ in range(repeat):
                    seconds, net = runner.once()
                    measurement.seconds.append(seconds)
                    measurement.net_seconds.append(net)
            _record(measurement, window)
            results.append(measurement)
            on_result(measurement)
        del model, stage
        _release()
    return results


def _run_compare(
    loader: Loader,
    pair: tuple[RunConfig, RunConfig],
    cases: list[Case],
    *,
    warmup: int,
    repeat: int,
    tile_batch: int,
    on_result: Callable[[Measurement], None],
) -> tuple[list[Measurement], list[dict]]:
    """Both configurations loaded side by side, their runs alternated so drift hits both."""
    stages = [loader.load(config) for config in pair]
    models = [stage.model for stage in stages]
    results, ratios = [], []
    for case in cases:
        runners = [Runner(stage, case, tile_batch) for stage in stages]
        pairs = [
            Measurement(c, case, str(m.device), notes=m.notes)
            for c, m in zip(pair, models, strict=True)
        ]
        with memory_window(models[0].device) as window:
            for runner in runners:
                for _ in range(warmup):
                    runner.once()
            for _ in range(repeat):
                for runner, measurement in zip(runners, pairs, strict=True):
                    seconds, net = runner.once()
                    measurement.seconds.append(seconds)
                    measurement.net_seconds.append(net)
        for measurement in pairs:
            _record(measurement, window)
            measurement.notes += ("compare: memory peaks cover both configurations",)
            results.append(measurement)
            on_result(measurement)
        a, b = (float(np.median(m.seconds)) for m in pairs)
        # Median seconds of A over B: how many times B's throughput is A's.
        ratios.append(
            {"case": case.label, "a": pair[0].label, "b": pair[1].label, "b_over_a": a / b}
        )
    return results, ratios


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_benchmark(
    source: Source,
    configs: list[RunConfig],
    cases: list[Case],
    *,
    device: str = "auto",
    warmup: int = 1,
    repeat: int = 5,
    tile: int | None = None,
    overlap: int | None = None,
    tile_batch: int = 1,
    compare: bool = False,
    workdir: Path,
    on_result: Callable[[Measurement], None] = lambda m: None,
) -> dict:
    """Measure every configuration at every case (or, with `compare`, the two configurations
    alternately) and return the JSON-ready report. `workdir` holds exports of random weights."""
    for config in configs:
        if config.backend == "torch" or config.precision == "fp16":
            check_precision(config.precision, _nominal_device(device))
    if compare and len(configs) != 2:
        raise UsageError("--compare takes exactly two configurations")
    loader = Loader(source, device, workdir, tile, overlap)
    options = {"warmup": warmup, "repeat": repeat, "tile_batch": tile_batch}
    comparison = None
    if compare:
        measurements, comparison = _run_compare(
            loader, (configs[0], configs[1]), cases, on_result=on_result, **options
        )
    else:
        measurements = _run_grid(loader, configs, cases, on_result=on_result, **options)
    model = str(source.path) if source.path else f"preset {source.preset}"
    return {
        "machine": machine_info(),
        "model": model,
        "settings": {
            "device": device,
            "warmup": warmup,
            "repeat": repeat,
            "tile": tile,
            "overlap": overlap,
            "tile_batch": tile_batch,
        },
        "results": [m.summary() for m in measurements],
        "comparison": comparison,
    }


def _nominal_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
