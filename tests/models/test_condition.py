"""A network told the picture's JPEG quality (checkpoint condition "jpeg-quality"): its cond
input, the checks on its metadata, and the network that reads it."""

import dataclasses

import pytest
import torch
from helpers import make_checkpoint, tiny_meta, tiny_state

from i2sb_cli.errors import CheckpointError
from i2sb_cli.models.checkpoint import load_checkpoint
from i2sb_cli.models.condition import UNKNOWN_JPEG_QUALITY, network_cond, quality_plane
from i2sb_cli.nets import ADMUNet


def test_the_quality_is_a_constant_plane_in_the_pixels_range():
    plane = quality_plane(torch.tensor([100.0, 50.0, 10.0]), (4, 5))
    assert plane.shape == (3, 1, 4, 5)
    assert plane[0].unique().tolist() == [1.0]
    assert plane[1].unique().tolist() == [0.0]
    assert plane[2].unique().tolist() == pytest.approx([-0.8])


def test_network_cond_is_x1_and_the_planes_of_the_condition():
    x1 = torch.rand(2, 3, 8, 8)
    assert network_cond(x1, cond_x1=False) is None
    assert network_cond(x1, cond_x1=True) is x1
    told = network_cond(
        x1, cond_x1=True, condition="jpeg-quality", jpeg_quality=torch.tensor([75.0, 20.0])
    )
    assert told.shape == (2, 4, 8, 8)
    torch.testing.assert_close(told[:, :3], x1)
    assert told[0, 3].unique().tolist() == [0.5]
    assert told[1, 3].unique().tolist() == pytest.approx([-0.6])
    with pytest.raises(ValueError, match="one per picture"):
        network_cond(x1, cond_x1=True, condition="jpeg-quality")
    with pytest.raises(ValueError, match="one per picture"):
        network_cond(x1, cond_x1=True, condition="jpeg-quality", jpeg_quality=torch.tensor([75.0]))


def test_a_checkpoint_told_the_quality_round_trips_with_seven_inputs(tmp_path):
    path = make_checkpoint(
        tmp_path / "q.safetensors", task="jpeg", cond_x1=True, condition="jpeg-quality"
    )
    net, meta = load_checkpoint(path)
    assert meta.condition == "jpeg-quality" and meta.config.in_channels == 7
    assert meta.config.cond_channels == 4
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    # Checks and timings tell it the unknown quality; restore tells each picture's.
    default = meta.network_cond(x)
    assert default[0, 3].unique().tolist() == [UNKNOWN_JPEG_QUALITY / 50 - 1]
    with torch.no_grad():
        low = net(x, torch.tensor([300.0]), meta.network_cond(x, torch.tensor([10.0])))
        high = net(x, torch.tensor([300.0]), meta.network_cond(x, torch.tensor([90.0])))
    assert not torch.equal(low, high)  # the plane reaches the output


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"task": "sr4x"}, "is for a cond_x1 network of the jpeg family"),
        ({"cond_x1": False}, "is for a cond_x1 network of the jpeg family"),
        ({"condition": ""}, "need 6 network inputs, not 7"),
    ],
)
def test_a_condition_needs_its_family_x1_and_inputs(changes, message):
    meta = tiny_meta(task="jpeg", cond_x1=True, condition="jpeg-quality")
    with pytest.raises(CheckpointError, match=message):
        dataclasses.replace(meta, **changes).validate("q.safetensors")


def test_the_network_refuses_a_cond_without_the_condition_planes():
    meta = tiny_meta(task="jpeg", cond_x1=True, condition="jpeg-quality")
    net = ADMUNet(meta.config)
    net.load_state_dict(tiny_state(meta))
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"cond shape \(1, 3, 16, 16\) is not \(1, 4, 16, 16\)"):
        net(x, torch.tensor([1.0]), x)
