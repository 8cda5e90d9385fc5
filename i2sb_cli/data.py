"""Training pictures: a folder of photographs held in memory, served as random crops."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .degrade import sr4x_bicubic, sr4x_pool
from .errors import UsageError
from .images import read_image
from .inputs import collect_inputs


def _to_uint8(pixels: Tensor) -> Tensor:
    return ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class PhotoCrops:
    """Random crops (with horizontal flips) of every photo in a folder.

    Photos are kept as uint8 at their own size and, when they are large, also at half size, so
    that crops see detail at more than one scale. Each photo is drawn with equal probability.
    """

    def __init__(self, folder: Path, *, crop: int, recursive: bool = True) -> None:
        self.crop = crop
        self.photos: list[Tensor] = []
        for source in collect_inputs([str(folder)], recursive=recursive):
            pixels = read_image(source.path).pixels
            self.photos.append(_to_uint8(pixels))
            if min(pixels.shape[-2:]) >= 4 * crop:
                half = F.interpolate(pixels, scale_factor=0.5, mode="area")
                self.photos.append(_to_uint8(half))
        self.photos = [p for p in self.photos if min(p.shape[-2:]) >= crop]
        if not self.photos:
            raise UsageError(f"{folder}: no photo is at least {crop}x{crop} pixels")

    def __len__(self) -> int:
        return len(self.photos)

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        """[size, 3, crop, crop] float32 crops in [-1, 1]."""
        crops = []
        for index in torch.randint(len(self.photos), (size,), generator=generator).tolist():
            photo = self.photos[index]
            top = int(torch.randint(photo.shape[1] - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(photo.shape[2] - self.crop + 1, (1,), generator=generator))
            crop = photo[:, top : top + self.crop, left : left + self.crop]
            if bool(torch.rand((), generator=generator) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
        return torch.stack(crops).float() / 127.5 - 1


def quantize8(x: Tensor) -> Tensor:
    """Round [-1, 1] values to the 256 levels of an 8-bit picture, as users' inputs are."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def training_pair(task: str, x0: Tensor) -> tuple[Tensor, Tensor | None]:
    """(x1, mask) for a clean batch: the task's degradation in the paper's form, 8-bit rounded."""
    if task == "sr4x-bicubic":
        return quantize8(sr4x_bicubic(x0)), None
    if task == "sr4x-pool":
        return quantize8(sr4x_pool(x0)), None
    raise UsageError(
        f"training on the fly is not available for {task!r} yet; use sr4x-bicubic or sr4x-pool"
    )
