"""Decoding a picture file into an array of its pixels, as stored (orientation is applied later).

Pillow decodes most files; OpenCV decodes 16-bit colour (and grey+alpha) PNG and TIFF, which
Pillow reduces to 8 bits. Whether a file is 16-bit is read from its header, never guessed from
the pixel values.
"""

import contextlib
import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from ..degrade.jpeg import estimate_quality
from ..errors import ImageError
from .meta import CODEC_ERRORS, icc_space

READ_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
"""Pillow formats read (the JPEG plugin also opens cameras' multi-picture MPO files). Limiting
Pillow to these keeps exotic plugins (some call external programs) away from untrusted files."""

ANIMATED_FORMATS = {"GIF": "GIF", "WEBP": "WebP"}
"""Formats whose files may hold several frames: refused when they do (`open_picture`)."""
PAGED_FORMATS = {"TIFF": "TIFF"}
"""Formats whose files may hold several pages (a scanned document, a layered export): refused
when they do, like animations. A camera's MPO (a JPEG with a preview or depth frame after the
picture) is read as its first frame, the photograph itself."""

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
"""Pillow modes (before any ";16"-style suffix) that hold grey pictures."""

# Pillow's bomb guard is one global limit; `open_picture` lifts it for the moment of opening,
# under this lock, and applies the caller's own limit instead.
_PILLOW_LIMIT = threading.Lock()


@dataclass(frozen=True)
class Decoded:
    array: np.ndarray
    """H x W x C: C = 1 grey, 2 grey+alpha, 3 RGB or 4 RGBA; uint8, uint16 or float32."""
    white: float
    """The value of white: 255, 65535, or 1.0 for float pictures."""
    bit_depth: int
    mode: str
    icc: bytes | None


def default_max_pixels() -> int | None:
    """Pillow's own refusal limit (about 179 million pixels), None if it was switched off."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def open_picture(file: BinaryIO, name: str, max_pixels: int | None) -> Image.Image:
    """Identify a picture from its header (lazily: no pixels decoded yet); refuse more than
    `max_pixels` pixels (None: no limit) with an ImageError."""
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            image = Image.open(file, formats=READ_FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageError(
            f"cannot read {name}: {width}x{height} is {width * height:,} pixels, over the "
            f"limit of {max_pixels:,} that guards against decompression bombs; if the file is "
            f"trusted, raise the limit with --max-pixels {width * height}"
        )
    # Pillow would decode the first frame only; the others would be lost without a word.
    if image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False):
        kind, frames = ANIMATED_FORMATS[image.format], image.n_frames
        image.close()
        raise ImageError(
            f"cannot read {name}: an animated {kind} of {frames} frames; i2sb restores still "
            "pictures: save the frame you want as a PNG and give that"
        )
    if image.format in PAGED_FORMATS and getattr(image, "n_frames", 1) > 1:
        kind, pages = PAGED_FORMATS[image.format], image.n_frames
        image.close()
        raise ImageError(
            f"cannot read {name}: a {kind} of {pages} pages; i2sb restores one picture per "
            "file: split the pages into files (e.g. tiffsplit) and give those"
        )
    return image


def decode(image: Image.Image, file: BinaryIO) -> Decoded:
    """The pixels of an opened picture, with their bit depth and an ICC profile that matches
    them (RGB for colour, GRAY for grey; CMYK becomes sRGB)."""
    mode = image.mode
    wide = _wide_layout(image, file)
    grey = wide == "grey" if wide else mode.split(";")[0] in GREY_MODES
    icc = image.info.get("icc_profile") or None
    if icc_space(icc) != ("GRAY" if grey else "RGB"):
        icc = None  # a profile of another colour space does not describe the pixels we give
    if wide is not None:
        array = _decode_opencv(file, png=image.format == "PNG", grey=wide == "grey")
        wide_mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]] + ";16"
        white = 65535.0 if array.dtype == np.uint16 else 255.0
        return Decoded(array, white, 16, wide_mode, icc)

    image.load()
    if mode.startswith("I;16") or mode == "I":
        grey_levels = np.asarray(image).astype(np.float32).clip(0, 65535)
        return Decoded(grey_levels[:, :, None], 65535.0, 16, mode, icc)
    if mode == "F":
        return Decoded(np.asarray(image, np.float32).clip(0, 1)[:, :, None], 1.0, 16, mode, icc)
    if mode == "CMYK":
        rgb, srgb = _cmyk_to_srgb(image)
        return Decoded(np.asarray(rgb), 255.0, 8, mode, srgb)
    target = {(True, False): "L", (True, True): "LA", (False, False): "RGB"}.get(
        (grey, has_alpha(image)), "RGBA"
    )
    array = np.asarray(image if image.mode == target else image.convert(target))
    return Decoded(array[:, :, None] if array.ndim == 2 else array, 255.0, 8, mode, icc)


def has_alpha(image: Image.Image) -> bool:
    """Whether an opened picture holds transparency: an alpha channel, or a transparent colour
    (palette and some grey or RGB PNGs). Its header says so; no pixel is decoded."""
    return "A" in image.mode or "a" in image.mode or "transparency" in image.info


def may_have_alpha(path: Path) -> bool:
    """Whether a picture file may hold transparency: False only when its header says it has
    none (a file that cannot be opened may: reading it decides). No pixel is decoded."""
    try:
        with warnings.catch_warnings(), path.open("rb") as file:
            warnings.simplefilter("ignore")
            with open_picture(file, str(path), None) as image:
                return has_alpha(image)
    except (ImageError, *CODEC_ERRORS):
        return True


def _wide_layout(image: Image.Image, file: BinaryIO) -> str | None:
    """ "colour" or "grey" for 16-bit files that Pillow would cut to 8 bits (colour, or grey
    with alpha), None for the others."""
    if image.format == "PNG":
        position = file.tell()
        file.seek(0)
        header = file.read(26)
        file.seek(position)
        # IHDR starts at byte 16: width, height, then bit depth and colour type.
        if len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6):
            return "grey" if header[25] == 4 else "colour"
    elif image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        if bits and max(bits) == 16 and image.tag_v2.get(262) == 2:
            return "colour"
    return None


@dataclass(frozen=True)
class JpegCoding:
    """How a JPEG file coded its pixels, enough to tell which DCT coefficients the decoded
    picture came from (restoring/jpeg_bins.py)."""

    tables: tuple[tuple[int, ...], ...]
    """Each component's quantisation table (64 steps, natural order): Y, then Cb and Cr for a
    colour file."""
    subsampling: tuple[tuple[int, int], ...]
    """Each component's (rows, columns) decimation: (1, 1) for luma, (2, 2) for 4:2:0 chroma."""
    orientation: int
    """The EXIF orientation the decoded pixels were turned by (1-8): the blocks are the stored
    picture's, not the upright one's."""


def jpeg_coding_of(image: Image.Image, orientation: int) -> JpegCoding | None:
    """A baseline YCbCr or grey JPEG's coding; None for other formats and for files whose
    components are not YCbCr (CMYK, Adobe RGB) or whose sampling is not a whole ratio."""
    # A camera's MPO is a JPEG with more frames after it.
    tables = getattr(image, "quantization", None) if image.format in ("JPEG", "MPO") else None
    layers = getattr(image, "layer", None)
    if not tables or not layers or image.mode not in ("RGB", "L"):
        return None
    if len(layers) != (3 if image.mode == "RGB" else 1) or image.info.get("adobe_transform") == 0:
        return None
    rows, cols = max(layer[2] for layer in layers), max(layer[1] for layer in layers)
    if any(rows % layer[2] or cols % layer[1] or layer[3] not in tables for layer in layers):
        return None
    return JpegCoding(
        tables=tuple(tuple(tables[layer[3]]) for layer in layers),
        subsampling=tuple((rows // layer[2], cols // layer[1]) for layer in layers),
        orientation=orientation,
    )


def declared_jpeg_quality(image: Image.Image) -> int | None:
    """The quality a JPEG file's quantisation tables declare (degrade/jpeg.py), None for other
    formats or tables that cannot be read."""
    tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
    if not tables:
        return None
    try:
        return estimate_quality([tables[key] for key in sorted(tables)])[0]
    except ValueError:
        return None


def compression_of(image: Image.Image, file: BinaryIO) -> str | None:
    """How the file's pixels are compressed, where writing the result the same way is a choice:
    a TIFF's compression as Pillow names it ("raw", "tiff_lzw", "tiff_adobe_deflate",
    "packbits"...), "webp_lossy" or "webp_lossless" for WebP; None for other formats."""
    if image.format == "TIFF":
        return image.info.get("compression")
    if image.format != "WEBP":
        return None
    position = file.tell()
    try:
        return _webp_kind(file)
    finally:
        file.seek(position)


def _webp_kind(file: BinaryIO) -> str | None:
    """Walk a WebP's RIFF chunks to its bitstream: "VP8 " is lossy, "VP8L" lossless (an
    extended file, "VP8X", puts alpha, ICC or EXIF chunks before it)."""
    file.seek(12)
    while len(header := file.read(8)) == 8:
        kind, size = header[:4], int.from_bytes(header[4:], "little")
        if kind in (b"VP8 ", b"VP8L"):
            return "webp_lossy" if kind == b"VP8 " else "webp_lossless"
        file.seek(size + size % 2, io.SEEK_CUR)  # chunks are padded to an even size
    return None


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"GIF8": "GIF",
}


def sniff(header: bytes) -> str | None:
    """The format a file's first bytes announce, if any: a file that starts like a picture
    but cannot be read is a damaged picture, not some other kind of file."""
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in _SIGNATURES.items() if header.startswith(sig)), None)


def _decode_opencv(file: BinaryIO, *, png: bool, grey: bool) -> np.ndarray:
    file.seek(0)
    data = file.read()
    if png:
        # libpng prints its complaint about a damaged file straight to stderr; Pillow's check
        # of every chunk's CRC and of the end marker finds the same damage quietly first.
        PngImagePlugin.PngImageFile(io.BytesIO(data)).verify()
    data = np.frombuffer(data, np.uint8)
    # OpenCV logs a damaged file's every complaint to stderr; the caller reports it in one line.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if array is None:
        raise ValueError("OpenCV cannot decode it")
    if array.ndim == 2:
        return array[:, :, None]
    if grey and array.shape[2] == 4:
        return array[:, :, [0, 3]]  # OpenCV expands grey+alpha to BGRA with B = G = R
    order = [2, 1, 0, 3][: array.shape[2]]  # BGR(A) -> RGB(A)
    return array[:, :, order]


def _cmyk_to_srgb(image: Image.Image) -> tuple[Image.Image, bytes | None]:
    """CMYK through its ICC profile when it has one (Pillow's plain conversion ignores ink
    behaviour and gives dull, shifted colours), with the sRGB profile that now describes the
    pixels; else the plain conversion, which has no profile."""
    icc = image.info.get("icc_profile")
    if icc:
        with contextlib.suppress(ImageCms.PyCMSError, OSError):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted, srgb.tobytes()
    return image.convert("RGB"), None
