"""Encoders that Pillow lacks: 16-bit PNG with metadata chunks, and RGB(A) TIFF with ICC and EXIF.

`images.write_image` chooses them; they turn an HxWxC uint8/uint16 array into file bytes.
"""

import struct
import zlib

import cv2
import numpy as np
from PIL import Image


def encode_png16(array: np.ndarray, *, icc: bytes | None, exif: bytes | None, text: dict) -> bytes:
    """A 16-bit PNG: OpenCV encodes the pixels, and the metadata chunks Pillow would have
    written are spliced in after IHDR (where iCCP and eXIf must precede IDAT)."""
    order = [2, 1, 0, 3][: array.shape[2]]  # RGB(A) -> BGR(A)
    ok, encoded = cv2.imencode(".png", array[:, :, order], [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("OpenCV could not encode a 16-bit PNG")
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
    png = encoded.tobytes()
    ihdr_end = 8 + 8 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    return png[:ihdr_end] + b"".join(_png_chunk(k, d) for k, d in chunks) + png[ihdr_end:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_tiff(array: np.ndarray, *, icc: bytes | None, exif: bytes | None) -> bytes:
    """An 8- or 16-bit RGB(A) TIFF with ICC profile and EXIF.

    Pillow's EXIF writer produces a complete TIFF header and directory (sub-IFDs included), so
    the file is that directory, with the image tags added, followed by one deflate-compressed
    strip of horizontally differenced samples (TIFF predictor 2).
    """
    height, width, channels = array.shape
    ifd = Image.Exif()
    if exif:
        ifd.load(exif)
    big_endian = ifd.tobytes()[6:8] == b"MM"
    predicted = array.copy()
    predicted[:, 1:] -= array[:, :-1]  # wraps modulo 2**16, as predictor 2 expects
    sample = predicted.dtype.newbyteorder(">" if big_endian else "<")
    strip = zlib.compress(predicted.astype(sample).tobytes(), 6)
    ifd.update(
        {
            256: width,
            257: height,
            258: (8 * array.dtype.itemsize,) * channels,
            259: 8,  # Adobe deflate
            262: 2,  # RGB
            273: 0,  # strip offset, filled in below
            277: channels,
            278: height,
            279: len(strip),
            284: 1,  # samples interleaved
            317: 2,  # horizontal differencing
            339: (1,) * channels,  # unsigned integers
        }
    )
    if channels == 4:
        ifd[338] = 2  # unassociated alpha
    if icc:
        ifd[34675] = icc
    head = bytearray(ifd.tobytes()[6:])
    offset = len(head) + len(head) % 2  # strips start on a word boundary
    _patch_ifd0(head, 273, offset)
    return bytes(head.ljust(offset, b"\x00")) + strip


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
