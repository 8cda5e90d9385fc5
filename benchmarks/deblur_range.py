"""`i2sb restore --task deblur` on the blurs photographs have, inside and outside the range a
blind model was trained on, and on sharp photos.

    python benchmarks/deblur_range.py data/val -o eval/deblur-range [--model M] [--nfe N]

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

import numpy as np
import torch
from PIL import Image

from i2sb_cli.degrade.blind import defocus_kernel, gaussian_kernel
from i2sb_cli.evaluation.metrics import psnr
from i2sb_cli.pictures.inputs import collect_inputs


def motion_kernel(length: int) -> torch.Tensor:
    """A horizontal line of `length` pixels: a camera moved straight during the exposure."""
    return torch.full((1, length), 1.0 / length)


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


def blur(photo: np.ndarray, kernel: torch.Tensor) -> np.ndarray:
    """photo (H x W x 3 uint8) convolved with kernel, mirrored borders, rounded to uint8."""
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].double()
    kh, kw = kernel.shape
    padded = torch.nn.functional.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    weight = kernel.double().flip(0, 1).expand(3, 1, kh, kw)
    out = torch.nn.functional.conv2d(padded, weight, groups=3)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def as_tensor(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("eval/deblur-range"))
    parser.add_argument("--model", help="checkpoint to score instead of the bundled model")
    parser.add_argument("--nfe", type=int, help="default: the model's own")
    args = parser.parse_args()
    photos = [item.path for item in collect_inputs([str(args.photos)], recursive=True)]
    rows = []
    for index, (name, kernel, in_range) in enumerate(KERNELS):
        blurred_dir = args.output / f"k{index}" / "blurred"
        restored_dir = args.output / f"k{index}" / "restored"
        blurred_dir.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            array = np.asarray(Image.open(photo).convert("RGB"))
            Image.fromarray(blur(array, kernel)).save(blurred_dir / f"{photo.stem}.png")
        command = [sys.executable, "-m", "i2sb_cli", "restore", str(blurred_dir)]
        command += ["-o", str(restored_dir), "--task", "deblur", "--overwrite", "-q"]
        command += ["--model", args.model] if args.model else []
        command += ["--nfe", str(args.nfe)] if args.nfe else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
        before, after = [], []
        for photo in photos:
            clean = as_tensor(photo)
            before.append(psnr(as_tensor(blurred_dir / f"{photo.stem}.png"), clean))
            after.append(psnr(as_tensor(restored_dir / f"{photo.stem}.png"), clean))
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
