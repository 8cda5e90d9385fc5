"""Training data: degradations on the fly (every family, mixtures), sub-crops, and pairs."""

import numpy as np
import pytest
import torch
from PIL import Image

from i2sb_cli.degrade import apply_hole, get_operator, jpeg_numerical, nearest_upsample4
from i2sb_cli.degrade.baselines import classical_baseline
from i2sb_cli.errors import UsageError
from i2sb_cli.training.data import Degrader, quantize8, random_subcrop, schedule_defaults
from i2sb_cli.training.pairs import PairedCrops


def _pictures(count: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _is_8bit(x: torch.Tensor) -> bool:
    levels = (x + 1) * 127.5
    return bool(torch.allclose(levels, levels.round(), atol=1e-4))


@pytest.mark.parametrize(
    ("task", "family"),
    [
        ("sr4x-bicubic", "sr4x"),
        ("blur-gauss", "deblur"),
        ("blur-uni-plain", "deblur"),
        ("jpeg-10", "jpeg"),
        ("jpeg-real-10", "jpeg"),
    ],
)
def test_degrader_gives_the_operator_at_full_size_in_8_bits(task, family):
    x0 = _pictures()
    degrader = Degrader([task])
    x1, mask, _ = degrader(x0, torch.Generator().manual_seed(1))
    assert degrader.family == family and mask is None
    assert x1.shape == x0.shape and _is_8bit(x1)
    expected = get_operator(task)(x0).picture
    if family == "sr4x":
        expected = nearest_upsample4(expected)
    torch.testing.assert_close(x1, quantize8(expected))


def test_degrader_mixture_uses_every_task_of_the_family():
    x0 = _pictures(count=16)
    x1, _, _ = Degrader(["jpeg-10", "jpeg-5"])(x0, torch.Generator().manual_seed(0))
    q10, q5 = quantize8(jpeg_numerical(x0, 10)), quantize8(jpeg_numerical(x0, 5))
    as10 = [bool(torch.equal(a, b)) for a, b in zip(x1, q10, strict=True)]
    as5 = [bool(torch.equal(a, b)) for a, b in zip(x1, q5, strict=True)]
    assert all(a != b for a, b in zip(as10, as5, strict=True))
    assert any(as10) and any(as5)


def test_degrader_inpainting_fills_each_own_hole_with_noise():
    x0 = _pictures(count=3, size=48)
    x1, mask, _ = Degrader(["inpaint-freeform1020"])(x0, torch.Generator().manual_seed(0))
    assert mask is not None and mask.shape == (3, 1, 48, 48)
    fractions = mask.mean(dim=(1, 2, 3))
    assert ((fractions >= 0.1) & (fractions <= 0.2)).all()
    assert not torch.equal(mask[0], mask[1])  # one mask per picture
    known = (1 - mask).bool().expand_as(x0)
    torch.testing.assert_close(x1[known], quantize8(x0)[known])
    hole = x1[mask.bool().expand_as(x0)]
    assert 0.8 < float(hole.std()) < 1.2  # standard normal noise, as the official runner


def test_degrader_refuses_mixed_families_and_user_masks():
    with pytest.raises(UsageError, match="one family"):
        Degrader(["jpeg-10", "sr4x-bicubic"])
    with pytest.raises(UsageError, match="--pairs"):
        Degrader(["inpaint-mask"])
    with pytest.raises(UsageError, match="unknown task"):
        Degrader(["jpeg-ten"])


def test_schedule_defaults_follow_the_family_for_real_world_variants():
    assert schedule_defaults("jpeg-real-10") == schedule_defaults("jpeg-10") == (0.3, False)
    assert schedule_defaults("blur-gauss-plain") == (1.0, True)
    assert schedule_defaults("inpaint") == (1.0, True)
    assert schedule_defaults("inpaint-freeform3040") == (1.0, True)


def test_random_subcrop_cuts_one_aligned_window_from_every_tensor():
    x = torch.arange(2 * 3 * 20 * 20, dtype=torch.float32).reshape(2, 3, 20, 20)
    for seed in range(10):
        a, b, none = random_subcrop(
            [x, x + 1, None], 8, torch.Generator().manual_seed(seed), align=4
        )
        assert none is None and a.shape == (2, 3, 8, 8)
        torch.testing.assert_close(b, a + 1)
        top, left = divmod(int(a[0, 0, 0, 0]), 20)
        assert top % 4 == 0 and left % 4 == 0


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_paired_crops_read_small_sr4x_pictures_at_the_matching_place(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (10, 9, 3), dtype=np.uint8)
    _save(tmp_path / "clean/sub/a.jpg", clean)  # another extension matches by stem
    _save(tmp_path / "low/sub/a.png", small)
    _save(tmp_path / "clean/lonely.png", clean)
    pairs = PairedCrops(tmp_path / "clean", tmp_path / "low", family="sr4x", crop=16)
    assert len(pairs) == 1 and pairs.unmatched == ["lonely.png"] and pairs.pairs[0].scale == 4
    x0, x1, mask, _ = pairs.batch(6, torch.Generator().manual_seed(0))
    assert x0.shape == x1.shape == (6, 3, 16, 16) and mask is None
    # Every x1 crop is whole 4x4 cells of low-res pixels: the nearest upsampling of a window.
    cells = x1[..., ::4, ::4]
    torch.testing.assert_close(nearest_upsample4(cells), x1)
    with pytest.raises(UsageError, match="not 36x40"):
        PairedCrops(tmp_path / "clean", tmp_path / "low", family="jpeg", crop=16)


def test_paired_crops_for_inpainting_take_the_hole_from_transparency(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (24, 24, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[8:16, 8:16, 3] = 0  # the hole
    _save(tmp_path / "clean/a.png", rgba[..., :3].copy())
    _save(tmp_path / "holes/a.png", rgba)
    pairs = PairedCrops(tmp_path / "clean", tmp_path / "holes", family="inpaint", crop=24)
    x0, x1, mask, _ = pairs.centre(0, torch.Generator().manual_seed(0))
    assert mask is not None and float(mask.sum()) == 64
    torch.testing.assert_close(x1 * (1 - mask), x0 * (1 - mask))
    _save(tmp_path / "opaque/a.png", rgba[..., :3].copy())
    with pytest.raises(UsageError, match="transparency"):
        PairedCrops(tmp_path / "clean", tmp_path / "opaque", family="inpaint", crop=24)


@pytest.mark.parametrize("task", ["blur-gauss", "blur-gauss-plain", "sr4x-bicubic", "jpeg-10"])
def test_classical_degrader_starts_from_the_baseline_of_the_8_bit_degraded_picture(task):
    x0 = _pictures(count=2)
    x1, mask, _ = Degrader([task], classical=True)(x0, torch.Generator().manual_seed(1))
    assert mask is None and x1.shape == x0.shape
    for picture, start in zip(x0, x1, strict=True):
        degraded = quantize8(get_operator(task)(picture[None]).picture)
        expected = classical_baseline(task, degraded, tuple(x0.shape[-2:]))
        assert torch.allclose(start[None], expected, atol=1e-6)


def test_classical_inpainting_start_fills_the_hole_by_telea_and_keeps_known_pixels():
    x0 = _pictures(count=2, size=48)
    x1, mask, _ = Degrader(["inpaint-freeform2030"], classical=True)(
        x0, torch.Generator().manual_seed(2)
    )
    assert mask is not None and float(mask.mean()) > 0.1
    known = mask == 0
    assert torch.allclose(x1.expand_as(x0)[known.expand_as(x0)], quantize8(x0)[known.expand_as(x0)])
    for i in range(2):
        expected = classical_baseline(
            "inpaint-freeform2030",
            quantize8(apply_hole(x0[i : i + 1], mask[i : i + 1])),
            (48, 48),
            mask=mask[i : i + 1],
        )
        assert torch.equal(x1[i : i + 1], expected)
    # Telea's fill is a smooth guess, not the white hole of the degraded picture.
    assert float(x1[mask.expand_as(x1) == 1].mean()) < 0.9
