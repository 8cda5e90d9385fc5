"""Training on pairs of pictures: a folder of clean pictures and a folder of their degraded
versions, matched by relative path without the extension (`a/b.jpg` pairs with `a/b.png`).

This is how a model learns a degradation of one's own, or real pairs nobody can simulate. The
degraded picture has the clean one's size, or, for sr4x, a quarter of it (ceil(H/4) x ceil(W/4),
as `i2sb degrade` writes), which crops then read at the matching place and bring back to full
size by nearest x4 upsampling, the paper's form of x1. For inpainting the hole is the degraded
picture's transparency (as `i2sb degrade` writes it) and is filled with noise, as on the fly.
A model that starts from a start network (sr4x) gets each pair's x1 as that network's upscale
of the small picture, computed once at loading.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..degrade import nearest_upsample4
from ..errors import UsageError
from ..pictures.files import mask_from_alpha, read_image, write_image
from ..pictures.inputs import collect_inputs
from ..restoring.start import Upscale, make_x1
from .data import TrainingBatch


def _levels(pixels: Tensor) -> Tensor:
    return ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class Pair:
    name: str
    clean: Tensor
    """uint8 [3, H, W]."""
    degraded: Tensor
    """uint8 [3, H, W], or [3, ceil(H/4), ceil(W/4)] when `scale` is 4."""
    mask: Tensor | None
    """uint8 [1, H, W], 1 = hole (inpainting)."""
    scale: int
    jpeg_quality: int | None
    """The quality the degraded file declares (a JPEG file), else None."""


class PairedCrops:
    """Aligned random crops (with horizontal flips) of clean/degraded pairs held in memory."""

    def __init__(
        self,
        clean: Path,
        degraded: Path,
        *,
        family: str,
        crop: int,
        start: Upscale | None = None,
        start_cache: Path | None = None,
    ) -> None:
        if family == "sr4x" and crop % 4:
            raise UsageError(f"sr4x pairs need a crop size that is a multiple of 4, not {crop}")
        if start is not None and family != "sr4x":
            raise UsageError(f"a start network upscales 4x: it cannot start {family} pairs")
        self.family, self.crop, self.start, self.start_cache = family, crop, start, start_cache
        sources = {
            item.relative.with_suffix("").as_posix(): item.path
            for item in collect_inputs([str(degraded)], recursive=True)
        }
        self.pairs: list[Pair] = []
        self.unmatched: list[str] = []
        for item in collect_inputs([str(clean)], recursive=True):
            name = item.relative.with_suffix("").as_posix()
            if name not in sources:
                self.unmatched.append(item.relative.as_posix())
                continue
            pair = self._load(name, item.path, sources[name])
            if min(pair.clean.shape[-2:]) >= crop:
                self.pairs.append(pair)
        if not self.pairs:
            raise UsageError(
                f"no pair of {clean} and {degraded} matches by name and is at least "
                f"{crop}x{crop} pixels"
            )

    def _load(self, name: str, clean_path: Path, degraded_path: Path) -> Pair:
        clean = read_image(clean_path).pixels
        degraded = read_image(degraded_path)
        height, width = clean.shape[-2:]
        small = (-(-height // 4), -(-width // 4))
        if degraded.size == (height, width):
            scale = 1
        elif self.family == "sr4x" and degraded.size == small:
            scale = 4
        else:
            raise UsageError(
                f"pair {name}: the degraded picture is {degraded.size[1]}x{degraded.size[0]}, "
                f"not {width}x{height}"
                + (f" or {small[1]}x{small[0]}" if self.family == "sr4x" else "")
            )
        mask = None
        if self.family == "inpaint":
            if degraded.alpha is None:
                raise UsageError(
                    f"pair {name}: inpainting pairs mark the hole as transparency, as "
                    f"`i2sb degrade` writes them; {degraded_path} has none"
                )
            mask = mask_from_alpha(degraded.alpha)[0].to(torch.uint8)
        x1 = _levels(degraded.pixels)
        if self.start is not None and scale == 4:
            x1, scale = self._started(name, degraded.pixels, (height, width)), 1
        return Pair(name, _levels(clean), x1, mask, scale, degraded.jpeg_quality)

    def _started(self, name: str, small: Tensor, size: tuple[int, int]) -> Tensor:
        """The start network's upscale of a pair's small picture (uint8, the clean picture's
        size), computed once per pair rather than per crop, and kept as a PNG in
        `start_cache` so that a resumed run does not compute it again."""
        cached = None if self.start_cache is None else self.start_cache / f"{name}.png"
        if cached is not None and cached.is_file():
            x1 = read_image(cached).pixels
            if tuple(x1.shape[-2:]) == size:
                return _levels(x1)
        x1 = make_x1("sr4x", small, start=self.start)[..., : size[0], : size[1]]
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_image(cached, x1[0])
        return _levels(x1)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def without_quality(self) -> list[str]:
        """The pairs whose degraded picture declares no JPEG quality (it is not a JPEG file)."""
        return [pair.name for pair in self.pairs if pair.jpeg_quality is None]

    def batch(self, size: int, generator: torch.Generator) -> TrainingBatch:
        """`size` random crops, float32 in [-1, 1], x1 at full size."""
        crops, pairs = [], []
        for index in torch.randint(len(self.pairs), (size,), generator=generator).tolist():
            pair = self.pairs[index]
            pairs.append(pair)
            s, (height, width) = pair.scale, pair.clean.shape[-2:]
            # Corners on multiples of the scale, so a low-res pixel covers whole 4x4 cells.
            top = int(torch.randint((height - self.crop) // s + 1, (), generator=generator)) * s
            left = int(torch.randint((width - self.crop) // s + 1, (), generator=generator)) * s
            flip = bool(torch.rand((), generator=generator) < 0.5)
            crops.append(self._crop(pair, top, left, flip))
        return self._finish(crops, pairs, generator)

    def centre(self, index: int, generator: torch.Generator) -> TrainingBatch:
        """The centre crop of pair `index`, as a batch of one (for validation)."""
        pair = self.pairs[index]
        s, (height, width) = pair.scale, pair.clean.shape[-2:]
        top, left = (height - self.crop) // 2 // s * s, (width - self.crop) // 2 // s * s
        return self._finish([self._crop(pair, top, left, False)], [pair], generator)

    def _crop(self, pair: Pair, top: int, left: int, flip: bool) -> tuple[Tensor, ...]:
        s, crop, small = pair.scale, self.crop, -(-self.crop // pair.scale)
        x0 = pair.clean[:, top : top + crop, left : left + crop].float()
        x1 = pair.degraded[:, top // s : top // s + small, left // s : left // s + small].float()
        if s > 1:
            x1 = nearest_upsample4(x1[None])[0, :, :crop, :crop]
        mask = (
            torch.zeros(0)
            if pair.mask is None
            else pair.mask[:, top : top + crop, left : left + crop]
        )
        if flip:
            x0, x1, mask = x0.flip(-1), x1.flip(-1), mask.flip(-1)
        return x0, x1, mask.float()

    def _finish(
        self, crops: list[tuple[Tensor, ...]], pairs: list[Pair], generator: torch.Generator
    ) -> TrainingBatch:
        x0 = torch.stack([c[0] for c in crops]) / 127.5 - 1
        x1 = torch.stack([c[1] for c in crops]) / 127.5 - 1
        qualities = [pair.jpeg_quality for pair in pairs]
        quality = None
        if self.family == "jpeg" and None not in qualities:
            quality = torch.tensor(qualities, dtype=torch.float32)
        if self.family != "inpaint":
            return TrainingBatch(x0, x1, None, quality)
        mask = torch.stack([c[2] for c in crops])
        noise = torch.randn(x1.shape, generator=generator)
        return TrainingBatch(x0, (1 - mask) * x1 + mask * noise, mask, None)
