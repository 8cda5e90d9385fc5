"""What travels with the pixels: EXIF (orientation, camera tags, our text), ICC profiles.

Text metadata (seed, model, task...) goes into PNG tEXt/iTXt chunks, one per key, and into
the EXIF UserComment of JPEG, WebP and TIFF as one JSON object; BMP carries none.
`read_metadata` reads either back.
"""

import json
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import ImageError

ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003
_ASCII_COMMENT = b"ASCII\x00\x00\x00"  # the character-code prefix of an EXIF UserComment
_TEXT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")  # those whose files `write_image` gives text
# Tags that describe a TIFF file's own layout: a TIFF's EXIF holds them, but they are stale
# (or wrong) for any other file, so they are dropped when the EXIF is kept. The ICC profile
# (34675) travels in `Picture.icc_profile` instead.
_TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320}
    | {322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 530, 531, 532, 34675}
)

CODEC_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    cv2.error,
    # Image.open itself takes IndexError and TypeError for malformed data while identifying a
    # file, and the same parsers run again when the pixels and the EXIF are read; KeyError is
    # a lookup of a tag that a damaged file lacks.
    KeyError,
    IndexError,
    TypeError,
    MemoryError,  # a damaged header under the pixel limit can still ask for too much memory
)
"""What decoders and encoders raise for files they cannot handle: a damaged file, never a bug
in this package, so each is reported as an ImageError about that file."""


def icc_space(icc: bytes | None) -> str | None:
    """The colour space an ICC profile describes ("RGB", "GRAY", "CMYK"...), None if none."""
    if icc is None or len(icc) < 20:
        return None
    return icc[16:20].decode("latin-1").strip()


def exif_of(image: Image.Image) -> tuple[bytes | None, int]:
    """(EXIF bytes with orientation 1 and without TIFF layout tags, or None; the orientation)."""
    try:
        exif = image.getexif()
        orientation = exif.get(ORIENTATION, 1)
        for tag in _TIFF_LAYOUT_TAGS & set(exif):
            del exif[tag]
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        data = exif.tobytes() if len(exif) else None
    except CODEC_ERRORS:
        return None, 1  # broken EXIF: the pixels are still good, so read them without it
    return data, orientation if orientation in range(1, 9) else 1


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
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


def exif_for_output(
    source: bytes | None, text: dict[str, str] | None, size: tuple[int, int]
) -> bytes | None:
    """EXIF for the restored file: the source's, upright, with its recorded pixel size updated
    and `text` as a JSON UserComment."""
    if not source and not text:
        return None
    exif = Image.Exif()
    if source:
        exif.load(source)
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    if _EXIF_IFD in exif or text:
        sub = exif.get_ifd(_EXIF_IFD)
        if _PIXEL_X_DIMENSION in sub or _PIXEL_Y_DIMENSION in sub:
            sub[_PIXEL_Y_DIMENSION], sub[_PIXEL_X_DIMENSION] = size
        if text:
            sub[_USER_COMMENT] = _ASCII_COMMENT + json.dumps(text, sort_keys=True).encode("ascii")
    return exif.tobytes()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata `write_image` stored in a file ({} when there is none)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                return {str(k): str(v) for k, v in image.text.items()}
            comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except CODEC_ERRORS as err:
        raise ImageError(f"cannot read {path}: {reason(err)}") from err
    return _comment_values(comment)


def has_text_key(path: Path, key: str) -> bool:
    """Whether a file's text metadata holds `key`, read from its header alone: PNG text chunks
    before the pixels (where `write_image` puts them), else the EXIF UserComment. A file that
    cannot be opened holds none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no warning of a large picture: this is only a look
        try:
            with Image.open(path, formats=_TEXT_FORMATS) as image:
                if image.format == "PNG":
                    return key in image.info
                exif = image.getexif().get_ifd(_EXIF_IFD)
                return key in _comment_values(exif.get(_USER_COMMENT))
        except CODEC_ERRORS:
            return False


def _comment_values(comment: object) -> dict[str, str]:
    """The JSON object of an EXIF UserComment written by `exif_for_output` ({} for any other)."""
    if not isinstance(comment, bytes) or not comment.startswith(_ASCII_COMMENT):
        return {}
    try:
        values = json.loads(comment[len(_ASCII_COMMENT) :].rstrip(b"\x00"))
    except ValueError:
        return {}  # a camera's own comment, not ours
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def reason(err: BaseException) -> str:
    """A short reason for a failed read or write, for a one-line message."""
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "it is a folder"
    if isinstance(err, MemoryError):
        return "not enough memory"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
