"""Measure a 4x super-resolution checkpoint on held-out photos, beside the classical answers.

For each photo (centre crop, a multiple of 4), the clean picture is degraded with the paper's
operator (sr4x-bicubic by default) and rounded to 8 bits, as users' small pictures are; the
checkpoint restores it at each NFE, and PSNR (8-bit RGB) is printed for the restoration, for
bicubic upsampling of the small picture (the classical baseline) and for the degraded input
itself (the nearest-upsampled x1).

    python benchmarks/eval_sr.py runs/sr4x-tiny.safetensors data/val --nfe 1 2 5 10
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from i2sb_cli.bridge import nfe_steps, per_image_noise, sample
from i2sb_cli.degrade import bicubic_downsample4, nearest_upsample4, pool_downsample4
from i2sb_cli.pictures.files import read_image
from i2sb_cli.pictures.inputs import collect_inputs
from i2sb_cli.runtime.torch_backend import load_torch_model
from i2sb_cli.training.data import quantize8


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] pictures after 8-bit rounding, as a file would hold them."""
    mse = (quantize8(a) - quantize8(b)).mul(127.5).square().mean()
    return float(10 * torch.log10(255**2 / mse))


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    size = min(size, height, width) // 4 * 4
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top : top + size, left : left + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ot-ode", action="store_true", help="deterministic sampler")
    parser.add_argument("--operator", choices=["bicubic", "pool"], default="bicubic")
    args = parser.parse_args()

    model = load_torch_model(args.checkpoint, torch.device("cpu"))
    downsample = bicubic_downsample4 if args.operator == "bicubic" else pool_downsample4
    rows = []
    for source in collect_inputs([str(args.photos)], recursive=False):
        clean = centre_crop(read_image(source.path).pixels, args.crop)
        small = quantize8(downsample(clean))
        x1 = nearest_upsample4(small)
        row = {
            "photo": source.relative.as_posix(),
            "degraded": psnr(x1, clean),
            "bicubic": psnr(
                F.interpolate(small, scale_factor=4, mode="bicubic").clamp(-1, 1), clean
            ),
        }
        for nfe in args.nfe:
            generator = torch.Generator().manual_seed(args.seed)
            restored = sample(
                model.denoise,
                x1,
                model.schedule,
                nfe_steps(nfe, model.schedule.interval),
                ot_ode=args.ot_ode,
                noise=per_image_noise([generator]),
                cond=x1 if model.meta.cond_x1 else None,
            )
            row[f"nfe{nfe}"] = psnr(restored, clean)
        rows.append(row)
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            file=sys.stderr,
        )
    columns = [k for k in rows[0] if k != "photo"]
    means = {k: sum(r[k] for r in rows) / len(rows) for k in columns}
    print(
        "mean PSNR (dB) over",
        len(rows),
        "photos:",
        json.dumps({k: round(v, 3) for k, v in means.items()}),
    )


if __name__ == "__main__":
    main()
