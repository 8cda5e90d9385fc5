"""Property-based tests of the reader: whatever the bytes, `read_image` gives a Picture or an
ImageError, never another exception and never a hang.

Three sources of bytes: pure noise; valid pictures in every mode and format the reader knows;
and those pictures damaged (cut short, bytes overwritten), which is what reaches the decoders'
error paths. The examples are derandomized so that CI is repeatable; set I2SB_FUZZ_EXAMPLES to
run a longer campaign locally.
"""

import io
import os
import signal
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from i2sb_cli.errors import ImageError
from i2sb_cli.pictures.files import Picture, read_image

EXAMPLES = int(os.environ.get("I2SB_FUZZ_EXAMPLES", "40"))
SECONDS_PER_READ = 5
# Damaged headers may claim any size: a small limit keeps each example's memory and time tiny.
MAX_PIXELS = 1 << 16

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the alarm below bounds each read; timing noise must not fail the test
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (Pillow mode or "RGB16"/"RGBA16"/"LA16" for OpenCV-written 16-bit colour, formats)
LAYOUTS = [
    ("L", ["PNG", "JPEG", "WEBP", "TIFF", "BMP"]),
    ("LA", ["PNG", "WEBP", "TIFF"]),
    ("RGB", ["PNG", "JPEG", "WEBP", "TIFF", "BMP"]),
    ("RGBA", ["PNG", "WEBP", "TIFF"]),
    ("P", ["PNG", "TIFF", "BMP"]),
    ("1", ["PNG", "TIFF", "BMP"]),
    ("CMYK", ["JPEG", "TIFF"]),
    ("I;16", ["PNG", "TIFF"]),
    ("RGB16", ["PNG", "TIFF"]),
    ("RGBA16", ["PNG", "TIFF"]),
]


@contextmanager
def _time_limit(seconds: int):
    """Fail, rather than hang, when one read takes longer than `seconds`."""

    def expired(signum, frame):
        raise TimeoutError(f"read_image took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _read(data: bytes) -> Picture | None:
    """read_image on `data`: the Picture, or None for an ImageError; anything else fails."""
    with _time_limit(SECONDS_PER_READ):
        try:
            picture = read_image("fuzz.bin", data=data, max_pixels=MAX_PIXELS)
        except ImageError:
            return None
    assert picture.pixels.dtype.is_floating_point and picture.pixels.shape[:2] == (1, 3)
    assert float(picture.pixels.abs().max()) <= 1.0
    assert picture.bit_depth in (8, 16)
    return picture


@st.composite
def pictures(draw) -> tuple[bytes, tuple[int, int]]:
    """A small valid picture file's bytes and its (height, width)."""
    mode, formats = draw(st.sampled_from(LAYOUTS))
    fmt = draw(st.sampled_from(formats))
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    if mode.endswith("16") and mode != "I;16":
        channels = 4 if mode == "RGBA16" else 3
        array = rng.integers(0, 65536, (height, width, channels), dtype=np.uint16)
        ok, encoded = cv2.imencode("." + fmt.lower(), array)
        assert ok
        return encoded.tobytes(), (height, width)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
        image = image.convert("RGB").quantize(8) if mode == "P" else image.convert(mode)
    image.save(buffer, format=fmt)
    return buffer.getvalue(), (height, width)


@FUZZ
@given(st.binary(max_size=4096))
def test_noise_is_a_picture_or_an_image_error(data: bytes) -> None:
    _read(data)


@FUZZ
@given(pictures())
def test_valid_pictures_are_read(picture: tuple[bytes, tuple[int, int]]) -> None:
    data, size = picture
    read = _read(data)
    assert read is not None and read.size == size


@FUZZ
@given(pictures(), st.data())
def test_damaged_pictures_are_read_or_refused(picture, data) -> None:
    original = bytearray(picture[0])
    cut = data.draw(st.integers(0, len(original)), label="cut")
    damaged = original[:cut] if data.draw(st.booleans(), label="truncate") else original
    byte_writes = st.tuples(st.integers(0, 1 << 16), st.integers(0, 255))
    for position, value in data.draw(st.lists(byte_writes, max_size=8), label="writes"):
        if damaged:
            damaged[position % len(damaged)] = value
    _read(bytes(damaged))


@pytest.mark.parametrize("prefix", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"BM"])
def test_bare_signatures_are_image_errors(prefix: bytes) -> None:
    assert _read(prefix) is None
