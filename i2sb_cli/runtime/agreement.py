"""Whether a faster runtime gives the same picture as PyTorch fp32, through the whole sampler.

The export's parity check (export.py) bounds one network call. A sampler chains several calls
and, with the stochastic sampler, adds noise that a slightly different x0_hat does not undo;
a poorly conditioned network can turn float32 round-off into visible differences. So before
`--backend auto` trusts ONNX Runtime with a checkpoint, both runtimes restore the same random
picture with the same seed, and the 8-bit results must agree: at least 99.9% of the pixels
within 2 levels, at the model's default settings and at NFE 10 with both samplers.
"""

import json
from collections.abc import Callable
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


@dataclass(frozen=True)
class Agreement:
    """The worst share of agreeing pixels over the sampler settings tried."""

    share: float
    settings: str
    """The settings that gave `share`, e.g. "NFE 10 OT-ODE"."""

    @property
    def ok(self) -> bool:
        return self.share >= SHARE


def _test_picture(channels: int, side: int) -> Tensor:
    """A smooth random picture in [-1, 1]: the kind of input a restoration model meets."""
    generator = torch.Generator().manual_seed(0)
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
        cond=x1 if model.meta.cond_x1 else None,
    )
    return ((restored.float().cpu().clamp(-1, 1) + 1) * 127.5).round()


def sampler_settings(model: LoadedModel) -> list[tuple[int, bool]]:
    """(NFE, OT-ODE) pairs to try: the model's defaults, then NFE 10 with each sampler."""
    meta = model.meta
    settings = [(meta.default_nfe, meta.ot_ode), (10, False), (10, True)]
    return list(dict.fromkeys(settings))


def measure_agreement(reference: LoadedModel, candidate: LoadedModel) -> Agreement:
    """How closely `candidate` reproduces `reference`'s restorations (same seed, same input)."""
    side = -(-SIDE // reference.size_multiple) * reference.size_multiple
    x1 = _test_picture(reference.meta.config.out_channels, side)
    worst = Agreement(1.0, "")
    for nfe, ot_ode in sampler_settings(reference):
        want = _restore(reference, x1, nfe, ot_ode)
        got = _restore(candidate, x1, nfe, ot_ode)
        share = float(((got - want).abs() <= LEVELS).float().mean())
        if share < worst.share or not worst.settings:
            sampler = "OT-ODE" if ot_ode else "stochastic"
            worst = Agreement(share, f"NFE {nfe} {sampler}")
    return worst


def cached_agreement(
    record: Path, reference: Callable[[], LoadedModel], candidate: LoadedModel
) -> Agreement:
    """The agreement recorded in `record` (JSON), else measured now against the model
    `reference()` loads (only then) and recorded."""
    try:
        return Agreement(**json.loads(record.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    agreement = measure_agreement(reference(), candidate)
    atomic_write(record, lambda file: file.write(json.dumps(asdict(agreement)).encode()))
    return agreement
