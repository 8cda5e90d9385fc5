"""Reading and writing pictures: round trips, grey and alpha, orientation, colour profiles,
metadata, masks. (Damaged files, limits and atomic writes: test_pictures_damaged.py.)"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from i2sb_cli.errors import ImageError
from i2sb_cli.pictures.encode import encode_png16
from i2sb_cli.pictures.files import (
    Picture,
    mask_from_alpha,
    read_image,
    read_mask,
    read_metadata,
    write_image,
)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _rgb8(height: int = 12, width: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _rgb16(height: int = 12, width: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, 3), dtype=np.uint16)


def _levels(pixels: torch.Tensor, top: int) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> H x W x 3 integer levels."""
    return ((pixels[0].permute(1, 2, 0).numpy() + 1) / 2 * top).round().astype(np.int64)


def _cv2_write16(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(path.suffix, rgb[:, :, ::-1].copy())
    assert ok
    path.write_bytes(data.tobytes())


def _cv2_read(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return array[:, :, [2, 1, 0, 3][: array.shape[2]]]


# --- round trips ---------------------------------------------------------------------------


def test_8bit_png_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    assert picture.pixels.shape == (1, 3, 12, 17) and picture.pixels.dtype == torch.float32
    assert picture.bit_depth == 8 and picture.alpha is None and picture.source_mode == "RGB"
    assert np.array_equal(_levels(picture.pixels, 255), rgb)

    write_image(tmp_path / "out.png", picture.pixels, like=picture)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGB"
        assert np.array_equal(np.asarray(out), rgb)


def test_16bit_png_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = _rgb16()
    _cv2_write16(tmp_path / "in.png", rgb)
    picture = read_image(tmp_path / "in.png")
    assert picture.bit_depth == 16 and picture.source_mode == "RGB;16"
    assert np.array_equal(_levels(picture.pixels, 65535), rgb)

    write_image(tmp_path / "out.png", picture.pixels, like=picture)
    assert np.array_equal(_cv2_read(tmp_path / "out.png"), rgb)
    write_image(tmp_path / "out8.png", picture.pixels, like=picture, bit_depth=8)
    assert _cv2_read(tmp_path / "out8.png").dtype == np.uint8


def test_16bit_tiff_round_trip_is_exact(tmp_path: Path) -> None:
    rgb = _rgb16(seed=1)
    _cv2_write16(tmp_path / "in.tif", rgb)
    picture = read_image(tmp_path / "in.tif")
    assert picture.bit_depth == 16
    assert np.array_equal(_levels(picture.pixels, 65535), rgb)

    write_image(tmp_path / "out.tiff", picture.pixels, like=picture)
    assert np.array_equal(_cv2_read(tmp_path / "out.tiff"), rgb)
    assert torch.equal(read_image(tmp_path / "out.tiff").pixels, picture.pixels)


def test_16bit_grey_png_is_read_at_full_precision(tmp_path: Path) -> None:
    grey = np.random.default_rng(2).integers(0, 65536, (9, 11), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    picture = read_image(tmp_path / "g.png")
    assert picture.bit_depth == 16 and picture.pixels.shape == (1, 3, 9, 11)
    assert np.array_equal(_levels(picture.pixels, 65535), np.repeat(grey[:, :, None], 3, 2))


def test_jpeg_round_trip_within_tolerance(tmp_path: Path) -> None:
    ys, xs = np.mgrid[0:48, 0:64]
    smooth = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=2).clip(0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.jpg", picture.pixels, like=picture)
    back = read_image(tmp_path / "out.jpg")
    error = (back.pixels - picture.pixels).abs() * 127.5
    assert error.mean() < 1.0 and error.max() < 8


def test_webp_and_bmp_round_trips_are_exact(tmp_path: Path) -> None:
    rgb = _rgb8(seed=3)
    Image.fromarray(rgb).save(tmp_path / "in.bmp")
    picture = read_image(tmp_path / "in.bmp")
    assert np.array_equal(_levels(picture.pixels, 255), rgb)
    for name in ("out.webp", "out.bmp", "out.TIF"):
        write_image(tmp_path / name, picture.pixels, like=picture)
        assert torch.equal(read_image(tmp_path / name).pixels, picture.pixels), name


def test_grey_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = _rgb8()[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    picture = read_image(tmp_path / "g.png")
    assert picture.source_mode == "L" and picture.pixels.shape == (1, 3, 12, 17)
    assert np.array_equal(_levels(picture.pixels, 255), np.repeat(grey[:, :, None], 3, 2))


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    rgb = _rgb8(seed=4)
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "p.png")
    picture = read_image(tmp_path / "p.png")
    assert picture.source_mode == "P" and picture.alpha is None
    assert np.array_equal(_levels(picture.pixels, 255), np.asarray(palette.convert("RGB")))

    palette.save(tmp_path / "pt.png", transparency=0)
    picture = read_image(tmp_path / "pt.png")
    assert picture.alpha is not None
    assert torch.equal(picture.alpha[0, 0] == 0, torch.from_numpy(np.asarray(palette) == 0))


def test_rgba_alpha_is_kept_where_the_format_allows(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb8(), _rgb8(seed=5)[:, :, :1]], axis=2)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    assert picture.alpha is not None and picture.alpha.shape == (1, 1, 12, 17)
    for name in ("out.png", "out.webp", "out.tif"):
        write_image(tmp_path / name, picture.pixels, like=picture)
        with Image.open(tmp_path / name) as out:
            assert out.mode == "RGBA", name
            assert np.array_equal(np.asarray(out), rgba), name
    write_image(tmp_path / "out.jpg", picture.pixels, like=picture)
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.mode == "RGB"


def test_alpha_is_resized_to_a_larger_output(tmp_path: Path) -> None:
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:, 4:] = 255
    Image.fromarray(np.dstack([_rgb8(8, 8), alpha])).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    big = torch.nn.functional.interpolate(picture.pixels, scale_factor=4)
    write_image(tmp_path / "out.png", big, like=picture, bit_depth=16)
    back = read_image(tmp_path / "out.png")
    assert back.alpha is not None and back.alpha.shape == (1, 1, 32, 32)
    assert back.alpha[..., :14].max() == 0 and back.alpha[..., 18:].min() == 1


# A minimal ICC header for a grey profile: only the colour space (bytes 16-20) matters here.
GREY_ICC = (128).to_bytes(4, "big") + bytes(12) + b"GRAY" + b"XYZ " + bytes(104)


def test_grey_and_grey_alpha_round_trips_stay_grey(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    la8 = rng.integers(0, 256, (5, 7, 2), dtype=np.uint8)
    la16 = rng.integers(0, 65536, (5, 7, 2), dtype=np.uint16)
    Image.fromarray(la8[:, :, 0]).save(tmp_path / "l8.png")
    Image.fromarray(la8).save(tmp_path / "la8.png")
    Image.fromarray(la16[:, :, 0]).save(tmp_path / "l16.png")
    (tmp_path / "la16.png").write_bytes(encode_png16(la16, icc=None, exif=None, text={}))
    cases = [
        ("l8", la8[:, :, :1], "L"),
        ("la8", la8, "LA"),
        ("l16", la16[:, :, :1], "I;16"),
        ("la16", la16, "LA;16"),
    ]
    for name, stored, mode in cases:
        picture = read_image(tmp_path / f"{name}.png")
        assert picture.grey and picture.source_mode == mode, name
        assert (picture.alpha is not None) == (stored.shape[2] == 2), name
        for ext in (".png", ".tif"):
            out = tmp_path / f"out-{name}{ext}"
            write_image(out, picture.pixels, like=picture)
            back = read_image(out)
            assert torch.equal(back.pixels, picture.pixels), out.name
            assert back.bit_depth == picture.bit_depth, out.name
            # 16-bit grey+alpha TIFF is written as RGBA, which every reader opens.
            assert back.grey == (out.name != "out-la16.tif"), out.name


def test_grey_output_is_the_luma_of_the_result(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()[:, :, 0]).save(tmp_path / "g.png", icc_profile=GREY_ICC)
    grey = read_image(tmp_path / "g.png")
    assert grey.icc_profile == GREY_ICC
    colour = torch.tensor([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1).expand(1, 3, 12, 17)
    for name in ("red.png", "red.jpg", "red.bmp"):
        write_image(tmp_path / name, colour, like=grey)
        with Image.open(tmp_path / name) as out:
            assert out.mode == "L", name
            assert abs(int(np.asarray(out).mean()) - 76) <= 1, name  # 0.299 of white
    assert read_image(tmp_path / "red.jpg").icc_profile == GREY_ICC
    # WebP has no grey mode; a grey profile cannot describe its RGB pixels.
    write_image(tmp_path / "red.webp", colour, like=grey)
    back = read_image(tmp_path / "red.webp")
    assert not back.grey and back.icc_profile is None
    assert torch.equal(back.pixels[:, 0], back.pixels[:, 2])  # grey in three equal channels
    write_image(tmp_path / "colour.png", colour, like=grey, grey=False)
    assert read_image(tmp_path / "colour.png").icc_profile is None


def test_bilevel_and_palette_modes(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()[:, :, 0] > 127).save(tmp_path / "b.png")
    bilevel = read_image(tmp_path / "b.png")
    assert bilevel.grey and bilevel.bit_depth == 8
    write_image(tmp_path / "b-out.png", bilevel.pixels, like=bilevel)
    assert Image.open(tmp_path / "b-out.png").mode == "L"
    Image.fromarray(_rgb8()).quantize(16).save(tmp_path / "p.png")
    palette = read_image(tmp_path / "p.png")
    write_image(tmp_path / "p-out.png", palette.pixels, like=palette)
    assert Image.open(tmp_path / "p-out.png").mode == "RGB"  # new colours need no palette


def test_quality_for_jpeg_and_webp(tmp_path: Path) -> None:
    Image.fromarray(_rgb8(64, 64)).save(tmp_path / "in.png")
    picture = read_image(tmp_path / "in.png")
    sizes = {}
    for name, quality in [("q95.jpg", None), ("q30.jpg", 30), ("l.webp", None), ("q.webp", 60)]:
        write_image(tmp_path / name, picture.pixels, like=picture, quality=quality)
        sizes[name] = (tmp_path / name).stat().st_size
    assert sizes["q30.jpg"] < sizes["q95.jpg"] and sizes["q.webp"] < sizes["l.webp"]
    assert torch.equal(read_image(tmp_path / "l.webp").pixels, picture.pixels)
    assert not torch.equal(read_image(tmp_path / "q.webp").pixels, picture.pixels)


# --- orientation, profiles, metadata -------------------------------------------------------


def _exif_with(orientation: int, **tags: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    for name, value in tags.items():
        exif[{"make": 0x010F, "model": 0x0110}[name]] = value
    return exif


def test_exif_orientation_6_jpeg_is_turned_upright(tmp_path: Path) -> None:
    wide = np.zeros((32, 48, 3), np.uint8)
    wide[:16, :24] = 255  # white top-left quadrant of the stored pixels
    Image.fromarray(wide).save(tmp_path / "o.jpg", exif=_exif_with(6, make="Cam"), quality=100)
    picture = read_image(tmp_path / "o.jpg")
    # Orientation 6: the stored picture is shown turned 90 degrees clockwise.
    assert picture.size == (48, 32)
    levels = _levels(picture.pixels, 255)
    assert levels[:24, 16:].mean() > 240 and levels[24:, :].mean() < 15
    exif = Image.Exif()
    assert picture.exif is not None
    exif.load(picture.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "Cam"

    write_image(tmp_path / "out.jpg", picture.pixels, like=picture)
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (32, 48) and out.getexif()[0x0112] == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    stored = Image.fromarray(_rgb8(5, 7))
    stored.save(tmp_path / "o.png", exif=_exif_with(orientation))
    with Image.open(tmp_path / "o.png") as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert np.array_equal(_levels(read_image(tmp_path / "o.png").pixels, 255), expected)


def test_orientation_applies_to_16bit_pictures(tmp_path: Path) -> None:
    rgb = _rgb16(4, 6)
    exif = _exif_with(8).tobytes()
    (tmp_path / "o.png").write_bytes(encode_png16(rgb, icc=None, exif=exif, text={}))
    picture = read_image(tmp_path / "o.png")
    assert picture.bit_depth == 16
    assert np.array_equal(_levels(picture.pixels, 65535), np.rot90(rgb, 1))


def test_icc_profile_is_kept(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()).save(tmp_path / "in.png", icc_profile=SRGB)
    picture = read_image(tmp_path / "in.png")
    assert picture.icc_profile == SRGB
    for name in ("a.png", "a.jpg", "a.webp", "a.tif"):
        write_image(tmp_path / name, picture.pixels, like=picture)
        assert read_image(tmp_path / name).icc_profile == SRGB, name
    for name in ("b.png", "b.tif"):
        write_image(tmp_path / name, picture.pixels, like=picture, bit_depth=16)
        back = read_image(tmp_path / name)
        assert back.bit_depth == 16 and back.icc_profile == SRGB, name


def test_cmyk_is_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((6, 6, 4), np.uint8)
    cmyk[:3, :, 0] = 255  # full cyan in the top half, paper white below
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    picture = read_image(tmp_path / "c.jpg")
    assert picture.source_mode == "CMYK" and picture.icc_profile is None
    levels = _levels(picture.pixels, 255)
    assert levels[4:].min() > 245
    assert levels[:2, :, 0].max() < 20 and levels[:2, :, 2].min() > 235


def test_metadata_is_readable_back(tmp_path: Path) -> None:
    pixels = torch.zeros(1, 3, 4, 4)
    meta = {"seed": "1234", "model": "sr4x-small", "task": "sr4x", "note": "café ☕"}
    for name, depth in [("m.png", 8), ("m16.png", 16), ("m.jpg", 8), ("m.webp", 8)]:
        write_image(tmp_path / name, pixels, metadata=meta, bit_depth=depth)
        assert read_metadata(tmp_path / name) == meta, name
    with Image.open(tmp_path / "m.png") as png:
        assert png.text["seed"] == "1234"
    for name in ("m.tif", "m16.tif"):
        write_image(tmp_path / name, pixels, metadata=meta, bit_depth=16 if "16" in name else 8)
        assert read_metadata(tmp_path / name) == meta, name
    write_image(tmp_path / "m.bmp", pixels, metadata=meta)
    assert read_metadata(tmp_path / "m.bmp") == {}


def test_camera_exif_survives_and_records_the_new_size(tmp_path: Path) -> None:
    exif = _exif_with(1, make="Cam", model="X1")
    exif.get_ifd(0x8769).update({0xA002: 8, 0xA003: 6})
    Image.fromarray(_rgb8(6, 8)).save(tmp_path / "in.jpg", exif=exif)
    picture = read_image(tmp_path / "in.jpg")
    write_image(tmp_path / "out.jpg", torch.zeros(1, 3, 24, 32), like=picture, metadata={"a": "b"})
    with Image.open(tmp_path / "out.jpg") as out:
        written = out.getexif()
        assert written[0x0110] == "X1"
        sub = written.get_ifd(0x8769)
        assert (sub[0xA002], sub[0xA003]) == (32, 24)
    assert read_metadata(tmp_path / "out.jpg") == {"a": "b"}


# --- masks ---------------------------------------------------------------------------------


def test_mask_white_is_hole(tmp_path: Path) -> None:
    grey = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", (1, 4))
    assert mask.shape == (1, 1, 1, 4) and mask.dtype == torch.float32
    assert mask.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_mask_transparent_pixels_count_as_black(tmp_path: Path) -> None:
    rgba = np.full((1, 3, 4), 255, np.uint8)
    rgba[0, 0] = 0  # transparent, stored black: white strokes on a transparent layer
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", (1, 3)).flatten().tolist() == [0.0, 1.0, 1.0]


def test_mask_of_one_colour_marks_its_hole_by_transparency(tmp_path: Path) -> None:
    rgba = np.full((1, 3, 4), 255, np.uint8)
    rgba[0, 0, 3] = 0  # a white layer with a pixel erased
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", (1, 3)).flatten().tolist() == [1.0, 0.0, 0.0]
    assert read_mask(tmp_path / "m.png", (1, 3), invert=True).flatten().tolist() == [0, 1, 1]


def test_mask_of_the_wrong_size_says_both_sizes(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ImageError, match="20x10 pixels but the picture is 40x30"):
        read_mask(tmp_path / "m.png", (30, 40))


def test_mask_from_alpha() -> None:
    alpha = torch.tensor([0.0, 0.49, 0.5, 1.0]).reshape(1, 1, 1, 4)
    assert mask_from_alpha(alpha).flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert mask_from_alpha(alpha, threshold=0.2).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert mask_from_alpha(alpha, invert=True).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_mask_threshold_and_invert(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 64, 127, 128, 200, 255]], np.uint8)).save(tmp_path / "m.png")
    path = tmp_path / "m.png"
    assert read_mask(path, (1, 6), threshold=0.25).flatten().tolist() == [0, 1, 1, 1, 1, 1]
    assert read_mask(path, (1, 6), threshold=0.9).flatten().tolist() == [0, 0, 0, 0, 0, 1]
    assert read_mask(path, (1, 6), invert=True).flatten().tolist() == [1, 1, 1, 0, 0, 0]


def test_picture_is_a_plain_record() -> None:
    picture = Picture(torch.zeros(1, 3, 5, 7), None, 8, None, None, "I;16B", Path("x.png"))
    assert picture.size == (5, 7) and picture.grey
