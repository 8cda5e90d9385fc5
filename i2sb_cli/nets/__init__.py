"""Networks: the ADM UNet of guided-diffusion, keyed like official I2SB checkpoints."""

from .adm import (
    OFFICIAL_PREFIX,
    PRESET_NAMES,
    ADMUNet,
    UNetConfig,
    config_from_guided_diffusion,
    count_parameters,
    preset,
)

__all__ = [
    "OFFICIAL_PREFIX",
    "PRESET_NAMES",
    "ADMUNet",
    "UNetConfig",
    "config_from_guided_diffusion",
    "count_parameters",
    "preset",
]
