"""Reading and writing pictures.

A picture is read into a float32 tensor [1, 3, H, W] in [-1, 1], whatever its file stored:
grey, palette, CMYK or 16-bit pixels, an alpha channel, an EXIF orientation (applied on
reading, so that the network sees the picture upright). What the restored picture should carry
over (alpha, ICC profile, EXIF, bit depth, grey) travels alongside in a `Picture` and is put
back by `write_image`, which writes atomically: a hidden temporary file in the target folder,
fsync, then a rename, so that no half-written output ever exists under the final name.

Decoding lives in `decode`, encoding in `encode`, EXIF and ICC in `meta`; this module joins
them and is the one the rest of the package uses.
"""

import contextlib
import io
import os
import secrets
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageColor, UnidentifiedImageError
from torch import Tensor

from ..errors import ImageError, OutputExistsError, UsageError
from .decode import (
    GREY_MODES,
    JpegCoding,
    compression_of,
    declared_jpeg_quality,
    decode,
    default_max_pixels,
    jpeg_coding_of,
    open_picture,
    sniff,
)
from .encode import JPEG_QUALITY, encode_picture
from .meta import (
    CODEC_ERRORS,
    exif_for_output,
    exif_of,
    icc_space,
    orient,
    read_metadata,
    reason,
)

__all__ = [
    "ALPHA_FORMATS",
    "FORMATS",
    "JPEG_QUALITY",
    "MaskLevels",
    "Picture",
    "alpha_levels",
    "atomic_write",
    "colour_rgb",
    "default_max_pixels",
    "encode_image",
    "format_of",
    "hole_of",
    "mask_from_alpha",
    "mask_levels",
    "picture_pixels",
    "pixel_levels",
    "read_image",
    "read_mask",
    "read_metadata",
    "write_image",
]

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

ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
"""Formats that can hold an alpha channel (the others need it laid over a background)."""

_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_EXIF_TEXT_FORMATS = frozenset({"JPEG", "WEBP", "TIFF"})
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights of Pillow's own conversion to grey
_FLAT = 2 / 255  # the colour spread of a mask of "one colour"


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
    """The embedded ICC profile when it describes the pixels: an RGB profile for a colour
    picture, a GRAY one for a grey picture, sRGB for CMYK converted through its own profile;
    None otherwise."""
    exif: bytes | None
    """EXIF as Pillow writes it ("Exif\\0\\0" + TIFF), orientation reset to 1."""
    source_mode: str
    """Pillow's mode of the file ("RGB", "P", "I;16", "CMYK"...); "RGB;16", "LA;16" etc. for
    16-bit files decoded by OpenCV."""
    path: Path
    compression: str | None = None
    """How the file was compressed, kept when the result is written in the same format:
    "webp_lossy" or "webp_lossless", a TIFF's compression as Pillow names it; None for the
    other formats."""
    jpeg_quality: int | None = None
    """The IJG quality a JPEG file's quantisation tables declare (the nearest one for other
    encoders' tables); None for other formats."""
    jpeg_coding: JpegCoding | None = None
    """The JPEG file's quantisation tables and sampling (None for other formats)."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        height, width = self.pixels.shape[-2:]
        return height, width

    @property
    def grey(self) -> bool:
        """Whether the file held a grey picture (its three channels are equal)."""
        return self.source_mode.split(";")[0] in GREY_MODES


def read_image(
    path: str | Path, *, data: bytes | None = None, max_pixels: int | None = None
) -> Picture:
    """Decode a picture file (or `data`, its bytes, e.g. from stdin; `path` then only names
    it) into a `Picture`. Any unreadable file raises `ImageError`, and so does a picture of
    more than `max_pixels` pixels (default: `default_max_pixels()`, Pillow's bomb guard)."""
    path = Path(path)
    limit = max_pixels if max_pixels is not None else default_max_pixels()
    try:
        # Pillow warns about damaged metadata it skips; the picture is read anyway, or reported
        # in one line, so the warnings would only clutter a batch's log.
        with warnings.catch_warnings(), _open_source(path, data) as file:
            warnings.simplefilter("ignore")
            return _read(file, path, limit)
    except CODEC_ERRORS as err:  # the file itself: missing, a folder, unreadable
        raise ImageError(f"cannot read {path}: {reason(err)}") from err


def picture_pixels(path: Path, *, data: bytes | None = None) -> int | None:
    """A picture's pixel count from its header alone (nothing decoded), or None when it cannot
    be identified: what a progress estimate weighs pictures by, before reading them."""
    try:
        with warnings.catch_warnings(), _open_source(path, data) as file:
            warnings.simplefilter("ignore")
            with open_picture(file, str(path), None) as image:
                width, height = image.size
    except (*CODEC_ERRORS, ImageError):
        return None
    return width * height


def _read(file: BinaryIO, path: Path, limit: int | None) -> Picture:
    header = file.read(16)
    if not header:
        raise ImageError(f"cannot read {path}: the file is empty")
    file.seek(0)
    try:
        with open_picture(file, str(path), limit) as image:
            decoded = decode(image, file)
            exif, orientation = exif_of(image)
            compression = compression_of(image, file)
            jpeg_quality = declared_jpeg_quality(image)
            jpeg_coding = jpeg_coding_of(image, orientation)
    except CODEC_ERRORS as err:
        kind = sniff(header)
        if kind is None:
            what = "not a JPEG, PNG, WebP, TIFF or BMP picture (whatever its name says)"
        elif isinstance(err, UnidentifiedImageError):
            what = f"damaged or truncated {kind} data"
        elif "MAX_TEXT" in str(err):
            # Pillow's guard against a text chunk that inflates to gigabytes: the picture may be
            # whole, its metadata is what is refused.
            what = (
                f"its {kind} text metadata inflates past the safe limit (a decompression bomb "
                "in a text chunk); save the picture again without its metadata"
            )
        else:
            what = f"damaged or truncated {kind} data ({reason(err)})"
        raise ImageError(f"cannot read {path}: {what}") from err
    array = orient(decoded.array, orientation)

    # Pillow's arrays are read-only views; torch wants a writable, contiguous buffer.
    channels = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)
    colours = 1 if channels.shape[0] <= 2 else 3
    scale = decoded.white
    pixels = channels[:colours].contiguous().float().mul_(2 / scale).sub_(1).clamp_(-1, 1)
    alpha = None
    if channels.shape[0] in (2, 4):
        alpha = channels[colours:].contiguous().float().div_(scale).clamp_(0, 1)[None]
    return Picture(
        pixels=pixels.expand(3, -1, -1).contiguous()[None],
        alpha=alpha,
        bit_depth=decoded.bit_depth,
        icc_profile=decoded.icc,
        exif=exif,
        source_mode=decoded.mode,
        path=path,
        compression=compression,
        jpeg_quality=jpeg_quality,
        jpeg_coding=jpeg_coding,
    )


def colour_rgb(colour: str) -> tuple[int, int, int]:
    """An 8-bit RGB colour from a CSS name or hex code (white, #808080, #fff); a UsageError
    says what is accepted."""
    try:
        return ImageColor.getrgb(colour)[:3]
    except ValueError:
        raise UsageError(
            f"--background {colour!r} is not a colour; give a name (white, black) or a hex "
            "code (#808080)"
        ) from None


def format_of(path: str | Path) -> str:
    """The format a file name's extension selects (`FORMATS`); an ImageError lists them."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(FORMATS))
        raise ImageError(f"cannot write {path}: unknown extension; use one of {supported}")
    return fmt


def write_image(
    path: str | Path,
    pixels: Tensor,
    *,
    like: Picture | None = None,
    metadata: dict[str, str] | None = None,
    bit_depth: int | None = None,
    quality: int | None = None,
    grey: bool | None = None,
    background: tuple[int, int, int] | None = None,
    replace: bool = True,
) -> None:
    """Write [1, 3, H, W] (or [3, H, W]) pixels in [-1, 1] atomically, in the format the
    extension selects (`FORMATS`); with `replace` False, a file that appears meanwhile under
    `path` is kept and OutputExistsError raised (atomic_write).

    Values are clamped to [-1, 1] and rounded to the nearest level. `bit_depth` (default:
    like's, else 8) applies to PNG and TIFF; the other formats are 8-bit. `grey` (default:
    whether `like` was grey) writes the luma of the pixels as a grey picture (in WebP, which
    has no grey mode, as three equal channels). From `like` the ICC profile and EXIF
    (orientation 1) are kept where the format can hold them (not BMP), and its alpha, resized
    to the output size by bilinear interpolation: into PNG, TIFF and WebP, or laid over the
    RGB colour `background` when one is given (the result is then opaque); other formats
    drop it. JPEG is written at `quality` (default 95) without chroma subsampling; WebP and
    TIFF the way `like` was compressed (`Picture.compression`; default lossless WebP and
    Deflate TIFF), WebP lossy at `quality` when one is given. `metadata` goes into PNG text
    chunks, or as JSON into the EXIF UserComment of JPEG, WebP and TIFF; BMP drops it.
    Parent folders are created; the file appears complete or not at all.
    """
    path = Path(path)
    fmt = format_of(path)
    _check_options(bit_depth, quality)

    def encode(file: BinaryIO) -> None:
        _encode(file, fmt, pixels, like, metadata, bit_depth, quality, grey, background)

    atomic_write(path, encode, replace=replace)


def encode_image(
    fmt: str,
    pixels: Tensor,
    *,
    like: Picture | None = None,
    metadata: dict[str, str] | None = None,
    bit_depth: int | None = None,
    quality: int | None = None,
    grey: bool | None = None,
    background: tuple[int, int, int] | None = None,
) -> bytes:
    """The bytes of the file `write_image` would write as `fmt` (PNG, JPEG, WEBP, TIFF or
    BMP): for a picture that goes to a stream rather than a file."""
    _check_options(bit_depth, quality)
    file = io.BytesIO()
    try:
        _encode(file, fmt, pixels, like, metadata, bit_depth, quality, grey, background)
    except CODEC_ERRORS as err:
        raise ImageError(f"cannot encode a {fmt} picture: {reason(err)}") from err
    return file.getvalue()


def read_mask(
    path: str | Path,
    size: tuple[int, int] | None,
    *,
    threshold: float = 0.5,
    invert: bool = False,
    max_pixels: int | None = None,
) -> Tensor:
    """Read an inpainting mask as a float tensor [1, 1, H, W] of {0, 1}, 1 = hole.

    White marks the hole: grey level (after conversion to grey, transparent pixels counting
    as black) at or above `threshold` of white; the default 0.5 is ">= 128" in 8 bits.
    `invert` swaps hole and kept pixels (black = hole). `size` is the picture's (height,
    width), which the mask must match (None: the mask's own size is taken as it is).
    """
    mask = read_image(path, max_pixels=max_pixels)
    if size is not None and mask.size != tuple(size):
        (mh, mw), (h, w) = mask.size, size
        raise ImageError(
            f"mask {path} is {mw}x{mh} pixels but the picture is {w}x{h}; "
            "give a mask of the picture's size"
        )
    return hole_of(mask, threshold=threshold, invert=invert)


def hole_of(mask: Picture, *, threshold: float = 0.5, invert: bool = False) -> Tensor:
    """The hole a decoded mask picture marks, as read_mask reads a mask file ([1, 1, H, W] of
    {0, 1}, 1 = hole): for masks that come decoded (the Python API's PIL images)."""
    return mask_levels(mask, invert=invert).hole(threshold)


@dataclass(frozen=True)
class MaskLevels:
    """How much of a hole each pixel of a mask marks, and what marks it. A mask painted with a
    soft brush, or saved as JPEG, has levels between none and full at its edges."""

    level: Tensor
    """float32 [1, 1, H, W] in [0, 1]: 1 = fully hole."""
    marked_by: str
    """"white", "black" (inverted), "transparency" or "opacity" (inverted)."""

    @property
    def soft(self) -> bool:
        """Whether some pixel lies between the mask's lowest and highest levels: an edge drawn
        soft or compressed, not where exactly the hole ends (a mask of two levels, as programs
        write them, says exactly)."""
        low, high = self.level.amin(), self.level.amax()
        return bool(((self.level > low) & (self.level < high)).any())

    def hole(self, threshold: float) -> Tensor:
        """[1, 1, H, W] of {0, 1}: the pixels marking at least `threshold` of a hole."""
        # A tiny margin below the threshold: 8-bit level 128 is 0.50196, but float rounding
        # through [-1, 1] and the luma weights may land a hair under it.
        return (self.level >= threshold - 1e-6).float()


def mask_levels(mask: Picture, *, invert: bool = False) -> MaskLevels:
    """What a decoded mask picture marks. White marks the hole, by its grey level (transparent
    pixels counting as black); a mask of one colour whose transparency varies (an opaque layer
    with the hole erased) marks it by its transparency. `invert` makes black, or opacity, the
    hole."""
    rgb = mask.pixels.add(1).div(2)
    if mask.alpha is not None and _one_colour(rgb, mask.alpha):
        return alpha_levels(mask.alpha, invert=invert)
    luma = sum(w * rgb[:, c : c + 1] for c, w in enumerate(_LUMA))
    if mask.alpha is not None:
        luma = luma * mask.alpha
    return MaskLevels(1 - luma, "black") if invert else MaskLevels(luma, "white")


def alpha_levels(alpha: Tensor, *, invert: bool = False) -> MaskLevels:
    """What a picture's transparency marks ([1, 1, H, W] alpha): transparent = hole, or
    opaque = hole with `invert`."""
    return MaskLevels(alpha, "opacity") if invert else MaskLevels(1 - alpha, "transparency")


def pixel_levels(pixels: Tensor, depth: int = 8) -> np.ndarray:
    """[1, 3, H, W] (or [3, H, W]) pixels in [-1, 1] as an H x W x 3 array of `depth`-bit
    levels (uint8 or uint16), clamped and rounded as write_image writes them: what a caller
    that keeps pictures in memory (the Python API) gets instead of a file."""
    return _quantise(_as_chw(pixels).add(1).div_(2), depth)


def mask_from_alpha(alpha: Tensor, *, threshold: float = 0.5, invert: bool = False) -> Tensor:
    """The hole of a picture's transparency: 1 where alpha < `threshold`, else 0 (same
    shape); `invert` makes the opaque part the hole."""
    return ((alpha < threshold) != invert).float()


# --- helpers -------------------------------------------------------------------------------


def _one_colour(rgb: Tensor, alpha: Tensor) -> bool:
    """Whether a mask's transparency varies under one colour (every pixel's, the transparent
    ones' too, equal within two levels), so that only the transparency can mark the hole.
    White strokes on a layer whose transparent pixels are stored black are not of one colour:
    their white marks the hole."""
    if alpha.amin() == alpha.amax():
        return False
    return bool((rgb.amax((-2, -1)) - rgb.amin((-2, -1))).max() <= _FLAT)


def _check_options(bit_depth: int | None, quality: int | None) -> None:
    if bit_depth not in (None, 8, 16):
        raise UsageError(f"bit depth must be 8 or 16, got {bit_depth}")
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"quality must be between 1 and 100, got {quality}")


def _encode(
    file: BinaryIO,
    fmt: str,
    pixels: Tensor,
    like: Picture | None,
    metadata: dict[str, str] | None,
    bit_depth: int | None,
    quality: int | None,
    grey: bool | None,
    background: tuple[int, int, int] | None,
) -> None:
    depth = bit_depth or (like.bit_depth if like else 8)
    if fmt not in _SIXTEEN_BIT_FORMATS:
        depth = 8
    colour = _as_chw(pixels).add(1).div_(2)
    alpha = None
    if like is not None and like.alpha is not None:
        alpha = _resized(like.alpha, tuple(colour.shape[-2:]))[0]
        if background is not None:
            # Straight alpha: the picture over the colour, as a viewer would show it.
            under = torch.tensor(background, dtype=torch.float32).div(255).view(3, 1, 1)
            colour, alpha = alpha * colour + (1 - alpha) * under, None
        elif fmt not in ALPHA_FORMATS:
            alpha = None
    as_grey = (like is not None and like.grey) if grey is None else grey
    if as_grey:
        colour = sum(w * colour[c : c + 1] for c, w in enumerate(_LUMA))
        # WebP has no grey mode, and neither Pillow nor OpenCV reads 16-bit grey+alpha TIFF
        # back: those get the grey in three equal channels.
        if fmt == "WEBP" or (fmt == "TIFF" and depth == 16 and alpha is not None):
            colour, as_grey = colour.expand(3, -1, -1), False
    array = _quantise(colour, depth)
    if alpha is not None:
        array = np.concatenate([array, _quantise(alpha, depth)], 2)
    icc = like.icc_profile if like is not None and fmt != "BMP" else None
    if icc_space(icc) != ("GRAY" if as_grey else "RGB"):
        icc = None
    exif = None
    if fmt != "BMP":
        text = metadata if fmt in _EXIF_TEXT_FORMATS else None
        exif = exif_for_output(like.exif if like else None, text, array.shape[:2])
    png_text = metadata if fmt == "PNG" else None
    compression = like.compression if like is not None else None
    encode_picture(
        file,
        fmt,
        array,
        icc=icc,
        exif=exif,
        text=png_text,
        quality=quality,
        compression=compression,
    )


def _open_source(path: Path, data: bytes | None) -> BinaryIO:
    return io.BytesIO(data) if data is not None else path.open("rb")


def _as_chw(pixels: Tensor) -> Tensor:
    if pixels.dim() == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"expected pixels [1, 3, H, W] or [3, H, W], got {tuple(pixels.shape)}")
    # NaN would become an arbitrary level; mid-grey at least keeps the file sane.
    return torch.nan_to_num(pixels.detach().to("cpu", torch.float32), nan=0.0).clamp_(-1, 1)


def _quantise(values: Tensor, depth: int) -> np.ndarray:
    """[C, H, W] (or [1, C, H, W]) values in [0, 1] -> H x W x C uint8 or uint16, rounded."""
    values = values.reshape(-1, *values.shape[-2:])
    top, dtype = (255, torch.uint8) if depth == 8 else (65535, torch.uint16)
    levels = values.clamp(0, 1).mul_(top).round_().to(dtype)
    return levels.permute(1, 2, 0).contiguous().numpy()


def _resized(alpha: Tensor, size: tuple[int, int]) -> Tensor:
    """Alpha at the output size: copied when the size is unchanged, else plain bilinear
    interpolation (no network ever sees alpha, so sr4x's edges stay as soft as the source's)."""
    alpha = alpha.detach().to("cpu", torch.float32)
    if tuple(alpha.shape[-2:]) == tuple(size):
        return alpha
    return F.interpolate(alpha, size=size, mode="bilinear", align_corners=False, antialias=True)


def atomic_write(path: Path, encode: Callable[[BinaryIO], None], *, replace: bool = True) -> None:
    """Write via a hidden temporary file in the same folder, fsync, then move it to `path`.

    With `replace` (the default) the move is a rename over whatever `path` holds. Without it,
    the file is linked in only if `path` does not exist (an atomic create), so that of two
    runs writing one output, the first wins whole and the second gets OutputExistsError. The
    temporary file's name carries this process's id: the first write into a folder removes the
    temporary files that processes which died there (kill -9) left, never those of a live one.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path.parent)
        # ".name.<host>-<pid>.<random>.tmp": hidden, skipped by collect_inputs and by "*.png".
        owner = f"{socket.gethostname()}-{os.getpid()}"  # at write time: forks have their own
        temp = path.with_name(f".{path.name}.{owner}.{secrets.token_hex(6)}.tmp")
        # os.open applies the umask to 0o666, unlike mkstemp's private 0o600.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(temp, flags, 0o666)
    except OSError as err:
        raise ImageError(f"cannot write {path}: {reason(err)}") from err
    try:
        try:
            with os.fdopen(fd, "wb") as file:
                encode(file)
                file.flush()
                os.fsync(file.fileno())
            if replace:
                os.replace(temp, path)
            else:
                _create(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except CODEC_ERRORS as err:
        raise ImageError(f"cannot write {path}: {reason(err)}") from err
    _sync_folder(path.parent)


def _create(temp: Path, path: Path) -> None:
    """Move `temp` to `path` unless `path` exists; OutputExistsError when it does."""
    try:
        os.link(temp, path)
        temp.unlink()
        return
    except FileExistsError:
        pass
    except OSError:
        # No hard links on this file system: the check and the rename are then two steps.
        if not path.exists():
            os.replace(temp, path)
            return
    raise OutputExistsError(
        f"{path} was written by another run meanwhile; kept (use --overwrite to replace)"
    )


_SWEPT: set[Path] = set()
"""Folders whose stale temporary files this process has removed already."""


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files that writers on this host left in `folder` when they died
    (".name.<host>-<pid>.<random>.tmp" of a pid no longer running). Once per folder and
    process: a folder of N outputs is listed once, not N times."""
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    marker = f".{socket.gethostname()}-"
    for temp in folder.glob(".*.tmp"):
        _, found, rest = temp.name.rpartition(marker)
        pid = rest.split(".", 1)[0]
        if found and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                temp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows syncing a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
