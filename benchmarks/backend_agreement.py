"""Do PyTorch and ONNX Runtime give the same picture? Each bundled model (or --model) restores
photos degraded by its family's task with both runtimes, same seed, at the model's defaults and
at NFE 10 with each sampler, and the share of 8-bit values within 2 levels is printed (issue
15's bar: 99.9%). `--backend auto` checks the same on one small synthetic picture when it
first exports a model; this checks it on photographs.

    python benchmarks/backend_agreement.py data/val -o eval/agreement [--model NAME] [--limit 2]
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
from evaluate_models import degraded_folder, i2sb  # benchmarks/ is first on sys.path
from PIL import Image
from restore_512 import selected_models

from i2sb_cli.models.checkpoint import read_meta
from i2sb_cli.models.registry import resolve_model
from i2sb_cli.restoring.chain import refuses_stochastic

LEVELS = 2
SETTINGS = {"default": [], "NFE 10 stochastic": ["--nfe", "10", "--stochastic"]}
SETTINGS["NFE 10 OT-ODE"] = ["--nfe", "10", "--ot-ode"]
# What `i2sb degrade` makes for each family: the degradation its bundled models are scored on.
DEGRADATIONS = {
    "sr4x": "sr4x-bicubic",
    "deblur": "blur-blind",
    "jpeg": "jpeg-real-10",
    "inpaint": "inpaint-freeform1020",
}


def agreement(first: Path, second: Path) -> tuple[float, int]:
    """Share of 8-bit values of the pictures in two folders within LEVELS, and the largest gap."""
    within, total, largest = 0, 0, 0
    for path in sorted(first.glob("*.png")):
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(second / path.name), dtype=np.int16)
        gap = np.abs(a - b)
        within, total = within + int((gap <= LEVELS).sum()), total + gap.size
        largest = max(largest, int(gap.max()))
    return within / total, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="clean photos (data/val)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval/agreement"))
    parser.add_argument("--model", action="append", help="bundled models (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    args = parser.parse_args()
    photos = args.photos
    if args.limit:
        photos = args.output / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in args.photos.iterdir() if p.is_file())[: args.limit]:
            shutil.copy(path, photos / path.name)
    print(f"| model | setting | values within {LEVELS} levels | largest gap |")
    print("|---|---|---|---|")
    for entry in selected_models(args.model):
        task = DEGRADATIONS[entry.family]
        folder = degraded_folder(photos, args.output, task, seed=0)
        mask = ["--mask", str(folder / "masks")] if (folder / "masks").is_dir() else []
        meta = read_meta(resolve_model(entry.name, None))
        for setting, options in SETTINGS.items():
            if "--stochastic" in options and refuses_stochastic(meta):
                print(f"| {entry.name} | {setting} | refused by restore | - |")
                continue
            restored = {}
            for backend in ("torch", "onnxruntime"):
                out = args.output / f"{entry.name}-{setting.replace(' ', '-')}-{backend}"
                command = ["restore", str(folder / "degraded"), "-o", str(out), "--overwrite"]
                command += ["--model", entry.name, "--backend", backend, *mask, *options]
                i2sb(*command)
                restored[backend] = out
            share, largest = agreement(restored["torch"], restored["onnxruntime"])
            print(f"| {entry.name} | {setting} | {share:.4%} | {largest} |")


if __name__ == "__main__":
    main()
