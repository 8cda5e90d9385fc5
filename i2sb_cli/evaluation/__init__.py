"""Judging restorations: `metrics` (PSNR, SSIM, a perceptual distance where installed) and
`score`, which scores a restored folder against the originals `i2sb degrade` recorded, beside
the classical answer of degrade/baselines.py (`i2sb evaluate`)."""

from .metrics import PSNR_CAP, Perceptual, load_perceptual, psnr, ssim
from .score import METHODS, Failure, Record, Scores, Summary, evaluate, read_manifest

__all__ = [
    "METHODS",
    "PSNR_CAP",
    "Failure",
    "Perceptual",
    "Record",
    "Scores",
    "Summary",
    "evaluate",
    "load_perceptual",
    "psnr",
    "read_manifest",
    "ssim",
]
