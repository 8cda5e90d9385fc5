"""`i2sb degrade`: clean pictures in; degraded pictures, masks and a manifest out.

Layout of the output folder OUT, so that `i2sb restore OUT/degraded --mask OUT/masks` works and
a script can pair every restoration with its clean original:
    OUT/degraded/<relative name>.png   what `restore` takes (for sr4x the 1/4-size picture)
    OUT/masks/<relative name>.png      inpainting only: white = hole
    OUT/exact/<relative name>.npy      with --exact: the float32 [3, h, w] values before rounding
    OUT/manifest.jsonl                 one JSON object per pair; paths relative to OUT
PNG files hold round((clamp(v, -1, 1) + 1) / 2 * 255) (or 65535 with --bit-depth 16): values
the JPEG operators push outside [-1, 1] are clipped there, and --exact keeps them.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from ..degrade import PAPER_TASKS, Operator, get_operator, nearest_upsample4
from ..degrade.tasks import FAMILIES
from ..errors import I2SBError, UsageError
from ..models.registry import family_degradation
from ..pictures.files import atomic_write, picture_pixels, read_image, read_mask, write_image
from ..pictures.inputs import PICTURE_EXTENSIONS, InputFile, collect_inputs, plan_outputs
from ..restoring.loop import image_seed
from .common import EXIT_FAILED, Quiet, console, errors, reports_errors
from .progress import PictureProgress, works

MANIFEST = "manifest.jsonl"


def _check_task(value: str) -> str:
    if value in FAMILIES:
        return value
    try:
        get_operator(value)
    except I2SBError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _user_mask(masks: Path, source: InputFile) -> Path:
    """--mask FILE serves every picture; --mask DIR holds `<name>.<ext>` or `<name>_mask.<ext>`
    at the picture's relative path (the rule `restore --mask DIR` uses)."""
    if masks.is_file():
        return masks
    folder = masks / source.relative.parent
    for stem in (source.relative.stem, f"{source.relative.stem}_mask"):
        for ext in sorted(PICTURE_EXTENSIONS):
            if (folder / f"{stem}{ext}").is_file():
                return folder / f"{stem}{ext}"
    raise UsageError(f"no mask for {source.relative.as_posix()} in {masks}")


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return path.resolve().as_posix()


Inputs = Annotated[
    list[str], typer.Argument(help="Clean pictures, folders or globs.", show_default=False)
]
Output = Annotated[
    Path,
    typer.Option(
        "-o",
        "--output",
        help="Folder for degraded/, masks/, exact/ and manifest.jsonl.",
        show_default=False,
    ),
]
Task = Annotated[
    str,
    typer.Option(
        help="The degradation: a task listed above (Q: a JPEG quality 1-100), or a family "
        "(sr4x, deblur, jpeg, inpaint) for the degradation its bundled model restores.",
        callback=_check_task,
        show_default=False,
    ),
]
Seed = Annotated[
    int, typer.Option(help="Seed; each picture's mask comes from (seed, its relative path).")
]
Upsampled = Annotated[
    bool,
    typer.Option(help="sr4x: write the paper's nearest-upsampled form at the input's size."),
]
BitDepth = Annotated[int, typer.Option(help="Bits per channel in the PNG files: 8 or 16.")]
Exact = Annotated[
    bool, typer.Option(help="Also keep the exact float32 values as .npy under exact/.")
]
Mask = Annotated[
    Path | None,
    typer.Option(help="inpaint-mask: mask FILE for all, or DIR with one per picture."),
]
PaletteMasks = Annotated[
    Path | None,
    typer.Option(help="inpaint-freeform*: draw masks from Palette's masks .npz file."),
]
AlphaHole = Annotated[
    bool,
    typer.Option(help="Inpainting: also mark the hole as transparency in the PNG."),
]
Recursive = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into sub-folders.")]
Overwrite = Annotated[
    bool, typer.Option(help="Replace a degraded set already in the output folder.")
]
JsonLines = Annotated[bool, typer.Option("--json", help="Print each manifest record on stdout.")]


@reports_errors
def degrade(
    inputs: Inputs,
    output: Output,
    task: Task,
    seed: Seed = 0,
    upsampled: Upsampled = False,
    bit_depth: BitDepth = 8,
    exact: Exact = False,
    mask: Mask = None,
    palette_masks: PaletteMasks = None,
    alpha_hole: AlphaHole = True,
    recursive: Recursive = False,
    overwrite: Overwrite = False,
    json_lines: JsonLines = False,
    quiet: Quiet = False,
) -> None:
    """Degrade clean pictures exactly as the paper did, to make test pairs for `restore`.

    Tasks of the paper: sr4x-pool, sr4x-bicubic, blur-uni, blur-gauss, jpeg-5,
    jpeg-10, inpaint-center, inpaint-freeform1020, inpaint-freeform2030.
    Also: jpeg-Q (Q: any quality 1-100), inpaint-freeform3040.
    Real-world variants: blur-uni-plain, blur-gauss-plain (true convolutions),
    blur-blind (a photographic blur drawn per picture: Gaussian, defocus or none),
    jpeg-real-Q (a real JPEG file), inpaint-mask (your own masks, --mask).
    As pictures come off phones and the web (blur, resize, noise and JPEG, twice, drawn per
    picture and written to the manifest): real-sr4x (4x smaller), real-blur, real-jpeg;
    real-inpaint (an object's, strokes' or a box's hole in a photo saved as a JPEG).
    Families, as restore takes them: sr4x, deblur, jpeg, inpaint stand for the degradation
    that the family's bundled model restores (`restore --task FAMILY`); stderr names it.
    """
    if task in FAMILIES:
        task = _family_task(task)
    operator = get_operator(task, palette_masks=palette_masks)
    _check_options(operator, bit_depth, upsampled, mask, palette_masks)
    sources = collect_inputs(inputs, recursive=recursive)
    targets = plan_outputs(sources, output / "degraded", suffix="", default_ext=".png")
    existing = [p for p in [output / MANIFEST, *targets] if p.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; pass --overwrite to replace the set")

    settings = _Settings(operator, output, seed, upsampled, bit_depth, exact, mask, alpha_hole)
    records, failed = _degrade_all(settings, sources, targets, json_lines)
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    atomic_write(output / MANIFEST, lambda file: file.write(text))
    console.print(f"done: {len(records)} degraded, {failed} failed; {output / MANIFEST}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _family_task(family: str) -> str:
    name = family_degradation(family)
    console.print(
        f"--task {family} -> {name}: the degradation restore --task {family} expects "
        "(name a task for another)",
        markup=False,
        soft_wrap=True,
    )
    return name


def _check_options(
    operator: Operator,
    bit_depth: int,
    upsampled: bool,
    mask: Path | None,
    palette_masks: Path | None,
) -> None:
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    if upsampled and operator.family != "sr4x":
        raise UsageError("--upsampled is for the sr4x tasks")
    if (mask is not None) != operator.needs_mask:
        raise UsageError("--mask FILE|DIR goes with --task inpaint-mask, and it needs one")
    for path, flag in ((mask, "--mask"), (palette_masks, "--palette-masks")):
        if path is not None and not path.exists():
            raise UsageError(f"{flag} {path}: no such file or folder")


@dataclasses.dataclass(frozen=True)
class _Settings:
    operator: Operator
    root: Path
    seed: int
    upsampled: bool
    bit_depth: int
    exact: bool
    masks: Path | None
    alpha_hole: bool


def _degrade_all(
    settings: _Settings, sources: list[InputFile], targets: list[Path], json_lines: bool
) -> tuple[list[dict[str, object]], int]:
    """Degrade each picture, reporting each; the manifest records and the count of failures."""
    records, failed = [], 0
    pixels = works([picture_pixels(source.path) for source in sources])
    with PictureProgress(console, "degrading", len(sources), sum(pixels)) as progress:
        for source, target, work in zip(sources, targets, pixels, strict=True):
            try:
                record = _degrade_one(settings, source, target)
            except I2SBError as exc:
                failed += 1
                progress.finished(work, timed=False)
                message = f"{escape(str(source.path))}: {escape(str(exc))}"
                errors.print(f"[red]failed[/] {message}", soft_wrap=True)
                continue
            progress.finished(work)
            records.append(record)
            console.print(f"degraded {escape(str(source.path))} -> {escape(str(target))}")
            if json_lines:
                print(json.dumps(record), flush=True)
    return records, failed


def _degrade_one(settings: _Settings, source: InputFile, target: Path) -> dict[str, object]:
    """Degrade one picture, write its files and return its manifest record."""
    operator, root, seed = settings.operator, settings.root, settings.seed
    picture = read_image(source.path)
    name = source.relative.with_suffix(".png")
    picture_seed = image_seed(seed, source.relative.as_posix())
    masks = settings.masks
    user_mask = read_mask(_user_mask(masks, source), picture.size) if masks else None
    result = operator(picture.pixels, seed=picture_seed, mask=user_mask)
    pixels = result.picture
    if settings.upsampled:
        pixels = nearest_upsample4(pixels)[..., : picture.size[0], : picture.size[1]]

    # The degraded picture keeps the source's colour profile and EXIF; its hole, if asked,
    # becomes alpha. It is RGB even for a grey source: the official blur gives each channel
    # its own multipliers.
    hole = 1 - result.mask if result.mask is not None and settings.alpha_hole else None
    like = dataclasses.replace(picture, alpha=hole, source_mode="RGB")
    metadata = {
        "i2sb:degradation": operator.name,
        "i2sb:seed": str(seed),
        "i2sb:image-seed": str(picture_seed),
    }
    write_image(target, pixels, like=like, metadata=metadata, bit_depth=settings.bit_depth)
    form = "full" if operator.family != "sr4x" else "upsampled" if settings.upsampled else "low-res"
    record: dict[str, object] = {
        "name": name.as_posix(),
        "clean": _relative(source.path, root),
        "degraded": _relative(target, root),
        "mask": None,
        "exact": None,
        "task": operator.name,
        "restore_task": operator.name if operator.name in PAPER_TASKS else operator.family,
        "form": form,
        "size": list(picture.size),
        "degraded_size": list(pixels.shape[-2:]),
        "seed": seed,
        "image_seed": picture_seed,
        "bit_depth": settings.bit_depth,
        "params": dict(operator.params),
        **result.details,
    }
    if result.mask is not None:
        mask_path = root / "masks" / name
        write_image(mask_path, (result.mask * 2 - 1).expand(-1, 3, -1, -1), bit_depth=8)
        record["mask"] = _relative(mask_path, root)
    if settings.exact:
        exact_path = root / "exact" / name.with_suffix(".npy")
        values = pixels[0].detach().cpu().float().numpy()
        atomic_write(exact_path, lambda file: np.save(file, values))
        record["exact"] = _relative(exact_path, root)
    return record
