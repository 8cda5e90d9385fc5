"""Side-by-side pictures of restorations: what the README's figures are made with.

For a folder written by `i2sb degrade`, one row per picture: the degraded input (at the clean
size: nearest-upsampled for sr4x) | the task's classical baseline | each folder of
restorations asked for | the clean original. Each tile carries its column's label and its PSNR
against the original (of the whole picture, also when a crop is shown), so that the picture and
the number are read together.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..degrade.baselines import baseline_name, classical_baseline
from ..errors import UsageError
from ..pictures.files import read_image, read_mask
from .metrics import psnr
from .score import Record, _degraded_as_seen, find_restored, read_manifest

LABEL_BAR = 14  # pixels of the dark strip that holds a tile's label


@dataclass(frozen=True)
class Tile:
    label: str
    picture: Tensor
    """[1, 3, H, W] in [-1, 1] at the clean picture's size."""
    psnr: float | None


def row_tiles(record: Record, columns: Sequence[tuple[str, Path]]) -> list[Tile]:
    """The tiles of one manifest picture: input, baseline, each restoration (a column is a
    folder of restorations, or the restoration file itself), original."""
    clean = read_image(record.clean).pixels
    degraded = read_image(record.degraded).pixels
    mask = read_mask(record.mask, record.size) if record.mask is not None else None
    height, width = record.size
    baseline = classical_baseline(
        record.task, degraded, record.size, mask=mask, upsampled=record.upsampled
    )
    pictures = [
        ("input", _degraded_as_seen(record, degraded)),
        (baseline_name(record.task), baseline),
    ]
    for label, folder in columns:
        path = folder if folder.is_file() else find_restored(folder, record.name)
        if path is None:
            raise UsageError(f"{folder} holds no restoration of {record.name}")
        pictures.append((label, read_image(path).pixels[..., :height, :width]))
    tiles = [Tile(label, picture, psnr(picture, clean)) for label, picture in pictures]
    return [*tiles, Tile("original", clean, None)]


def comparison_grid(
    degrade_dir: Path,
    columns: Sequence[tuple[str, Path]],
    *,
    names: Sequence[str] | None = None,
    crop: int | None = None,
    tile_width: int = 256,
) -> Image.Image:
    """The grid picture for the pictures `names` of the manifest (default: all of them).

    `crop`: show a centred crop x crop window of each picture, enlarged with nearest-neighbour
    so that pixels stay visible; otherwise whole pictures, resized to `tile_width`.
    """
    records = read_manifest(degrade_dir)
    if names:
        unknown = sorted(set(names) - {r.name for r in records})
        if unknown:
            raise UsageError(f"{degrade_dir} has no picture named {', '.join(unknown)}")
        records = [r for r in records if r.name in names]
    files = [label for label, path in columns if path.is_file()]
    if files and len(records) != 1:
        raise UsageError(
            f"--column {files[0]}=FILE shows one picture, and {len(records)} are asked for; "
            "pick one with --names"
        )
    rows = [[_render(tile, crop, tile_width) for tile in row_tiles(r, columns)] for r in records]
    row_heights = [max(t.height for t in row) for row in rows]
    grid = Image.new("RGB", (tile_width * len(rows[0]), sum(row_heights)), (24, 24, 24))
    top = 0
    for row, height in zip(rows, row_heights, strict=True):
        for i, tile in enumerate(row):
            grid.paste(tile, (i * tile_width, top))
        top += height
    return grid


def _render(tile: Tile, crop: int | None, width: int) -> Image.Image:
    picture = tile.picture
    if crop is not None:
        height, full_width = picture.shape[-2:]
        side = min(crop, height, full_width)
        top, left = (height - side) // 2, (full_width - side) // 2
        picture = picture[..., top : top + side, left : left + side]
    image = to_pil(picture)
    scale = width / image.width
    size = (width, max(1, round(image.height * scale)))
    resample = Image.NEAREST if crop is not None and scale >= 1 else Image.LANCZOS
    image = image.resize(size, resample)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, LABEL_BAR), fill=(0, 0, 0))
    text = tile.label if tile.psnr is None else f"{tile.label}  {tile.psnr:.2f} dB"
    draw.text((3, 1), text, fill=(255, 255, 255))
    return image


def to_pil(picture: Tensor) -> Image.Image:
    """A [1, 3, H, W] picture in [-1, 1] as an 8-bit RGB image."""
    levels = ((picture[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(levels.permute(1, 2, 0).numpy()))
