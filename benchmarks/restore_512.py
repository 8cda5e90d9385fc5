"""Wall time of `i2sb restore` on one 512x512 picture at NFE 10, per model and backend: the
speed bar of the bundled models, measured the way a user meets it (process start, model load,
x1, sampling, writing the file; ONNX Runtime's exports are made once and cached first).

A model whose start is a network (`--checkpoint runs/sr4x-esr.safetensors`, which starts from
Real-ESRGAN x4plus) is timed with its start, 128x128 in and 512x512 out; so is that network
alone, run by the ncnn runtime on the same picture in the same run, as a user of Real-ESRGAN
would run it (issue 29's bar: the whole restore no slower than that).

    python benchmarks/restore_512.py [--backend default --backend torch] [--repeat 2]
        [--model NAME] [--checkpoint FILE]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2sb_cli.degrade.tasks import family_of
from i2sb_cli.models.checkpoint import read_meta
from i2sb_cli.models.registry import bundled_models, resolve_model
from i2sb_cli.nets.starts import START_NETWORKS, start_files

SIZE = 512
# The start network alone, whole picture, in a process of its own: ncnn on the CPU with as many
# threads as i2sb's torch takes. The blobs are named as in Real-ESRGAN's graphs.
NCNN_UPSCALE = """
import sys
import ncnn
import numpy as np
from PIL import Image
param, weights, source, target, threads = sys.argv[1:]
net = ncnn.Net()
net.opt.use_vulkan_compute = False
net.opt.num_threads = int(threads)
assert net.load_param(param) == 0 and net.load_model(weights) == 0
rgb = np.asarray(Image.open(source).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
rgb = np.ascontiguousarray(rgb)  # ncnn.Mat borrows this buffer
extractor = net.create_extractor()
extractor.input("data", ncnn.Mat(rgb))
status, out = extractor.extract("output")
assert status == 0
pixels = (np.clip(np.array(out), 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
Image.fromarray(pixels).save(target)
"""


@dataclass(frozen=True)
class Timed:
    """A model to time: its label, its task family, restore's --model for it, its start."""

    label: str
    family: str
    model: str
    start: str


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


def models_to_time(names: list[str] | None, checkpoints: list[Path]) -> list[Timed]:
    """The bundled models named (all of them when nothing is named), then the checkpoints."""
    entries = selected_models(names) if names or not checkpoints else []
    models = [
        Timed(e.name, e.family, e.name, read_meta(resolve_model(e.name, None)).start)
        for e in entries
    ]
    for path in checkpoints:
        meta = read_meta(path)
        models.append(Timed(path.name, family_of(meta.task), str(path), meta.start))
    return models


def wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return time.perf_counter() - started


def timed(args: list[str]) -> float:
    return wall_seconds([sys.executable, "-m", "i2sb_cli", *args])


def ncnn_seconds(start: str, source: Path, target: Path) -> float:
    """Wall time of the start network alone on `source`, through ncnn, process start included."""
    param, weights = start_files(START_NETWORKS[start])
    threads = str(torch.get_num_threads())
    args = [str(param), str(weights), str(source), str(target), threads]
    return wall_seconds([sys.executable, "-c", NCNN_UPSCALE, *args])


def row(label: str, backend: str, nfe: str, runs: list[float]) -> None:
    print(
        f"| {label} | {backend} | {nfe} | {statistics.median(runs):.1f} | "
        f"{', '.join(f'{r:.1f}' for r in runs)} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # "default" passes no --backend: restore's own choice (auto), what a user gets.
    parser.add_argument("--backend", action="append", choices=["default", "torch", "onnxruntime"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--model", action="append", help="bundled models to time (default: all)")
    parser.add_argument(
        "--checkpoint", action="append", type=Path, default=[], help="checkpoint files to time"
    )
    args = parser.parse_args()
    models = models_to_time(args.model, args.checkpoint)
    print("| model | backend | NFE | wall s (median) | runs |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        for model in models:
            source, extra = picture(folder, model.family)
            for backend in args.backend or ["default", "torch", "onnxruntime"]:
                command = ["restore", str(source), "-o", str(folder / "out.png"), "--overwrite"]
                command += ["--model", model.model, "--nfe", str(args.nfe), *extra]
                if backend != "default":
                    command += ["--backend", backend]
                if backend != "torch":
                    timed(command)  # ONNX exports and their agreement check, made once and cached
                runs = [timed(command) for _ in range(args.repeat)]
                row(model.label, backend, str(args.nfe), runs)
        starts = {(m.start, m.family) for m in models if m.start in START_NETWORKS}
        for start, family in sorted(starts):
            source, _ = picture(folder, family)
            runs = [ncnn_seconds(start, source, folder / "ncnn.png") for _ in range(args.repeat)]
            row(f"{start} alone", "ncnn", "-", runs)


if __name__ == "__main__":
    main()
