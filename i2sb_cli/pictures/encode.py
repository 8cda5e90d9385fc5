"""Encoders: an H x W x C uint8/uint16 array (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) and its
metadata into the bytes of one file format.

Pillow writes most of them. It lacks 16-bit colour PNG (OpenCV encodes those pixels and the
metadata chunks are spliced in), 16-bit grey+alpha PNG (written here from scratch, as neither
library can), and TIFF with ICC and EXIF at 16 bits (written here: Pillow's libtiff path fails
on EXIF sub-directories; libtiff only compresses the strip).
"""

import io
import struct
import zlib
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

JPEG_QUALITY = 95
"""JPEG quality when none is asked for: visually lossless, as a restored picture deserves."""

WEBP_QUALITY = 90
"""Quality of a lossy WebP written for a lossy WebP source when none is asked for."""

_TIFF_COMPRESSIONS = {"raw": 1, "tiff_lzw": 5, "tiff_adobe_deflate": 8, "packbits": 32773}
"""TIFF compressions written (Pillow's names and the Compression tag's codes); a source
compressed otherwise (JPEG, CCITT...) gets Deflate, which is lossless."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_picture(
    file: BinaryIO,
    fmt: str,
    array: np.ndarray,
    *,
    icc: bytes | None = None,
    exif: bytes | None = None,
    text: dict[str, str] | None = None,
    quality: int | None = None,
    compression: str | None = None,
) -> None:
    """Write `array` to `file` as `fmt` (a Pillow format name: PNG, JPEG, WEBP, TIFF, BMP).

    JPEG is written at `quality` (default 95) without chroma subsampling. WebP is lossy at
    `quality` when one is given, else as `compression` says (`Picture.compression`):
    "webp_lossy" at quality 90, otherwise losslessly. TIFF keeps a `compression` it can
    write (`_TIFF_COMPRESSIONS`), else uses Deflate. `text` goes into PNG text chunks only.
    """
    if array.dtype == np.uint16 and fmt == "PNG":
        file.write(encode_png16(array, icc=icc, exif=exif, text=text or {}))
        return
    if fmt == "TIFF":
        file.write(encode_tiff(array, icc=icc, exif=exif, compression=compression))
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
        options.update(quality=quality or JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        # A lossy source stays lossy: written losslessly, its artefacts would cost 10x the bytes.
        lossy = quality or (WEBP_QUALITY if compression == "webp_lossy" else None)
        # exact: keep the colours under alpha 0, which a later edit may reveal.
        options.update(exact=True, **({"quality": lossy} if lossy else {"lossless": True}))
    # Pillow picks L, LA, RGB or RGBA from the array's shape.
    planes = array[:, :, 0] if array.shape[2] == 1 else array
    Image.fromarray(np.ascontiguousarray(planes)).save(file, format=fmt, **options)


def encode_png16(array: np.ndarray, *, icc: bytes | None, exif: bytes | None, text: dict) -> bytes:
    """A 16-bit PNG, with the metadata chunks Pillow would have written spliced in after IHDR
    (where iCCP and eXIf must precede IDAT)."""
    chunks = []
    if icc:
        chunks.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        chunks.append((b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    for key, value in text.items():
        try:
            chunks.append((b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
        except UnicodeEncodeError:
            itxt = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
            chunks.append((b"iTXt", itxt))
    png = _png16_pixels(array)
    ihdr_end = 8 + 8 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    return png[:ihdr_end] + b"".join(_png_chunk(k, d) for k, d in chunks) + png[ihdr_end:]


def _png16_pixels(array: np.ndarray) -> bytes:
    """A bare 16-bit PNG of the pixels: OpenCV's encoder (adaptive filters, so smaller files)
    where it can, else grey+alpha written here with the Sub filter on every row."""
    height, width, channels = array.shape
    if channels != 2:
        order = [2, 1, 0, 3][:channels] if channels > 1 else [0]  # RGB(A) -> BGR(A)
        ok, encoded = cv2.imencode(".png", array[:, :, order], [cv2.IMWRITE_PNG_COMPRESSION, 6])
        if not ok:
            raise ValueError("OpenCV could not encode a 16-bit PNG")
        return encoded.tobytes()
    rows = array.astype(">u2").view(np.uint8).reshape(height, width * 4)
    filtered = rows.copy()
    filtered[:, 4:] -= rows[:, :-4]  # Sub: each byte minus the same byte of the previous pixel
    raw = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)  # filter type 1
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)  # colour type 4: grey+alpha
    idat = zlib.compress(raw.tobytes(), 6)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_tiff(
    array: np.ndarray, *, icc: bytes | None, exif: bytes | None, compression: str | None = None
) -> bytes:
    """An 8- or 16-bit grey, grey+alpha, RGB or RGBA TIFF with ICC profile and EXIF.

    Pillow's EXIF writer produces a complete TIFF header and directory (sub-IFDs included), so
    the file is that directory, with the image tags added, followed by one strip, compressed
    as `compression` says when it is one of `_TIFF_COMPRESSIONS` (default Deflate); LZW and
    Deflate compress horizontally differenced samples (TIFF predictor 2).
    """
    height, width, channels = array.shape
    ifd = Image.Exif()
    if exif:
        ifd.load(exif)
    big_endian = ifd.tobytes()[6:8] == b"MM"
    code = _TIFF_COMPRESSIONS.get(compression or "", 8)
    predictor = code in (5, 8)
    samples = array.copy()
    if predictor:
        samples[:, 1:] -= array[:, :-1]  # wraps modulo 2**16, as predictor 2 expects
    sample = samples.dtype.newbyteorder(">" if big_endian else "<")
    data = samples.astype(sample).tobytes()
    if code == 8:
        strip = zlib.compress(data, 6)
    elif code == 1:
        strip = data
    else:
        strip = _libtiff_strip(np.frombuffer(data, np.uint8).reshape(height, -1), compression)
    ifd.update(
        {
            256: width,
            257: height,
            258: (8 * array.dtype.itemsize,) * channels,
            259: code,
            262: 2 if channels >= 3 else 1,  # RGB, or grey with black at 0
            273: 0,  # strip offset, filled in below
            277: channels,
            278: height,
            279: len(strip),
            284: 1,  # samples interleaved
            339: (1,) * channels,  # unsigned integers
        }
    )
    if predictor:
        ifd[317] = 2  # horizontal differencing (libtiff warns of the tag without LZW or Deflate)
    if channels in (2, 4):
        ifd[338] = 2  # unassociated alpha
    if icc:
        ifd[34675] = icc
    head = bytearray(ifd.tobytes()[6:])
    offset = len(head) + len(head) % 2  # strips start on a word boundary
    _patch_ifd0(head, 273, offset)
    return bytes(head.ljust(offset, b"\x00")) + strip


def _libtiff_strip(rows: np.ndarray, compression: str | None) -> bytes:
    """The bytes of `rows` (height x row bytes) compressed by libtiff as one TIFF strip: they
    are written as a grey picture of one strip, whose strip is taken out (LZW codes a strip as
    one stream of bytes and PackBits each row, whatever the bytes' samples are)."""
    file = io.BytesIO()
    Image.fromarray(rows).save(file, "TIFF", compression=compression, strip_size=rows.nbytes)
    file.seek(0)
    with Image.open(file) as image:
        (offset,), (count,) = image.tag_v2[273], image.tag_v2[279]
    return file.getvalue()[offset : offset + count]


def _patch_ifd0(tiff: bytearray, tag: int, value: int) -> None:
    """Overwrite the single SHORT or LONG value of a tag in a TIFF's first directory (Pillow
    rewrites StripOffsets on its own terms, so the final offset is set here)."""
    order = ">" if tiff[:2] == b"MM" else "<"
    (start,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, start)
    for entry in range(start + 2, start + 2 + 12 * count, 12):
        entry_tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        if entry_tag == tag:
            struct.pack_into(order + ("I" if kind == 4 else "H"), tiff, entry + 8, value)
            return
    raise ValueError(f"TIFF tag {tag} missing from the directory")
