"""Where the model is unsure: the spread of several restorations of one picture.

With a fixed input the stochastic sampler still draws different plausible restorations (paper,
section 3); where they disagree, the input did not determine the picture. `spread` is the
per-pixel standard deviation across K samples, in 8-bit levels averaged over the colour
channels; `heat_map` draws it with a perceptually ordered colour map (inferno: black where all
samples agree, yellow where they differ most).
"""

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor


def spread(samples: Tensor) -> Tensor:
    """[K, 3, H, W] samples in [-1, 1] -> [H, W] standard deviation across them, in 8-bit levels.

    K must be at least 2: one sample has no spread to show.
    """
    if samples.dim() != 4 or samples.shape[0] < 2:
        raise ValueError(f"spread needs [K >= 2, C, H, W] samples, got {tuple(samples.shape)}")
    levels = samples.double().clamp(-1, 1).mul(127.5)
    return levels.std(dim=0, correction=0).mean(dim=0).float()


def heat_map(values: Tensor, *, top: float | None = None) -> Image.Image:
    """An [H, W] map as an RGB heat map, 0 black and `top` (default: the map's maximum) yellow."""
    top = float(values.max()) if top is None else top
    scaled = (values / top).clamp(0, 1) if top > 0 else torch.zeros_like(values)
    grey = (scaled * 255).round().to(torch.uint8).numpy()
    bgr = cv2.applyColorMap(np.ascontiguousarray(grey), cv2.COLORMAP_INFERNO)
    return Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
