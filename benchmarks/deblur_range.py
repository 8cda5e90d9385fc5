"""`i2sb restore --task deblur` on the blurs photographs have, inside and outside the range a
blind model was trained on, and on sharp photos.

    python benchmarks/deblur_range.py data/val -o eval/deblur-range [--model M] [--nfe N] \
        [--ensemble E]

Each held-out photo is blurred by each kernel below (a true convolution with mirrored borders,
as a camera sees past the frame, rounded to 8 bits), restored through the CLI, and scored by
PSNR against the photo. What a user needs from a blind deblurrer: sharper where it can, never
worse than its input where it cannot (the out-of-range rows), and a sharp photo nearly
untouched (at least 40 dB against itself). The table is printed as Markdown and written to
OUT/scores.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from i2sb_cli.degrade.blind import convolve, defocus_kernel, gaussian_kernel
from i2sb_cli.evaluation.metrics import psnr
from i2sb_cli.pictures.files import read_image
from i2sb_cli.pictures.inputs import collect_inputs


def motion_kernel(length: int) -> torch.Tensor:
    """A horizontal line of `length` (odd) pixels: a camera moved straight during the exposure."""
    kernel = torch.zeros(length, length)
    kernel[length // 2] = 1.0 / length
    return kernel


# (name, kernel, whether a blind model's training range covers it; see degrade/blind.py)
KERNELS = [
    ("sharp", torch.ones(1, 1), True),
    ("gaussian 1.0 px", gaussian_kernel(1.0, 1.0, 0.0), True),
    ("gaussian 2.0 px", gaussian_kernel(2.0, 2.0, 0.0), True),
    ("defocus 3 px", defocus_kernel(3.0), True),
    ("gaussian 5.0 px", gaussian_kernel(5.0, 5.0, 0.0), False),
    ("defocus 7 px", defocus_kernel(7.0), False),
    ("motion 9 px", motion_kernel(9), False),
]


def blur(photo: Path, kernel: torch.Tensor) -> Image.Image:
    """The photo convolved with kernel (mirrored borders), rounded to 8 bits."""
    blurred = convolve(read_image(photo).pixels.double(), kernel.double())
    levels = ((blurred[0] + 1) * 127.5).round().clamp(0, 255).byte()
    return Image.fromarray(levels.permute(1, 2, 0).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("eval/deblur-range"))
    parser.add_argument("--model", help="checkpoint to score instead of the bundled model")
    parser.add_argument("--nfe", type=int, help="default: the model's own")
    parser.add_argument("--ensemble", type=int, help="restore --ensemble; default: the model's")
    args = parser.parse_args()
    photos = [item.path for item in collect_inputs([str(args.photos)], recursive=True)]
    rows = []
    for index, (name, kernel, in_range) in enumerate(KERNELS):
        blurred_dir = args.output / f"k{index}" / "blurred"
        restored_dir = args.output / f"k{index}" / "restored"
        blurred_dir.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            blur(photo, kernel).save(blurred_dir / f"{photo.stem}.png")
        command = [sys.executable, "-m", "i2sb_cli", "restore", str(blurred_dir)]
        command += ["-o", str(restored_dir), "--task", "deblur", "--overwrite", "-q"]
        command += ["--model", args.model] if args.model else []
        command += ["--nfe", str(args.nfe)] if args.nfe else []
        command += ["--ensemble", str(args.ensemble)] if args.ensemble else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
        before, after = [], []
        for photo in photos:
            clean = read_image(photo).pixels
            before.append(psnr(read_image(blurred_dir / f"{photo.stem}.png").pixels, clean))
            after.append(psnr(read_image(restored_dir / f"{photo.stem}.png").pixels, clean))
        sharp = kernel.numel() == 1  # the input is the photo: only the restored PSNR counts
        gains = [a - b for a, b in zip(after, before, strict=True)]
        rows.append(
            {
                "blur": name,
                "in_training_range": in_range,
                "input_psnr": None if sharp else sum(before) / len(before),
                "restored_psnr": sum(after) / len(after),
                "min_restored_psnr": min(after),
                "min_restored_minus_input": None if sharp else min(gains),
                "pictures_worse_than_input": None if sharp else sum(g < 0 for g in gains),
                "pictures": len(photos),
            }
        )
    print("| blur | trained range | input PSNR | restored PSNR (worst) | worst gain | worse |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        cells = [row["blur"], "in" if row["in_training_range"] else "out", "-"]
        cells += [f"{row['restored_psnr']:.2f} ({row['min_restored_psnr']:.2f})", "-", "-"]
        if row["input_psnr"] is not None:
            cells[2] = f"{row['input_psnr']:.2f}"
            cells[4] = f"{row['min_restored_minus_input']:+.2f}"
            cells[5] = f"{row['pictures_worse_than_input']} of {row['pictures']}"
        print(f"| {' | '.join(cells)} |")
    (args.output / "scores.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
