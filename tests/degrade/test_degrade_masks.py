"""Inpainting masks and the name -> operator registry."""

from pathlib import Path

import numpy as np
import pytest
import torch

from i2sb_cli.degrade import (
    FREEFORM_BANDS,
    PAPER_TASKS,
    TASK_NAMES,
    apply_hole,
    center_mask,
    freeform_mask,
    get_operator,
    hole_fraction,
    palette_mask,
)
from i2sb_cli.degrade.jpeg import jpeg_real
from i2sb_cli.degrade.masks import dilate_mask, feather_weights, resize_mask
from i2sb_cli.errors import ImageError, UsageError


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "corruptions.npz") as data:
        return {k: data[k] for k in ("x0", "inpaint-center/corrupt", "inpaint-center/mask")}


def test_center_matches_golden(golden: dict[str, np.ndarray]) -> None:
    mask = center_mask(256, 256)
    np.testing.assert_array_equal(mask.numpy().astype(np.uint8), golden["inpaint-center/mask"])
    out = get_operator("inpaint-center")(torch.from_numpy(golden["x0"]))
    np.testing.assert_array_equal(out.picture.numpy(), golden["inpaint-center/corrupt"])
    assert out.mask is not None and out.mask.shape == (2, 1, 256, 256)


def test_center_box_at_other_sizes() -> None:
    mask = center_mask(70, 99)[0, 0]
    rows, cols = torch.nonzero(mask.sum(1)).flatten(), torch.nonzero(mask.sum(0)).flatten()
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (17, 51, 24, 72)
    assert mask.sum() == 35 * 49  # rows [H//4, H//4 + H//2), the official get_center_mask


@pytest.mark.parametrize("size", [(64, 64), (40, 72)])
@pytest.mark.parametrize("band_name", list(FREEFORM_BANDS))
def test_freeform_fraction_falls_in_its_band(size: tuple[int, int], band_name: str) -> None:
    low, high = FREEFORM_BANDS[band_name]
    fractions = np.array([hole_fraction(freeform_mask(*size, (low, high), s)) for s in range(150)])
    assert ((fractions >= low) & (fractions <= high)).all()
    # The target is uniform in the band, so the fractions spread over it.
    assert fractions.min() < low + 0.025 and fractions.max() > high - 0.025
    assert abs(fractions.mean() - (low + high) / 2) < 0.02


def test_freeform_is_seeded_and_binary() -> None:
    band = FREEFORM_BANDS["freeform2030"]
    first = freeform_mask(48, 60, band, seed=7)
    assert first.shape == (1, 1, 48, 60) and first.dtype == torch.float32
    assert torch.equal(first, freeform_mask(48, 60, band, seed=7))
    assert not torch.equal(first, freeform_mask(48, 60, band, seed=8))
    assert set(first.unique().tolist()) == {0.0, 1.0}


def test_freeform_holes_are_strokes_not_speckle() -> None:
    mask = freeform_mask(128, 128, FREEFORM_BANDS["freeform1020"], seed=3)[0, 0].bool()
    inner = mask[1:-1, 1:-1]
    neighbours = mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    # Thick brushes: most hole pixels lie inside the stroke, not on its edge.
    assert (inner & neighbours).sum() > 0.6 * inner.sum()


def _write_palette_file(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 256, 256)) < 0.15).astype(np.uint8)
    others = np.zeros((2, 256, 256), dtype=np.uint8)
    np.savez(
        path,
        **{"10-20% freeform": np.packbits(masks), "20-30% freeform": np.packbits(others)},
    )
    return masks


def test_palette_masks_are_unpacked_and_resized(tmp_path: Path) -> None:
    masks = _write_palette_file(tmp_path / "imagenet_freeform_masks.npz")
    band = FREEFORM_BANDS["freeform1020"]
    mask, index = palette_mask(tmp_path / "imagenet_freeform_masks.npz", band, 5, (256, 256))
    assert 0 <= index < 3
    np.testing.assert_array_equal(mask[0, 0].numpy(), masks[index])
    small, same = palette_mask(tmp_path / "imagenet_freeform_masks.npz", band, 5, (64, 96))
    assert same == index and small.shape == (1, 1, 64, 96)
    rows, cols = np.arange(64) * 4 + 2, (np.arange(96) * 256 + 128) // 96
    np.testing.assert_array_equal(small[0, 0].numpy(), masks[index][rows[:, None], cols])

    operator = get_operator(
        "inpaint-freeform1020", palette_masks=tmp_path / "imagenet_freeform_masks.npz"
    )
    out = operator(torch.zeros(1, 3, 256, 256), seed=5)
    assert out.details["palette_index"] == index
    with pytest.raises(ImageError, match="30-40% freeform"):
        palette_mask(tmp_path / "imagenet_freeform_masks.npz", (0.3, 0.4), 0, (8, 8))
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ImageError):
        palette_mask(tmp_path / "bad.npz", band, 0, (8, 8))


def test_every_operator_on_a_non_square_odd_size() -> None:
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(1)) * 2 - 1
    user_mask = center_mask(37, 50)
    for name in TASK_NAMES:
        operator = get_operator(name.replace("Q", "20"))
        out = operator(x, seed=3, mask=user_mask if operator.needs_mask else None)
        expected = (10, 13) if operator.family == "sr4x" else (37, 50)
        assert out.picture.shape == (1, 3, *expected), name
        assert torch.isfinite(out.picture).all(), name
        assert (out.mask is not None) == (operator.family == "inpaint"), name
        if out.mask is not None:
            quality = out.details.get("jpeg_quality") if name == "real-inpaint" else None
            known = x if quality is None else jpeg_real(x, quality)  # real-inpaint: a JPEG's
            assert torch.equal(out.picture, apply_hole(known, out.mask)), name
        assert operator.paper == (name in PAPER_TASKS), name


def test_registry_names_and_errors() -> None:
    assert get_operator("jpeg-37").params["quality"] == 37
    assert not get_operator("jpeg-real-37").paper
    assert get_operator("blur-uni").paper and not get_operator("blur-uni-plain").paper
    for bad in ("jpeg-0", "jpeg-101", "sr4x", "blur", "jpeg-real-x", "inpaint-freeform"):
        with pytest.raises(UsageError):
            get_operator(bad)
    with pytest.raises(UsageError):
        get_operator("blur-uni", palette_masks="masks.npz")
    with pytest.raises(ValueError):
        get_operator("inpaint-mask")(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError):
        get_operator("inpaint-center")(torch.zeros(1, 3, 8, 8), mask=torch.zeros(1, 1, 8, 8))


# --- what restore does to a user's mask --------------------------------------------------------


def test_dilate_mask_grows_the_hole_by_a_disc():
    point = torch.zeros(1, 1, 9, 9)
    point[..., 4, 4] = 1
    assert torch.equal(dilate_mask(point, 0), point)
    # The pixels within 2 of the centre: the centre, 4 at 1, 4 at sqrt(2), 4 at 2 (not sqrt(5)).
    grown = dilate_mask(point, 2)
    assert int(grown.sum()) == 13
    assert grown[..., 4, 2] == 1 and grown[..., 3, 3] == 1 and grown[..., 3, 2] == 0
    assert set(grown.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError):
        dilate_mask(point, -1)


def test_dilate_mask_works_per_picture_of_a_batch():
    masks = torch.zeros(2, 1, 5, 5)
    masks[0, 0, 0, 0] = 1
    masks[1, 0, 4, 4] = 1
    grown = dilate_mask(masks, 1)
    assert grown[0, 0, 1, 0] == 1 and grown[0, 0, 3, 4] == 0
    assert grown[1, 0, 3, 4] == 1 and grown[1, 0, 1, 0] == 0


def test_feather_weights_ramp_inside_the_hole_only():
    block = torch.zeros(1, 1, 9, 9)
    block[..., 1:8, 1:8] = 1
    assert torch.equal(feather_weights(block, 0), block)
    weights = feather_weights(block, 2)[0, 0]
    assert torch.all(weights[block[0, 0] == 0] == 0)  # kept pixels stay the original
    assert torch.allclose(weights[1, 1:8], torch.full((7,), 1 / 3))
    assert torch.allclose(weights[2, 2:7], torch.full((5,), 2 / 3))
    assert torch.all(weights[3:6, 3:6] == 1)
    # A picture that is all hole has nothing to fade into.
    assert torch.all(feather_weights(torch.ones(1, 1, 4, 4), 3) == 1)


def test_resize_mask_by_nearest_neighbour():
    mask = (torch.arange(16).reshape(1, 1, 4, 4) % 3 == 0).float()
    big = resize_mask(mask, (8, 8))
    assert torch.equal(big, mask.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert torch.equal(resize_mask(big, (4, 4)), mask)
    assert resize_mask(mask, (4, 4)) is mask
    assert resize_mask(mask, (3, 5)).shape == (1, 1, 3, 5)
