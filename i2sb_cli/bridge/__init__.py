"""The bridge's math: schedules and the sampler. Pure torch; no I/O, no printing."""

from .ensemble import COPIES, mirror_ensemble
from .sampler import (
    Denoise,
    NoiseSource,
    StepInfo,
    fill_hole,
    per_image_noise,
    posterior_step,
    recorded_noise,
    sample,
)
from .schedule import DEFAULT_INTERVAL, Schedule, gaussian_product, make_schedule, nfe_steps

__all__ = [
    "COPIES",
    "DEFAULT_INTERVAL",
    "Denoise",
    "NoiseSource",
    "Schedule",
    "StepInfo",
    "fill_hole",
    "gaussian_product",
    "make_schedule",
    "mirror_ensemble",
    "nfe_steps",
    "per_image_noise",
    "posterior_step",
    "recorded_noise",
    "sample",
]
