"""Degradation operators: pure tensor functions on [B, C, H, W] pictures in [-1, 1].

`sr`, `blur`, `jpeg` and `masks` hold the operators; `registry` names them (`get_operator`).
"""

from .blur import blur_gauss, blur_uni, plain_blur, svd_blur, svd_deblur, wiener_deblur
from .jpeg import jpeg_numerical, jpeg_real, quantisation_tables
from .masks import (
    FREEFORM_BANDS,
    apply_hole,
    center_mask,
    freeform_mask,
    hole_fraction,
    palette_mask,
)
from .registry import PAPER_TASKS, TASK_NAMES, Degraded, Operator, get_operator
from .sr import (
    bicubic_downsample4,
    nearest_upsample4,
    pool_downsample4,
    sr4x_bicubic,
    sr4x_pool,
)

__all__ = [
    "FREEFORM_BANDS",
    "PAPER_TASKS",
    "TASK_NAMES",
    "Degraded",
    "Operator",
    "apply_hole",
    "bicubic_downsample4",
    "blur_gauss",
    "blur_uni",
    "center_mask",
    "freeform_mask",
    "get_operator",
    "hole_fraction",
    "jpeg_numerical",
    "jpeg_real",
    "nearest_upsample4",
    "palette_mask",
    "plain_blur",
    "pool_downsample4",
    "quantisation_tables",
    "sr4x_bicubic",
    "sr4x_pool",
    "svd_blur",
    "svd_deblur",
    "wiener_deblur",
]
