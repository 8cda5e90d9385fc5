"""Reading and writing pictures.

A picture is read into a float32 tensor [1, 3, H, W] in [-1, 1], whatever its file stored:
grey, palette, CMYK or 16-bit pixels, an alpha channel, an EXIF orientation (applied on
reading, so that the network sees the picture upright). What the restored picture should carry
over (alpha, ICC profile, EXIF, bit depth) travels alongside in a `Picture` and is put back by
`write_image`, which writes atomically: a hidden temporary file in the target folder, fsync,
then a rename, so that no half-written output ever exists under the final name.

Pillow does most of the work. OpenCV decodes 16-bit colour PNG and TIFF (Pillow reduces them
to 8 bits) and encodes 16-bit PNG. TIFF is written by `_tiff`, because neither library writes
16-bit colour TIFF with an ICC profile and EXIF, and Pillow's libtiff path fails on EXIF
sub-directories.

Text metadata (seed, model, task...) goes into PNG tEXt/iTXt chunks, one per key, and into
the EXIF UserComment of JPEG, WebP and TIFF as one JSON object; BMP carries none.
`read_metadata` reads either back.
"""

import contextlib
import io
import json
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, PngImagePlugin
from torch import Tensor

from .errors import ImageError, UsageError
from .image_formats import encode_png16, encode_tiff

FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
"""Writable extensions (lower case) and the format each one selects."""

JPEG_QUALITY = 95

_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_EXIF_TEXT_FORMATS = frozenset({"JPEG", "WEBP", "TIFF"})

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003
_ASCII_COMMENT = b"ASCII\x00\x00\x00"  # the character-code prefix of an EXIF UserComment
# Tags that describe a TIFF file's own layout: a TIFF's EXIF holds them, but they are stale
# (or wrong) for any other file, so they are dropped when the EXIF is kept. The ICC profile
# (34675) travels in `Picture.icc_profile` instead.
_TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320}
    | {322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 530, 531, 532, 34675}
)

# Errors the decoders and encoders raise for files they cannot handle. Pillow signals a broken
# file with any of the first six; anything else escaping is a bug in this module.
_CODEC_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    cv2.error,
)


@dataclass(frozen=True)
class Picture:
    """A decoded picture and what its restored version should carry over."""

    pixels: Tensor
    """float32 [1, 3, H, W] in [-1, 1], upright (EXIF orientation applied)."""
    alpha: Tensor | None
    """float32 [1, 1, H, W] in [0, 1] (1 = opaque), or None when the file had no alpha."""
    bit_depth: int
    """8 or 16: bits per channel of the file, the default depth when writing the result."""
    icc_profile: bytes | None
    """The embedded RGB ICC profile; None when absent or for a non-RGB profile (grey, or CMYK,
    whose pixels are converted to sRGB on reading)."""
    exif: bytes | None
    """EXIF as Pillow writes it ("Exif\\0\\0" + TIFF), orientation reset to 1."""
    source_mode: str
    """Pillow's mode of the file ("RGB", "P", "I;16", "CMYK"...); "RGB;16" etc. for 16-bit
    colour decoded by OpenCV."""
    path: Path

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        height, width = self.pixels.shape[-2:]
        return height, width


def read_image(path: str | Path) -> Picture:
    """Decode a picture file into a `Picture`; any unreadable file raises `ImageError`."""
    path = Path(path)
    try:
        # Pillow warns above ~89 MP and refuses above twice that: keep the refusal (the guard
        # against decompression bombs) but let real photos of up to ~179 MP open quietly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            array, scale, bit_depth, mode, icc = _decode(image, path)
            exif, orientation = _exif_of(image)
    except _CODEC_ERRORS as err:
        raise ImageError(f"cannot read {path}: {_reason(err)}") from err
    array = _orient(array, orientation)

    # Pillow's arrays are read-only views; torch wants a writable, contiguous buffer.
    channels = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)
    colours = 1 if channels.shape[0] <= 2 else 3
    pixels = channels[:colours].contiguous().float().mul_(2 / scale).sub_(1).clamp_(-1, 1)
    alpha = None
    if channels.shape[0] in (2, 4):
        alpha = channels[colours:].contiguous().float().div_(scale).clamp_(0, 1)[None]
    return Picture(
        pixels=pixels.expand(3, -1, -1).contiguous()[None],
        alpha=alpha,
        bit_depth=bit_depth,
        icc_profile=icc,
        exif=exif,
        source_mode=mode,
        path=path,
    )


def write_image(
    path: str | Path,
    pixels: Tensor,
    *,
    like: Picture | None = None,
    metadata: dict[str, str] | None = None,
    bit_depth: int | None = None,
) -> None:
    """Write [1, 3, H, W] (or [3, H, W]) pixels in [-1, 1] atomically; the extension picks the
    format (`FORMATS`).

    Values are clamped to [-1, 1] and rounded to the nearest level. `bit_depth` (default:
    like's, else 8) applies to PNG and TIFF; the other formats are 8-bit. From `like` the
    ICC profile and EXIF (orientation 1) are kept where the format can hold them (not BMP),
    and its alpha, resized to the output size, for PNG, TIFF and WebP. JPEG is written at
    quality 95 without chroma subsampling, WebP losslessly. `metadata` goes into PNG text
    chunks, or as JSON into the EXIF UserComment of JPEG, WebP and TIFF; BMP drops it.
    Parent folders are created; the file appears complete or not at all.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(FORMATS))
        raise ImageError(f"cannot write {path}: unknown extension; use one of {supported}")
    depth = bit_depth if bit_depth is not None else like.bit_depth if like else 8
    if depth not in (8, 16):
        raise UsageError(f"bit depth must be 8 or 16, got {depth}")
    if fmt not in _SIXTEEN_BIT_FORMATS:
        depth = 8

    array = _quantise(_as_chw(pixels).add(1).div_(2), depth)
    if like is not None and like.alpha is not None and fmt in _ALPHA_FORMATS:
        alpha = _resized(like.alpha, array.shape[:2])
        array = np.concatenate([array, _quantise(alpha, depth)], axis=2)
    icc = like.icc_profile if like is not None and fmt != "BMP" else None
    exif = None
    if fmt != "BMP":
        text = metadata if fmt in _EXIF_TEXT_FORMATS else None
        exif = _exif_for_output(like.exif if like else None, text, array.shape[:2])
    png_text = metadata if fmt == "PNG" else None

    def encode(file: BinaryIO) -> None:
        _encode(file, fmt, array, icc=icc, exif=exif, text=png_text)

    _atomic_write(path, encode)


def read_mask(path: str | Path, size: tuple[int, int]) -> Tensor:
    """Read an inpainting mask as a float tensor [1, 1, H, W] of {0, 1}, 1 = hole.

    White (grey level >= 128 of 255 after conversion to grey) marks the hole; transparent
    pixels count as black. `size` is the picture's (height, width), which the mask must match.
    """
    mask = read_image(path)
    if mask.size != tuple(size):
        (mh, mw), (h, w) = mask.size, size
        raise ImageError(
            f"mask {path} is {mw}x{mh} pixels but the picture is {w}x{h}; "
            "give a mask of the picture's size"
        )
    rgb = mask.pixels.add(1).div(2)
    luma = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    if mask.alpha is not None:
        luma = luma * mask.alpha
    # Grey 128 maps to 128/255 > 0.5 and 127 to < 0.5: the same split as ">= 128" in 8 bits.
    return (luma >= 0.5).float()


def mask_from_alpha(alpha: Tensor) -> Tensor:
    """The hole of a picture's transparency: 1 where alpha < 0.5, else 0 (same shape)."""
    return (alpha < 0.5).float()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata `write_image` stored in a file ({} when there is none)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                return {str(k): str(v) for k, v in image.text.items()}
            comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except _CODEC_ERRORS as err:
        raise ImageError(f"cannot read {path}: {_reason(err)}") from err
    if not isinstance(comment, bytes) or not comment.startswith(_ASCII_COMMENT):
        return {}
    try:
        values = json.loads(comment[len(_ASCII_COMMENT) :].rstrip(b"\x00"))
    except ValueError:
        return {}  # a camera's own comment, not ours
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


# --- reading -------------------------------------------------------------------------------


def _decode(image: Image.Image, path: Path) -> tuple[np.ndarray, float, int, str, bytes | None]:
    """(H x W x C array with C = 1 grey, 2 grey+alpha, 3 RGB or 4 RGBA; the value of white;
    bit depth; source mode; RGB ICC profile or None)."""
    mode = image.mode
    icc = image.info.get("icc_profile") or None
    if icc is not None and icc[16:20] != b"RGB ":
        icc = None  # a grey or CMYK profile does not describe the RGB pixels we produce
    if _is_16bit_colour(image, path):
        array = _decode_opencv(path)
        channels = array.shape[2]
        wide_mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels] + ";16"
        return array, 65535.0 if array.dtype == np.uint16 else 255.0, 16, wide_mode, icc

    image.load()
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image).astype(np.float32).clip(0, 65535)
        return grey[:, :, None], 65535.0, 16, mode, icc
    if mode == "F":
        return np.asarray(image, dtype=np.float32).clip(0, 1)[:, :, None], 1.0, 16, mode, icc
    if mode == "CMYK":
        return np.asarray(_cmyk_to_srgb(image)), 255.0, 8, mode, None
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info
    if mode in ("L", "LA"):
        target = mode if mode == "LA" or not has_alpha else "LA"
    else:
        target = "RGBA" if has_alpha else "RGB"
    array = np.asarray(image if image.mode == target else image.convert(target))
    return (array[:, :, None] if array.ndim == 2 else array), 255.0, 8, mode, icc


def _is_16bit_colour(image: Image.Image, path: Path) -> bool:
    """Whether the file holds 16-bit colour (or grey + alpha) that Pillow would cut to 8 bits."""
    if image.format == "PNG":
        with path.open("rb") as file:
            header = file.read(26)
        # IHDR starts at byte 16: width, height, then bit depth and colour type.
        return header[24] == 16 and header[25] in (2, 4, 6)
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) == 16 and image.tag_v2.get(262) == 2
    return False


def _decode_opencv(path: Path) -> np.ndarray:
    # imdecode of the bytes rather than imread, which cannot open non-ASCII paths on Windows.
    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("damaged or truncated picture data")
    if array.ndim == 2:
        return array[:, :, None]
    if array.shape[2] == 2:
        return array
    order = [2, 1, 0, 3][: array.shape[2]]  # BGR(A) -> RGB(A)
    return array[:, :, order]


def _cmyk_to_srgb(image: Image.Image) -> Image.Image:
    """CMYK through its ICC profile when it has one (Pillow's plain conversion ignores ink
    behaviour and gives dull, shifted colours), else the plain conversion."""
    icc = image.info.get("icc_profile")
    if icc:
        with contextlib.suppress(ImageCms.PyCMSError, OSError):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted
    return image.convert("RGB")


def _exif_of(image: Image.Image) -> tuple[bytes | None, int]:
    """(EXIF bytes with orientation 1 and without TIFF layout tags, or None; the orientation)."""
    try:
        exif = image.getexif()
        orientation = exif.get(_ORIENTATION, 1)
        for tag in _TIFF_LAYOUT_TAGS & set(exif):
            del exif[tag]
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        data = exif.tobytes() if len(exif) else None
    except _CODEC_ERRORS:
        return None, 1  # broken EXIF: the pixels are still good, so read them without it
    return data, orientation if orientation in range(1, 9) else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an H x W x C array upright for an EXIF orientation (1-8), as viewers show it."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return turns[orientation](array) if orientation in turns else array


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "it is a folder"
    if isinstance(err, Image.UnidentifiedImageError):
        return "not a picture in a format this tool reads"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --- writing -------------------------------------------------------------------------------


def _as_chw(pixels: Tensor) -> Tensor:
    if pixels.dim() == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"expected pixels [1, 3, H, W] or [3, H, W], got {tuple(pixels.shape)}")
    # NaN would become an arbitrary level; mid-grey at least keeps the file sane.
    return torch.nan_to_num(pixels.detach().to("cpu", torch.float32), nan=0.0).clamp(-1, 1)


def _quantise(values: Tensor, depth: int) -> np.ndarray:
    """[C, H, W] (or [1, C, H, W]) values in [0, 1] -> H x W x C uint8 or uint16, rounded."""
    values = values.reshape(-1, *values.shape[-2:])
    top, dtype = (255, torch.uint8) if depth == 8 else (65535, torch.uint16)
    levels = values.clamp(0, 1).mul(top).round_().to(dtype)
    return levels.permute(1, 2, 0).contiguous().numpy()


def _resized(alpha: Tensor, size: tuple[int, int]) -> Tensor:
    alpha = alpha.detach().to("cpu", torch.float32)
    if tuple(alpha.shape[-2:]) == tuple(size):
        return alpha
    return F.interpolate(alpha, size=size, mode="bilinear", align_corners=False, antialias=True)


def _exif_for_output(
    source: bytes | None, text: dict[str, str] | None, size: tuple[int, int]
) -> bytes | None:
    """EXIF for the restored file: the source's, upright, with its recorded pixel size updated
    and `text` as a JSON UserComment."""
    if not source and not text:
        return None
    exif = Image.Exif()
    if source:
        exif.load(source)
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    if _EXIF_IFD in exif or text:
        sub = exif.get_ifd(_EXIF_IFD)
        if _PIXEL_X_DIMENSION in sub or _PIXEL_Y_DIMENSION in sub:
            sub[_PIXEL_Y_DIMENSION], sub[_PIXEL_X_DIMENSION] = size
        if text:
            sub[_USER_COMMENT] = _ASCII_COMMENT + json.dumps(text, sort_keys=True).encode("ascii")
    return exif.tobytes()


def _encode(
    file: BinaryIO,
    fmt: str,
    array: np.ndarray,
    *,
    icc: bytes | None,
    exif: bytes | None,
    text: dict[str, str] | None,
) -> None:
    if array.dtype == np.uint16 and fmt == "PNG":
        file.write(encode_png16(array, icc=icc, exif=exif, text=text or {}))
        return
    if fmt == "TIFF":
        file.write(encode_tiff(array, icc=icc, exif=exif))
        return
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            info.add_text(key, value)
        options.update(pnginfo=info, compress_level=6)
    elif fmt == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        options.update(lossless=True, exact=True)  # exact: keep colours under alpha 0
    Image.fromarray(array).save(file, format=fmt, **options)


def _atomic_write(path: Path, encode: Callable[[BinaryIO], None]) -> None:
    """Write via a hidden temporary file in the same folder, fsync, then rename over `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # ".name.<random>.tmp": hidden, and skipped by collect_inputs and by "*.png" globs.
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        # os.open applies the umask to 0o666, unlike mkstemp's private 0o600.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(temp, flags, 0o666)
    except OSError as err:
        raise ImageError(f"cannot write {path}: {_reason(err)}") from err
    try:
        try:
            with os.fdopen(fd, "wb") as file:
                encode(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except _CODEC_ERRORS as err:
        raise ImageError(f"cannot write {path}: {_reason(err)}") from err
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows syncing a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
