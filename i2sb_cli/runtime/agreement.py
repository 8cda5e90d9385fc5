"""Whether ONNX Runtime gives the same picture as PyTorch fp32, through the whole sampler, and
whether it is faster for this network.

The export's parity check (export.py) bounds one network call. A sampler chains several calls
and, with the stochastic sampler, adds noise that a slightly different x0_hat does not undo;
a poorly conditioned network can turn float32 round-off into visible differences. So before
`--backend auto` trusts ONNX Runtime with a checkpoint, both runtimes restore the same random
picture with the same seed, and the 8-bit results must agree: at least 99.9% of the pixels
within 2 levels, at the model's default settings and at NFE 10 with both samplers. Which is
faster depends on the network (ONNX Runtime ran the full-resolution tiny UNets 1.5x faster, a
patched one at the same speed), so one network call of each is timed too, once.

What the small picture cannot vouch for: a network whose round-off grows with the picture's
size and content. The retired sr4x-tiny agreed 100% here, on synthetic 512 px pictures and on
256 px crops of a photograph, and 99.71% on the whole 512 px photograph (96.6% through restore).
Bundled models are checked on photographs by benchmarks/backend_agreement.py.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bridge import nfe_steps, per_image_noise, sample
from ..pictures.files import atomic_write
from .torch_backend import LoadedModel

LEVELS = 2
"""How far apart (in 8-bit levels) two pictures' pixels may be and still count as agreeing."""
SHARE = 0.999
"""The share of pixels that must agree for two runtimes to give "the same picture"."""
SIDE = 64
"""Side of the test picture: a few tiles' worth of context for any network, seconds to run."""
SPEED_SIDE = 256
"""Side of the picture the two runtimes are timed on: large enough that the network, not the
call's overhead, is what is timed."""
TIMED_CALLS = 3


@dataclass(frozen=True)
class Agreement:
    """The worst share of agreeing pixels over the sampler settings tried."""

    share: float
    settings: str
    """The settings that gave `share`, e.g. "NFE 10 OT-ODE"."""

    @property
    def ok(self) -> bool:
        return self.share >= SHARE


@dataclass(frozen=True)
class Check:
    """What `--backend auto` needs to know about a checkpoint's ONNX export, measured once."""

    agreement: Agreement
    torch_ms: float
    onnxruntime_ms: float
    """The fastest of a few network calls on a SPEED_SIDE picture, in each runtime."""

    @property
    def use_onnxruntime(self) -> bool:
        return self.agreement.ok and self.onnxruntime_ms < self.torch_ms


def _test_picture(model: LoadedModel, side: int) -> Tensor:
    """A smooth random picture in [-1, 1] for `model` (side rounded up to what it takes): the
    kind of input a restoration model meets."""
    side = -(-side // model.size_multiple) * model.size_multiple
    generator = torch.Generator().manual_seed(0)
    channels = model.meta.config.out_channels
    coarse = torch.rand((1, channels, side // 8, side // 8), generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False).clamp(
        -1, 1
    )


def _restore(model: LoadedModel, x1: Tensor, nfe: int, ot_ode: bool) -> Tensor:
    x1 = x1.to(model.device)
    steps = nfe_steps(min(nfe, model.schedule.interval - 1), model.schedule.interval)
    restored = sample(
        model.denoise,
        x1,
        model.schedule,
        steps,
        ot_ode=ot_ode,
        noise=per_image_noise([torch.Generator().manual_seed(0)]),
        cond=model.meta.network_cond(x1),
    )
    return ((restored.float().cpu().clamp(-1, 1) + 1) * 127.5).round()


def sampler_settings(model: LoadedModel) -> list[tuple[int, bool]]:
    """(NFE, OT-ODE) pairs to try: the model's defaults, then NFE 10 with each sampler."""
    meta = model.meta
    settings = [(meta.default_nfe, meta.ot_ode), (10, False), (10, True)]
    return list(dict.fromkeys(settings))


def measure_agreement(reference: LoadedModel, candidate: LoadedModel) -> Agreement:
    """How closely `candidate` reproduces `reference`'s restorations (same seed, same input)."""
    x1 = _test_picture(reference, SIDE)
    worst = Agreement(1.0, "")
    for nfe, ot_ode in sampler_settings(reference):
        want = _restore(reference, x1, nfe, ot_ode)
        got = _restore(candidate, x1, nfe, ot_ode)
        share = float(((got - want).abs() <= LEVELS).float().mean())
        if share < worst.share or not worst.settings:
            sampler = "OT-ODE" if ot_ode else "stochastic"
            worst = Agreement(share, f"NFE {nfe} {sampler}")
    return worst


def call_ms(model: LoadedModel) -> float:
    """Milliseconds of the fastest of TIMED_CALLS network calls (after one warm-up) on a
    SPEED_SIDE picture: the minimum, the figure least disturbed by other work on the machine."""
    x = _test_picture(model, SPEED_SIDE).to(model.device)
    n = model.schedule.interval // 2
    cond = model.meta.network_cond(x)
    timings = []
    for _ in range(TIMED_CALLS + 1):
        started = time.perf_counter()
        model.denoise(x, n, cond)
        timings.append(1000 * (time.perf_counter() - started))
    return min(timings[1:])


def read_check(record: Path) -> Check | None:
    """The check recorded in `record` (JSON), or None where there is none (or an older kind)."""
    try:
        raw = json.loads(record.read_text(encoding="utf-8"))
        return Check(Agreement(**raw["agreement"]), raw["torch_ms"], raw["onnxruntime_ms"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def measure_check(record: Path, reference: LoadedModel, candidate: LoadedModel) -> Check:
    """Measure the agreement and the speed of `candidate` (ONNX Runtime) against `reference`
    (PyTorch fp32) now, and record them in `record`."""
    check = Check(measure_agreement(reference, candidate), call_ms(reference), call_ms(candidate))
    atomic_write(record, lambda file: file.write(json.dumps(asdict(check)).encode()))
    return check
