"""8-bit weight storage (models/quantize.py) and checkpoints stored so."""

import pytest
import torch
from helpers import tiny_meta, tiny_state
from safetensors.torch import load_file, save_file

from i2sb_cli.errors import CheckpointError
from i2sb_cli.models.checkpoint import METADATA_KEY, load_checkpoint, save_checkpoint
from i2sb_cli.models.quantize import SCALE_SUFFIX, dequantize, quantize_int8


def test_weights_come_back_within_half_a_step_of_their_channel():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 4, 3, 3, generator=generator)
    weight[3] *= 100  # one loud channel must not coarsen the others
    stored = quantize_int8({"conv.weight": weight, "conv.bias": torch.randn(8)})

    assert stored["conv.weight"].dtype == torch.int8
    assert stored["conv.weight" + SCALE_SUFFIX].shape == (8,)
    assert stored["conv.bias"].dtype == torch.float16
    restored = dequantize(stored)
    assert set(restored) == {"conv.weight", "conv.bias"}
    assert all(t.dtype == torch.float32 for t in restored.values())
    peaks = weight.abs().flatten(1).amax(1)
    error = (restored["conv.weight"] - weight).abs().flatten(1).amax(1)
    assert (error <= peaks / 127 / 2 * 1.0001).all()
    # each channel's largest weight is stored exactly (level +-127)
    assert torch.allclose(restored["conv.weight"].abs().flatten(1).amax(1), peaks)


def test_a_channel_of_zeros_stays_zero_and_integers_pass_through():
    weight = torch.zeros(2, 3)
    weight[1] = torch.tensor([0.5, -0.5, 0.0])
    stored = quantize_int8({"w": weight, "steps": torch.tensor([3, 4])})
    restored = dequantize(stored)
    assert torch.equal(restored["w"][0], torch.zeros(3))
    assert torch.equal(restored["w"][1], weight[1])
    assert torch.equal(stored["steps"], torch.tensor([3, 4]))


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"w": torch.zeros(2, 2, dtype=torch.int8)}, "no scale"),
        ({"w": torch.zeros(2, 2, dtype=torch.int8), "w" + SCALE_SUFFIX: torch.ones(3)}, "no scale"),
        ({"w" + SCALE_SUFFIX: torch.ones(2)}, "has no int8 tensor"),
    ],
)
def test_dequantize_refuses_unpaired_tensors(stored, message):
    with pytest.raises(ValueError, match=message):
        dequantize(stored)


def test_an_int8_checkpoint_is_smaller_and_loads_what_dequantize_gives(tmp_path):
    meta = tiny_meta()
    state = tiny_state(meta, seed=5)
    small, half = tmp_path / "int8.safetensors", tmp_path / "fp16.safetensors"
    save_checkpoint(small, state, meta, dtype=torch.int8)
    save_checkpoint(half, state, meta, dtype=torch.float16)

    assert small.stat().st_size < 0.7 * half.stat().st_size
    net, loaded_meta = load_checkpoint(small)
    assert loaded_meta == meta
    expected = dequantize(quantize_int8(state))
    for key, tensor in net.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
        torch.testing.assert_close(tensor, state[key], rtol=0, atol=0.01 * state[key].abs().max())


def test_an_int8_checkpoint_missing_a_scale_is_refused_in_one_line(tmp_path):
    meta = tiny_meta()
    path = tmp_path / "int8.safetensors"
    save_checkpoint(path, tiny_state(meta), meta, dtype=torch.int8)
    tensors = load_file(path)
    dropped = next(k for k in tensors if k.endswith(SCALE_SUFFIX))
    del tensors[dropped]
    save_file(tensors, path, metadata={METADATA_KEY: meta.to_json()})

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "no scale" in message
