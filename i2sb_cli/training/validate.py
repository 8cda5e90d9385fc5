"""Validation during training: restore held-out pictures with the EMA weights, measure PSNR.

The pictures are centre crops of held-out photos, each degraded once (seeded) by every
training task, or centre crops of held-out pairs. They are restored by the sampler (Algorithm
2) at a given NFE, exactly as `i2sb restore` would with the checkpoint being written, and
scored in PSNR on 8-bit pixels, as a file would hold them, beside x1: the degraded input (for
sr4x its nearest-upsampled form, for inpainting the picture with a white hole), or for a
classical start the classical restoration the bridge starts from.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..bridge import Schedule, nfe_steps, per_image_noise, sample
from ..degrade import apply_hole
from ..evaluation.metrics import psnr
from ..models.condition import network_cond
from ..nets.denoiser import BridgeDenoiser
from ..pictures.files import read_image
from ..pictures.inputs import collect_inputs
from ..restoring.loop import image_seed
from .data import Degrader, quantize8
from .pairs import PairedCrops


@dataclass(frozen=True)
class ValItem:
    name: str
    task: str
    x0: Tensor
    """[1, 3, H, W] clean picture in [-1, 1]."""
    x1: Tensor
    """The network's start, as training forms it (sr4x upsampled, inpainting hole-filled)."""
    mask: Tensor | None
    jpeg_quality: Tensor | None = None
    """[1] the quality the degraded picture's JPEG declares (jpeg family)."""


def centre_crop(x: Tensor, size: int, multiple: int) -> Tensor:
    """The central size x size window (smaller for a smaller picture), sides a multiple."""
    height, width = x.shape[-2:]
    side = min(size, height, width) // multiple * multiple
    top, left = (height - side) // 2, (width - side) // 2
    return x[..., top : top + side, left : left + side]


def photo_items(
    folder: Path, degrader: Degrader, *, crop: int, multiple: int, seed: int
) -> list[ValItem]:
    """Every photo of `folder` degraded by every task of `degrader`."""
    items = []
    for source in collect_inputs([str(folder)], recursive=True):
        x0 = centre_crop(read_image(source.path).pixels, crop, multiple)
        name = source.relative.as_posix()
        for k, task in enumerate(degrader.tasks):
            generator = torch.Generator().manual_seed(image_seed(seed, f"{task}:{name}"))
            x1, mask, quality = degrader.degrade(k, x0, generator)
            items.append(ValItem(name, task, x0, x1, mask, quality))
    return items


def pair_items(pairs: PairedCrops, *, task: str, seed: int) -> list[ValItem]:
    """The centre crop of every held-out pair."""
    items = []
    for index, pair in enumerate(pairs.pairs):
        generator = torch.Generator().manual_seed(image_seed(seed, pair.name))
        x0, x1, mask, quality = pairs.centre(index, generator)
        items.append(ValItem(pair.name, task, x0, x1, mask, quality))
    return items


def validate(
    net: nn.Module,
    schedule: Schedule,
    items: Iterable[ValItem],
    *,
    nfe: int,
    ot_ode: bool,
    cond_x1: bool,
    condition: str = "",
    seed: int,
    classical_start: bool = False,
) -> dict[str, object]:
    """Mean PSNR of the restorations and of the degraded inputs, overall and per task.

    `classical_start`: x1 is a classical restoration (Telea for inpainting), scored as it is;
    otherwise an inpainting x1 holds noise in its hole, which is scored white, as people see
    the degraded picture."""
    device = next(net.parameters()).device
    denoise = BridgeDenoiser(net, schedule)
    steps = nfe_steps(nfe, schedule.interval)
    restored_sum: dict[str, float] = {}
    input_sum: dict[str, float] = {}
    counts: dict[str, int] = {}
    for item in items:
        generator = torch.Generator().manual_seed(image_seed(seed, f"val:{item.name}"))
        x1 = item.x1.to(device)
        mask = None if item.mask is None else item.mask.to(device)
        x = sample(
            denoise,
            x1,
            schedule,
            steps,
            ot_ode=ot_ode,
            noise=per_image_noise([generator]),
            mask=mask,
            cond=network_cond(
                x1, cond_x1=cond_x1, condition=condition, jpeg_quality=item.jpeg_quality
            ),
        ).cpu()
        x1, seen = x1.cpu(), x1.cpu()
        if item.mask is not None:
            x = (1 - item.mask) * x1 + item.mask * x  # known pixels kept, as restore does
            if not classical_start:
                seen = apply_hole(x1, item.mask)
        restored_sum[item.task] = restored_sum.get(item.task, 0.0) + psnr(quantize8(x), item.x0)
        input_sum[item.task] = input_sum.get(item.task, 0.0) + psnr(quantize8(seen), item.x0)
        counts[item.task] = counts.get(item.task, 0) + 1
    total = sum(counts.values())
    return {
        "psnr": round(sum(restored_sum.values()) / total, 4),
        "psnr_input": round(sum(input_sum.values()) / total, 4),
        "pictures": total,
        "by_task": {task: round(restored_sum[task] / counts[task], 4) for task in counts},
    }
