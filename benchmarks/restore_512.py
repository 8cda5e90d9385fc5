"""Wall time of `i2sb restore` on one 512x512 picture at NFE 10, per bundled model and backend:
the speed bar of the bundled models, measured the way a user meets it (process start, model
load, x1, sampling, writing the file; ONNX Runtime's export is made once and cached first).

    python benchmarks/restore_512.py [--backend default --backend torch] [--repeat 2] [--model NAME]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from i2sb_cli.models.registry import bundled_models

SIZE = 512


def picture(folder: Path, family: str, output_side: int = SIZE) -> tuple[Path, list[str]]:
    """A smooth test picture whose restoration is output_side pixels square (a quarter of that
    for sr4x), and the options its family needs."""
    side = output_side // 4 if family == "sr4x" else output_side
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.BICUBIC)
    path = folder / f"{family}.png"
    image.save(path)
    if family != "inpaint":
        return path, []
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : side // 2, side // 3 : 2 * side // 3] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return path, ["--mask", str(folder / "mask.png")]


def selected_models(names: list[str] | None) -> list:
    """The bundled models named (all of them when None), in the manifest's order."""
    entries = [e for e in bundled_models() if not names or e.name in names]
    if not entries:
        sys.exit(f"no bundled model is named {', '.join(names or [])}")
    return entries


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "i2sb_cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"i2sb {' '.join(args)} failed:\n{done.stderr.strip()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # "default" passes no --backend: restore's own choice (auto), what a user gets.
    parser.add_argument("--backend", action="append", choices=["default", "torch", "onnxruntime"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--model", action="append", help="bundled models to time (default: all)")
    args = parser.parse_args()
    entries = selected_models(args.model)
    print("| model | backend | NFE | wall s (median) | runs |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        for entry in entries:
            source, extra = picture(folder, entry.family)
            for backend in args.backend or ["default", "torch", "onnxruntime"]:
                command = ["restore", str(source), "-o", str(folder / "out.png"), "--overwrite"]
                command += ["--model", entry.name, "--nfe", str(args.nfe), *extra]
                if backend != "default":
                    command += ["--backend", backend]
                if backend != "torch":
                    timed(command)  # an ONNX export and its agreement check, made once and cached
                runs = [timed(command) for _ in range(args.repeat)]
                print(
                    f"| {entry.name} | {backend} | {args.nfe} | {statistics.median(runs):.1f} | "
                    f"{', '.join(f'{r:.1f}' for r in runs)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
