"""`i2sb train --condition jpeg-quality`: a jpeg network told each picture's JPEG quality,
trained from scratch, from a blind --init (its new input weighed zero), and on JPEG pairs."""

import pytest
import torch
from helpers import small_config_json, write_smooth_photos
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.models.checkpoint import load_checkpoint, read_meta
from i2sb_cli.nets import ADMUNet
from i2sb_cli.training.setup import TrainJob, resolve_network

SMALL = small_config_json()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_smooth_photos(tmp_path_factory.mktemp("photos"), seed=1)


def _train(out, *extra, data=None):
    args = ["train", *([str(data)] if data else []), "-o", str(out), "--crop", "32"]
    args += ["--batch-size", "2", "--device", "cpu", "--checkpoint-every", "0", *extra]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def blind(photos, tmp_path_factory):
    """A blind real-jpeg network, trained for one step."""
    out = tmp_path_factory.mktemp("blind") / "blind.safetensors"
    result = _train(out, "--task", "real-jpeg", "--steps", "1", "--config", SMALL, data=photos)
    assert result.exit_code == 0, result.output
    return out


def test_a_network_told_the_quality_trains_and_validates(photos, tmp_path):
    out, metrics = tmp_path / "told.safetensors", tmp_path / "m.jsonl"
    result = _train(
        out, "--task", "real-jpeg", "--condition", "jpeg-quality", "--config", SMALL,
        "--steps", "2", "--val", str(photos), "--val-every", "2", "--val-nfe", "1",
        "--val-crop", "32", "--metrics", str(metrics), data=photos,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_meta(out)
    assert meta.condition == "jpeg-quality" and meta.config.in_channels == 7
    assert any('"val"' in line for line in metrics.read_text().splitlines())


def test_a_blind_init_gains_the_input_weighed_zero(blind):
    job = TrainJob(
        output=blind.with_name("told.safetensors"),
        tasks=("real-jpeg",),
        init=str(blind),
        condition="jpeg-quality",
    )
    model = resolve_network(job)
    assert model.condition == "jpeg-quality" and model.config.in_channels == 7
    told = ADMUNet(model.config).eval()
    told.load_state_dict(model.init_weights)
    base, _ = load_checkpoint(blind)
    x, x1, t = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.tensor([200.0])
    with torch.no_grad():
        want = base(x, t, x1)
        for quality in (10.0, 90.0):
            got = told(x, t, torch.cat([x1, torch.full((1, 1, 32, 32), quality / 50 - 1)], 1))
            torch.testing.assert_close(got, want)


def test_a_told_network_cannot_be_retrained_blind(blind, photos, tmp_path):
    told = tmp_path / "told.safetensors"
    args = ["--task", "real-jpeg", "--steps", "1", "--init"]
    assert (
        _train(told, *args, str(blind), "--condition", "jpeg-quality", data=photos).exit_code == 0
    )
    refused = _train(
        tmp_path / "again.safetensors", *args, str(told), "--condition", "", data=photos
    )
    assert refused.exit_code == 2 and "cannot be retrained without it" in refused.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "sr4x-bicubic", "--condition", "jpeg-quality"], "jpeg family"),
        (["--task", "real-jpeg", "--condition", "jpeg-quality", "--no-cond-x1"], "jpeg family"),
        (["--task", "real-jpeg", "--condition", "colour"], "must be one of jpeg-quality"),
    ],
)
def test_a_condition_is_refused_where_it_cannot_apply(photos, tmp_path, extra, message):
    result = _train(tmp_path / "m.safetensors", *extra, "--steps", "1", data=photos)
    assert result.exit_code == 2 and message in result.stderr


def test_pairs_tell_the_quality_their_jpeg_files_declare(photos, tmp_path):
    jpegs, pngs = tmp_path / "jpegs", tmp_path / "pngs"
    jpegs.mkdir(), pngs.mkdir()
    for picture in photos.iterdir():
        with Image.open(picture) as image:
            image.save(jpegs / f"{picture.stem}.jpg", quality=30)
            image.save(pngs / f"{picture.stem}.png")
    common = ["--task", "jpeg", "--condition", "jpeg-quality", "--config", SMALL, "--steps", "1"]
    result = _train(tmp_path / "a.safetensors", "--pairs", str(photos), str(jpegs), *common)
    assert result.exit_code == 0, result.output
    refused = _train(tmp_path / "b.safetensors", "--pairs", str(photos), str(pngs), *common)
    assert refused.exit_code == 2 and "which declare it" in refused.stderr
