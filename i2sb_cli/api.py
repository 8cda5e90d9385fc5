"""Using i2sb from Python: a model loaded once, pictures restored in memory.

    import i2sb_cli as i2sb

    r = i2sb.load("sr4x")
    big = r.restore(Image.open("photo.png"), seed=3, name="photo.png")

This is `i2sb restore` without the files. The model is prepared as the command prepares it
(restoring/prepare.py: located, hashed, loaded and checked once), and each picture goes through
the command's own code (`Restorer.prepare` and `Restorer.sample` in restoring/loop.py), seeded
from (seed, name) as the command seeds a picture from (--seed, its path relative to the input
given). So `i2sb restore photo.png --seed 3` and `r.restore(img, seed=3, name="photo.png")`
give the same pixels, and a script can move between the two without its results changing.

Pictures come in, and go back out, as what the caller holds: a PIL image (any mode; its
transparency, grey and 16 bits are kept as the command keeps them in a PNG), a NumPy array
(H x W x 3, uint8 or float in [0, 1]) or a torch tensor ([3, H, W] or [1, 3, H, W] in [-1, 1],
the package's own convention). A mistake in a picture or an option raises UsageError or
ImageError (i2sb_cli.errors) with a one-line message, as the command reports it.
"""

import dataclasses
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .degrade.tasks import TASK_CHOICES
from .errors import ImageError, UsageError
from .pictures.decode import declared_jpeg_quality, jpeg_coding_of
from .pictures.files import Picture, encode_image, hole_of, pixel_levels, read_image
from .restoring.chain import Stage, StageSpec, plan_chain, with_jpeg_cleaning
from .restoring.loop import Prepared, Restorer, RestoreSettings
from .restoring.prepare import Located, checkpoint_digests, locate_stages, prepare_stages
from .runtime import load_model
from .runtime.torch_backend import LoadedModel

__all__ = ["PictureLike", "Pipeline", "load"]

PictureLike = Image.Image | np.ndarray | Tensor
"""A picture as a caller holds it: a PIL image, an H x W x 3 array, or a [3, H, W] tensor."""
MaskLike = Image.Image | np.ndarray | Tensor
"""An inpainting hole: a PIL image (white = hole), or an H x W array or tensor (True or 1 =
hole; values at or above 0.5 count as hole, as the command's default --mask-threshold)."""

_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
"""PIL modes a PNG holds as they are; the others are converted to RGB(A) first."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Kind:
    """How a picture came in, so that its restoration goes back the same way."""

    kind: Literal["pil", "uint8", "float", "tensor"]
    batched: bool = False
    """A [1, 3, H, W] tensor (rather than [3, H, W])."""
    device: torch.device | None = None
    """The tensor's device."""


def load(
    model: str | os.PathLike[str],
    *,
    device: str = "auto",
    backend: str = "torch",
    precision: str | None = None,
    cache_dir: Path | None = None,
    offline: bool | None = None,
    clean_jpeg: bool = True,
    on_note: Callable[[str], None] | None = None,
) -> "Pipeline":
    """A model ready to restore pictures, loaded once for every call.

    `model` is a family or paper task (`"sr4x"`, `"jpeg"`, `"inpaint"`, `"sr4x-pool"`: its
    bundled or downloaded model, as `--task`), a model name (as `--model`, downloaded once
    unless `offline`), a checkpoint or exported file, or a chain (`"jpeg,sr4x"`). `device` is
    auto, cpu, cuda or cuda:N; `backend` torch (the default here: no export to make),
    onnxruntime or auto (the command's default: ONNX Runtime on the CPU where it is faster).
    `clean_jpeg`, as `--clean-jpeg`: `"sr4x"` cleans a JPEG's artefacts first (chain.py's
    with_jpeg_cleaning). Notes (an ONNX export made, a task the model was not trained on) go to
    `on_note`, else to this module's logger at INFO.
    """
    note = on_note or _log.info
    chain = _chain(os.fspath(model))
    if clean_jpeg:
        chain = with_jpeg_cleaning(chain)
    located = locate_stages(chain, cache_dir, offline, dry_run=False)

    def load_one(path: Path, sha256: str | None) -> LoadedModel:
        loaded = load_model(
            path, device, backend, precision=precision, cache_dir=cache_dir, sha256=sha256
        )
        for line in loaded.notes:
            note(line)
        return loaded

    return Pipeline(located, load_one, note)


def _chain(model: str) -> list[StageSpec]:
    """The stages `model` names: tasks (one, or several separated by commas) as `--task`
    takes them, anything else as `--model` (a file whose name is a task is a file)."""
    tasks = [item.strip() for item in model.split(",")]
    if not Path(model).expanduser().is_file() and all(item in TASK_CHOICES for item in tasks):
        return plan_chain(model, None, None)
    return plan_chain(None, model, None)


class Pipeline:
    """A loaded model (or chain of models) and the way to restore pictures with it: `restore`
    and `samples`. Made by `load`; holds its models for as long as it lives."""

    def __init__(
        self,
        located: list[Located],
        load: Callable[[Path, str | None], LoadedModel],
        note: Callable[[str], None],
    ) -> None:
        self._located = located
        self._digests = checkpoint_digests(located)
        self._models: dict[Path, LoadedModel] = {}

        def keep(path: Path, sha256: str | None) -> LoadedModel:
            self._models[path] = load(path, sha256)
            return self._models[path]

        self.stages: list[Stage] = prepare_stages(
            located, keep, on_note=note, digests=self._digests
        )
        """Each stage's model and its default sampling (the model's own)."""

    @property
    def family(self) -> str:
        """The task family of the pictures it restores (its first stage's)."""
        return self.stages[0].family

    def __repr__(self) -> str:
        names = ",".join(stage.model.meta.name for stage in self.stages)
        return f"<i2sb Pipeline {names} ({self.family}) on {self.stages[0].model.device}>"

    def restore(
        self,
        picture: PictureLike | Sequence[PictureLike],
        *,
        seed: int = 0,
        nfe: int | None = None,
        ot_ode: bool | None = None,
        detail: float | None = None,
        mask: MaskLike | Sequence[MaskLike] | None = None,
        name: str | Sequence[str] = "picture.png",
        batch_size: int = 1,
        jpeg_quality: int | None = None,
        jpeg_bins: bool = True,
    ) -> PictureLike | list[PictureLike]:
        """The restored picture, of the kind given (a list for a list).

        `seed` and `name` seed the picture as `i2sb restore NAME --seed SEED` does (its path
        relative to the input given): the same seed and name, the same pixels. `nfe`, `ot_ode`
        (False: the stochastic sampler) and `detail` are the command's options (None: the
        model's defaults). `mask` marks an inpainting hole (None: the picture's transparency);
        it must have the picture's size. A list of pictures takes a list of names (or one
        name, which the i-th picture gets as `stem-i.ext`) and a mask for all or one each;
        pictures of one size are sampled `batch_size` at a time, which changes no result.
        `jpeg_quality` is what a jpeg model that asks is told (None: a JPEG image's own, else
        estimated from the pixels), as `--jpeg-quality`. `jpeg_bins`, as `--jpeg-bins`: a jpeg
        model alone keeps its result near the DCT coefficients of a JPEG image Pillow opened.
        """
        single = not isinstance(picture, list | tuple)
        pictures = [picture] if single else list(picture)
        names = _names(name, len(pictures), single)
        masks = _masks(mask, len(pictures))
        masked = any(m is not None for m in masks)
        restorer = self._restorer(seed, 1, nfe, ot_ode, detail, masked, jpeg_quality, jpeg_bins)
        restored = _restore_all(restorer, pictures, names, masks, batch_size)
        return restored[0][0] if single else [samples[0] for samples in restored]

    def samples(
        self,
        picture: PictureLike,
        k: int,
        *,
        seed: int = 0,
        nfe: int | None = None,
        detail: float | None = None,
        mask: MaskLike | None = None,
        name: str = "picture.png",
    ) -> list[PictureLike]:
        """`k` restorations of one picture by the stochastic sampler, each from its own noise:
        where they differ, the picture did not tell (`i2sb restore --samples K`; sample 0 is
        the picture's single stochastic restoration)."""
        restorer = self._restorer(seed, k, nfe, False, detail, mask is not None)
        return _restore_all(restorer, [picture], [name], [mask], 1)[0]

    def _restorer(
        self,
        seed: int,
        samples: int,
        nfe: int | None,
        ot_ode: bool | None,
        detail: float | None,
        masked: bool,
        jpeg_quality: int | None = None,
        jpeg_bins: bool = True,
    ) -> Restorer:
        """The command's restorer for these options, on the models loaded: each stage checked
        again as prepare_stages checks it (NFE, sampler, mask), none loaded or hashed again."""
        if nfe is not None and (not isinstance(nfe, int) or nfe < 1):
            raise UsageError(f"nfe must be a whole number of network calls, 1 or more, not {nfe}")
        if detail is not None and not 0 <= detail <= 1:
            raise UsageError(f"detail must be between 0 and 1, not {detail}")
        located = self._located
        if nfe is not None:
            located = [
                dataclasses.replace(where, spec=dataclasses.replace(where.spec, nfe=nfe))
                for where in located
            ]
        stages = prepare_stages(
            located,
            lambda path, _: self._models[path],
            masking={"mask": masked},
            sampling={"ot_ode": ot_ode, "detail": detail},
            digests=self._digests,
        )
        settings = RestoreSettings(
            seed=seed, samples=samples, jpeg_quality=jpeg_quality, jpeg_bins=jpeg_bins
        )
        return Restorer(stages, settings)


def _names(name: str | Sequence[str], count: int, single: bool) -> list[str]:
    """One name per picture: the name given, a list's own, or `stem-i.ext` for the i-th."""
    if isinstance(name, str):
        if single:
            return [name]
        path = Path(name)
        return [path.with_name(f"{path.stem}-{i}{path.suffix}").as_posix() for i in range(count)]
    names = list(name)
    if len(names) != count:
        raise UsageError(f"{count} picture(s) but {len(names)} name(s): give one name each")
    return names


def _masks(mask: MaskLike | Sequence[MaskLike] | None, count: int) -> list[MaskLike | None]:
    """One mask (or None) per picture: the same for all, or a list's own."""
    if not isinstance(mask, list | tuple):
        return [mask] * count
    if len(mask) != count:
        raise UsageError(f"{count} picture(s) but {len(mask)} mask(s): give one mask each")
    return list(mask)


def _restore_all(
    restorer: Restorer,
    pictures: list[PictureLike],
    names: list[str],
    masks: list[MaskLike | None],
    batch_size: int,
) -> list[list[PictureLike]]:
    """Each picture's K restorations, of its own kind; pictures of one size in batches."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, not {batch_size}")
    results: list[list[PictureLike]] = []
    batch: list[tuple[Prepared, _Kind]] = []

    def flush() -> None:
        restored = restorer.sample([item for item, _ in batch])
        k = len(restored) // len(batch)
        for i, (item, kind) in enumerate(batch):
            results.append(
                [_give(row, item.picture, kind) for row in restored[i * k : (i + 1) * k]]
            )
        batch.clear()

    for picture, name, mask in zip(pictures, names, masks, strict=True):
        decoded, kind = _take(picture, name)
        hole = None if mask is None else _hole(mask, decoded.size)
        if restorer.stages[0].family == "inpaint" and hole is None and decoded.alpha is None:
            raise UsageError(
                "inpainting needs a mask: pass mask= (white, True or 1 = hole) or a picture "
                "with transparency (transparent = hole)"
            )
        item = restorer.prepare(decoded, name, mask=hole, mask_name="the mask")
        if batch and (item.x1.shape != batch[0][0].x1.shape or len(batch) == batch_size):
            flush()
        batch.append((item, kind))
    if batch:
        flush()
    return results


def _take(picture: PictureLike, name: str) -> tuple[Picture, _Kind]:
    """The picture as the command would decode its file, and how it came."""
    if isinstance(picture, Image.Image):
        return _from_pil(picture, name), _Kind("pil")
    if isinstance(picture, np.ndarray):
        return _from_array(picture, name)
    if isinstance(picture, Tensor):
        return _from_tensor(picture, name)
    raise UsageError(
        f"a picture is a PIL image, a NumPy array or a torch tensor, not {type(picture).__name__}"
    )


def _png(image: Image.Image) -> bytes:
    """The image as a PNG file's bytes (its ICC profile and EXIF kept): what the command reads."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    options: dict[str, Any] = {"compress_level": 0}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    exif = image.getexif()
    if exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def _from_pil(image: Image.Image, name: str) -> Picture:
    """Read exactly as the command reads the same picture saved as a PNG file, with the
    quality and coding a JPEG file's image declares (which the PNG cannot hold; its pixels
    are as the file stored them: an image Pillow opened is not turned by its EXIF)."""
    picture = read_image(Path(name), data=_png(image))
    return dataclasses.replace(
        picture,
        jpeg_quality=declared_jpeg_quality(image),
        jpeg_coding=jpeg_coding_of(image, orientation=1),
    )


def _picture(pixels: Tensor, name: str) -> Picture:
    """An 8-bit RGB picture without transparency or colour profile, named `name`."""
    return Picture(
        pixels=pixels,
        alpha=None,
        bit_depth=8,
        icc_profile=None,
        exif=None,
        source_mode="RGB",
        path=Path(name),
    )


def _from_array(array: np.ndarray, name: str) -> tuple[Picture, _Kind]:
    if array.ndim != 3 or array.shape[2] != 3:
        raise UsageError(
            f"a NumPy picture is H x W x 3 (RGB), not of shape {tuple(array.shape)}"
            + ("; a grey picture: np.stack([a] * 3, axis=-1)" if array.ndim == 2 else "")
        )
    # A writable, contiguous copy where needed (torch wants one; the caller's array is theirs).
    channels = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)
    if array.dtype == np.uint8:
        # As read_image scales 8-bit levels: the same floats as the file's.
        pixels = channels.float().mul_(2 / 255.0).sub_(1).clamp_(-1, 1)
        return _picture(pixels.contiguous()[None], name), _Kind("uint8")
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(f"a NumPy picture is uint8 (0-255) or float (0-1), not {array.dtype}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ImageError("a float NumPy picture holds values from 0 to 1 (and no NaN)")
    pixels = channels.float().mul(2).sub_(1).clamp_(-1, 1)
    return _picture(pixels.contiguous()[None], name), _Kind("float")


def _from_tensor(tensor: Tensor, name: str) -> tuple[Picture, _Kind]:
    batched = tensor.dim() == 4 and tensor.shape[0] == 1
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3 or (tensor.dim() == 4 and not batched):
        raise UsageError(
            f"a tensor picture is [3, H, W] or [1, 3, H, W], not {list(tensor.shape)} "
            "(several pictures: a list of tensors)"
        )
    if not tensor.is_floating_point():
        raise ImageError(f"a tensor picture holds floats in [-1, 1], not {tensor.dtype}")
    pixels = tensor.detach().to("cpu", torch.float32).reshape(1, *tensor.shape[-3:])
    if not pixels.isfinite().all() or pixels.abs().max() > 1 + 1e-3:
        raise ImageError("a tensor picture holds values from -1 to 1 (and no NaN)")
    kind = _Kind("tensor", batched=batched, device=tensor.device)
    return _picture(pixels.clamp(-1, 1).contiguous(), name), kind


def _hole(mask: MaskLike, size: tuple[int, int]) -> Tensor:
    """The hole [1, 1, H, W] (1 = hole) a mask marks, which must have the picture's size."""
    if isinstance(mask, Image.Image):
        hole = hole_of(read_image(Path("mask.png"), data=_png(mask)))
    elif isinstance(mask, np.ndarray | Tensor):
        values = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
        values = values.detach().cpu().squeeze()
        if values.dim() != 2:
            raise UsageError(f"a mask array is H x W, not of shape {tuple(mask.shape)}")
        if values.dtype == torch.uint8:
            values = values.float() / 255
        hole = (values.float() >= 0.5).float()[None, None]
    else:
        raise UsageError(
            f"a mask is a PIL image, a NumPy array or a torch tensor, not {type(mask).__name__}"
        )
    if tuple(hole.shape[-2:]) != tuple(size):
        (mh, mw), (h, w) = hole.shape[-2:], size
        raise ImageError(f"the mask is {mw}x{mh} pixels but the picture is {w}x{h}")
    return hole


def _give(restored: Tensor, picture: Picture, kind: _Kind) -> PictureLike:
    """One restoration [3, H, W] as the picture came: a PIL image as the command's PNG file
    holds it, 8-bit levels, floats in [0, 1], or a tensor in [-1, 1] where it was."""
    if kind.kind == "pil":
        image = Image.open(io.BytesIO(encode_image("PNG", restored, like=picture)))
        image.load()
        return image
    if kind.kind == "uint8":
        return pixel_levels(restored, 8)
    pixels = restored.clamp(-1, 1)
    if kind.kind == "float":
        return pixels.add(1).div_(2).permute(1, 2, 0).contiguous().numpy()
    return (pixels[None] if kind.batched else pixels).to(kind.device)
