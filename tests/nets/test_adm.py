"""ADM UNet against official guided-diffusion (tests/golden/unet_small*, adm256_keys.txt)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from i2sb_cli.nets import (
    OFFICIAL_PREFIX,
    PRESET_NAMES,
    ADMUNet,
    UNetConfig,
    config_from_guided_diffusion,
    count_parameters,
    preset,
)

ATOL = 1e-4  # tests/golden/README.md: float32 vs float64 of the same net differ by <= 4.5e-6


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


@pytest.fixture(scope="module")
def small_config(golden_dir: Path) -> UNetConfig:
    official = json.loads(_metadata(golden_dir / "unet_small.safetensors")["config"])
    return config_from_guided_diffusion(official)


@pytest.fixture(scope="module")
def small_state(golden_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(golden_dir / "unet_small.safetensors")


@pytest.fixture(scope="module")
def small_net(small_config: UNetConfig, small_state: dict[str, torch.Tensor]) -> ADMUNet:
    net = ADMUNet(small_config).eval()
    net.load_state_dict(small_state, strict=True)
    return net


def test_golden_config_maps_to_rates(small_config: UNetConfig) -> None:
    # "16,8" are pixel resolutions at image_size 32, i.e. downsample rates 2 and 4.
    assert small_config == preset("adm-small")
    assert small_config.attention_resolutions == (2, 4)
    assert small_config.size_multiple == 4
    assert not small_config.conditioned


def test_small_keys_in_official_order(golden_dir: Path, small_net: ADMUNet) -> None:
    key_order = json.loads(_metadata(golden_dir / "unet_small.safetensors")["key_order"])
    assert list(small_net.state_dict()) == key_order
    assert count_parameters(small_net) == 1_396_323


def test_small_output_and_activations(golden_dir: Path, small_net: ADMUNet) -> None:
    io = np.load(golden_dir / "unet_small_io.npz")
    acts: dict[str, torch.Tensor] = {}

    def capture(name: str, batch0: bool):
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            acts[name] = output[:1] if batch0 else output

        return hook

    named = [(f"input_blocks.{i}", b) for i, b in enumerate(small_net.input_blocks)]
    named += [("middle_block", small_net.middle_block)]
    named += [(f"output_blocks.{i}", b) for i, b in enumerate(small_net.output_blocks)]
    handles = [m.register_forward_hook(capture(f"act/{n}", True)) for n, m in named]
    handles.append(small_net.time_embed.register_forward_hook(capture("emb", False)))
    try:
        with torch.no_grad():
            out = small_net(torch.from_numpy(io["x"]), torch.from_numpy(io["t"]))
    finally:
        for h in handles:
            h.remove()
    np.testing.assert_allclose(out.numpy(), io["out"], atol=ATOL, rtol=0)
    assert len(acts) == 9 + 1 + 9 + 1
    for name, value in acts.items():
        np.testing.assert_allclose(value.numpy(), io[name], atol=ATOL, rtol=0, err_msg=name)


def test_conditional_variant(
    golden_dir: Path, small_config: UNetConfig, small_state: dict[str, torch.Tensor]
) -> None:
    cond_file = golden_dir / "unet_small_cond.safetensors"
    config = config_from_guided_diffusion(json.loads(_metadata(cond_file)["config"]))
    assert config == dataclasses.replace(small_config, in_channels=6)
    assert config == preset("adm-small", conditioned=True) and config.conditioned
    net = ADMUNet(config).eval()
    net.load_state_dict({**small_state, **load_file(cond_file)}, strict=True)
    io = np.load(golden_dir / "unet_small_cond_io.npz")
    x, cond, t = (torch.from_numpy(io[k]) for k in ("x", "cond", "t"))
    with torch.no_grad():
        out = net(x, t, cond=cond)
    np.testing.assert_allclose(out.numpy(), io["out"], atol=ATOL, rtol=0)


def _official_keys(golden_dir: Path) -> list[tuple[str, list[int]]]:
    lines = (golden_dir / "adm256_keys.txt").read_text().splitlines()
    return [(key, json.loads(shape)) for key, shape, _ in (ln.split("\t") for ln in lines)]


def _keys(net: ADMUNet) -> list[tuple[str, list[int]]]:
    return [(OFFICIAL_PREFIX + k, list(v.shape)) for k, v in net.state_dict().items()]


def test_adm256_matches_official_keys(golden_dir: Path) -> None:
    with torch.device("meta"):
        net = ADMUNet(preset("adm256"))
        cond = ADMUNet(preset("adm256", conditioned=True))
    official = _official_keys(golden_dir)
    assert _keys(net) == official
    assert count_parameters(net) == 552_807_171
    assert count_parameters(cond) == 552_814_083
    diff = [(a, b) for a, b in zip(_keys(cond), official, strict=True) if a != b]
    assert diff == [
        (
            (f"{OFFICIAL_PREFIX}input_blocks.0.0.weight", [256, 6, 3, 3]),
            (f"{OFFICIAL_PREFIX}input_blocks.0.0.weight", [256, 3, 3, 3]),
        )
    ]


def test_non_square_channels_last_and_scalar_t(small_net: ADMUNet) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 48, generator=g)
    t = torch.tensor(123.5)
    with torch.no_grad():
        out = small_net(x, t)
        out_cl = small_net(x.to(memory_format=torch.channels_last), t)
        out_vec = small_net(x, t.expand(2))
    assert out.shape == (2, 3, 32, 48)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_cl, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_vec, out, atol=0, rtol=0)


def test_bad_inputs(small_net: ADMUNet) -> None:
    x, t = torch.zeros(1, 3, 32, 32), torch.zeros(1)
    with pytest.raises(ValueError, match="not conditioned"):
        small_net(x, t, cond=x)
    cond_net = ADMUNet(preset("adm-small", conditioned=True))
    with pytest.raises(ValueError, match="pass cond"):
        cond_net(x, t)
    with pytest.raises(ValueError, match="cond shape"):
        cond_net(x, t, cond=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        small_net(torch.zeros(1, 3, 30, 32), t)
    with pytest.raises(ValueError, match="t must be"):
        small_net(x, torch.zeros(3))


def test_config_round_trip_and_errors() -> None:
    config = preset("adm256", conditioned=True)
    d = json.loads(json.dumps(config.to_dict()))
    assert UNetConfig.from_dict(d) == config
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        UNetConfig.from_dict({**d, "bogus": 1})
    del d["dropout"]
    with pytest.raises(ValueError, match="missing keys \\['dropout'\\]"):
        UNetConfig.from_dict(d)
    bad_values = {
        "model_channels": "256",
        "channel_mult": [1, 0],
        "attention_resolutions": [16, 8, 64],  # 64 is not a rate of a 6-level net
        "use_scale_shift_norm": 1,
        "dropout": 1.5,
        "num_head_channels": 48,  # 256 is not a multiple of 48
    }
    for key, value in bad_values.items():
        with pytest.raises(ValueError, match=key if key != "num_head_channels" else "48"):
            UNetConfig.from_dict({**config.to_dict(), key: value})
    with pytest.raises(ValueError, match="multiple of 32"):
        dataclasses.replace(config, model_channels=48)


def test_presets() -> None:
    assert set(PRESET_NAMES) == {"adm256", "adm-small", "tiny", "small"}
    with pytest.raises(ValueError, match="adm256, adm-small, tiny, small"):
        preset("huge")
    for name in PRESET_NAMES:
        config = preset(name)
        assert (config.in_channels, config.out_channels) == (3, 3)
        assert preset(name, conditioned=True).in_channels == 6


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_cpu_presets_run(name: str) -> None:
    config = preset(name)
    assert config.attention_resolutions == ()
    net = ADMUNet(config).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64), torch.tensor([500.0]))
    assert out.shape == (1, 3, 64, 64)


def test_conv_resampling_and_plain_norm_variant() -> None:
    # resblock_updown=False uses guided-diffusion's conv Downsample (`op`) / Upsample (`conv`).
    config = dataclasses.replace(
        preset("tiny"), resblock_updown=False, use_scale_shift_norm=False, dropout=0.1
    )
    net = ADMUNet(config).eval()
    keys = net.state_dict()
    assert "input_blocks.2.0.op.weight" in keys
    assert "output_blocks.1.1.conv.weight" in keys
    assert keys["input_blocks.1.0.emb_layers.1.weight"].shape == (32, 128)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 16, 24), torch.tensor(1.0)).shape == (1, 3, 16, 24)


def test_an_untrained_network_outputs_zero_as_adm_initialises_it():
    """ADM zeroes the last layer of every residual branch and of the network, so training
    starts from x0 = x_t (the bridge's start) rather than from random corrections."""
    torch.manual_seed(0)
    net = ADMUNet(dataclasses.replace(preset("tiny"), attention_resolutions=(8,))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x, torch.tensor([10.0, 500.0])), torch.zeros_like(x))
    zero = [k for k, v in net.state_dict().items() if v.is_floating_point() and not v.any()]
    assert "out.2.weight" in zero and any("proj_out" in k for k in zero)
    assert any(k.endswith("out_layers.3.weight") for k in zero)
    assert net.input_blocks[0][0].weight.abs().sum() > 0


def test_a_patched_network_folds_pixels_into_channels() -> None:
    """patch_size p: the layers run at 1/p of the size on p*p times the channels, the output
    is the picture's size again, and each output pixel depends on its own patch of the input."""
    torch.manual_seed(0)
    config = dataclasses.replace(preset("tiny", conditioned=True), patch_size=4)
    assert config.size_multiple == 4 * 8
    net = ADMUNet(config).eval()
    keys = net.state_dict()
    assert keys["input_blocks.0.0.weight"].shape == (32, 6 * 16, 3, 3)
    assert keys["out.2.weight"].shape == (3 * 16, 32, 3, 3)
    for p in net.out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, cond = torch.randn(2, 3, 32, 64), torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        out = net(x, torch.tensor([3.0, 700.0]), cond)
    assert out.shape == x.shape
    # The pixel shuffle puts output channel c*p*p + i*p + j of patch (Y, X) at (pY+i, pX+j).
    with torch.no_grad():
        folded = net.out(_trunk(net, x, torch.tensor([3.0, 700.0]), cond))
    assert torch.allclose(out[:, 1, 4 * 2 + 3, 4 * 5 + 1], folded[:, 1 * 16 + 3 * 4 + 1, 2, 5])
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 16, 32), torch.tensor(1.0), torch.zeros(1, 3, 16, 32))


def _trunk(net: ADMUNet, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Everything of a patched net but its output layer and pixel shuffle (test helper)."""
    from i2sb_cli.nets.blocks import timestep_embedding

    h = torch.nn.functional.pixel_unshuffle(torch.cat([x, cond], 1), net.config.patch_size)
    emb = net.time_embed(timestep_embedding(t, net.config.model_channels))
    skips = []
    for block in net.input_blocks:
        h = block(h, emb)
        skips.append(h)
    h = net.middle_block(h, emb)
    for block in net.output_blocks:
        h = block(torch.cat([h, skips.pop()], 1), emb)
    return h


def test_configs_written_before_patch_size_load_as_unpatched() -> None:
    d = preset("tiny").to_dict()
    assert d["patch_size"] == 1
    del d["patch_size"]
    assert UNetConfig.from_dict(d) == preset("tiny")
    with pytest.raises(ValueError, match="patch_size"):
        UNetConfig.from_dict({**d, "patch_size": 0})
