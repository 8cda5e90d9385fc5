"""Importing official I2SB checkpoints: latest.pt + options.pkl written as the official trainer
does, from the small ADM preset, then converted and compared with the original EMA network."""

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_pixels, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.models import cache
from i2sb_cli.models.checkpoint import load_checkpoint, save_checkpoint
from i2sb_cli.models.convert import (
    match_preset,
    official_meta,
    our_key,
    read_official,
    read_options,
)
from i2sb_cli.nets.adm import OFFICIAL_PREFIX, ADMUNet, preset


def _options(argv: list[str]) -> argparse.Namespace:
    """The official train.py's options (the part this code reads and more), parsed and
    completed the way its create_training_options() does."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", type=str, default=None)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--corrupt", type=str, default=None)
    parser.add_argument("--t0", type=float, default=1e-4)
    parser.add_argument("--T", type=float, default=1.0)
    parser.add_argument("--interval", type=int, default=1000)
    parser.add_argument("--beta-max", type=float, default=0.3)
    parser.add_argument("--ot-ode", action="store_true")
    parser.add_argument("--clip-denoise", action="store_true")
    parser.add_argument("--cond-x1", action="store_true")
    parser.add_argument("--add-x1-noise", action="store_true")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--dataset-dir", type=Path, default="/dataset")
    parser.add_argument("--log-dir", type=Path, default=".log")
    parser.add_argument("--wandb-api-key", type=str, default=None)
    opt = parser.parse_args(argv)
    opt.device = "cuda"
    opt.name = opt.name or opt.corrupt
    opt.distributed = False
    opt.use_fp16 = False
    opt.ckpt_path = Path("results") / opt.name
    opt.load = None
    return opt


def _randomised(config, seed: int) -> ADMUNet:
    """A net whose every tensor is random (ADM zero-initialises some output layers)."""
    torch.manual_seed(seed)
    net = ADMUNet(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def write_official(folder: Path, argv: list[str]) -> ADMUNet:
    """An official folder for the adm-small preset; returns the network with the EMA weights."""
    opt = _options(argv)
    config = preset("adm-small", conditioned=opt.cond_x1)
    net, ema_net = _randomised(config, 1), _randomised(config, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=opt.lr)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000, gamma=0.99)
    x = torch.randn(1, config.in_channels, 32, 32)
    net(x[:, :3], torch.tensor([5.0]), x[:, 3:] if opt.cond_x1 else None).square().mean().backward()
    optimizer.step()
    sched.step()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "net": {OFFICIAL_PREFIX + k: v for k, v in net.state_dict().items()},
            "ema": {
                "decay": opt.ema,
                "num_updates": 1234,
                "shadow_params": [p.detach().clone() for p in ema_net.parameters()],
                "collected_params": None,
            },
            "optimizer": optimizer.state_dict(),
            "sched": sched.state_dict(),
        },
        folder / "latest.pt",
    )
    with (folder / "options.pkl").open("wb") as handle:
        pickle.dump(opt, handle)
    return ema_net


INPAINT = ["--corrupt", "inpaint-center", "--beta-max", "1.0", "--ot-ode", "--cond-x1"]
SMALL = ["--image-size", "32", "--interval", "500", "--t0", "2e-4", "--T", "0.9"]


def _cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_import_keeps_the_ema_network_and_the_options(tmp_path):
    ema_net = write_official(tmp_path / "run", [*INPAINT, *SMALL, "--wandb-api-key", "s3cret"])
    result = _cli("models", "import", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == tmp_path / "cache" / "models" / "official-inpaint-center.safetensors"
    assert cache.recorded_sha256(path) == cache.sha256_file(path)

    net, meta = load_checkpoint(path)
    assert (meta.task, meta.ot_ode, meta.cond_x1) == ("inpaint-center", True, True)
    assert meta.beta_max == 1.0
    assert (meta.interval, meta.t0, meta.t1, meta.default_nfe) == (500, 2e-4, 0.9, 100)
    assert meta.licence == "CC-BY-NC-SA-4.0"
    assert meta.config == preset("adm-small", conditioned=True)
    assert meta.training["ema_num_updates"] == 1234
    assert "s3cret" not in path.read_bytes()[:100_000].decode("latin-1")
    x, cond = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    t = torch.tensor([0.2, 731.7])
    with torch.no_grad():
        expected = ema_net(x, t, cond)
        torch.testing.assert_close(net(x, t, cond), expected, rtol=0, atol=1e-6)


def test_restore_runs_on_the_import_as_on_the_original(tmp_path):
    ema_net = write_official(tmp_path / "run", ["--corrupt", "sr4x-pool", *SMALL])
    env = {"I2SB_CACHE_DIR": str(tmp_path / "cache")}
    assert _cli("models", "import", tmp_path / "run" / "latest.pt", env=env).exit_code == 0
    # The same weights and schedule written directly: restore must give the same pixels.
    official = read_official(tmp_path / "run")
    meta = official_meta(official, name="direct", licence="x", provenance="x", default_nfe=2)
    direct = tmp_path / "direct.safetensors"
    save_checkpoint(direct, ema_net.state_dict(), meta)
    picture = write_picture(tmp_path / "small.png", 8)
    outputs = []
    for model in ("official-sr4x-pool", direct):
        out = tmp_path / f"out-{len(outputs)}.png"
        # The net has attention, so it runs on tiles of its training size (32 here).
        tiles = ("--tile", 32, "--tile-overlap", 8, "--backend", "torch")
        result = _cli("restore", picture, "--model", model, "-o", out, "--nfe", 2, *tiles, env=env)
        assert result.exit_code == 0, result.stderr
        outputs.append(read_pixels(out))
    assert outputs[0].shape == (32, 32, 3)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_name_conflicts_and_replacing(tmp_path):
    write_official(tmp_path / "run", ["--corrupt", "jpeg-5", *SMALL])
    cache_dir = ("--cache-dir", tmp_path / "cache")
    wrong = _cli("models", "import", tmp_path / "run", "--name", "official-blur-uni", *cache_dir)
    assert wrong.exit_code == 2 and "jpeg-5" in wrong.stderr
    assert _cli("models", "import", tmp_path / "run", "--name", "mine", *cache_dir).exit_code == 0
    again = _cli("models", "import", tmp_path / "run", "--name", "mine", *cache_dir)
    assert again.exit_code == 2 and "--force" in again.stderr
    forced = _cli("models", "import", tmp_path / "run", "--name", "mine", "--force", *cache_dir)
    assert forced.exit_code == 0, forced.stderr
    bad_name = _cli("models", "import", tmp_path / "run", "--name", "../x", *cache_dir)
    assert bad_name.exit_code == 2


class _Payload:
    """A pickle that would run code when loaded without restriction."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_options_unpickler_refuses_anything_but_namespaces_and_paths(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "options.pkl"
    opt = _options(["--corrupt", "sr4x-pool"])
    opt.extra = _Payload(marker)
    evil.write_bytes(pickle.dumps(opt))
    with pytest.raises(CheckpointError, match=r"Path\.touch"):
        read_options(evil)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        read_options(evil)
    assert not marker.exists()


def test_latest_pt_holding_code_is_refused(tmp_path):
    write_official(tmp_path / "run", ["--corrupt", "sr4x-pool", *SMALL])
    blob = torch.load(tmp_path / "run" / "latest.pt", weights_only=True)
    blob["extra"] = _Payload(tmp_path / "pwned")
    torch.save(blob, tmp_path / "run" / "latest.pt")
    with pytest.raises(CheckpointError, match="more than tensors"):
        read_official(tmp_path / "run")
    assert not (tmp_path / "pwned").exists()


def test_ema_in_another_order_or_unknown_architecture_is_refused(tmp_path):
    write_official(tmp_path / "run", ["--corrupt", "sr4x-pool", *SMALL])
    latest = tmp_path / "run" / "latest.pt"
    blob = torch.load(latest, weights_only=True)
    shadow = blob["ema"]["shadow_params"]
    shadow[0], shadow[1] = shadow[1], shadow[0]
    torch.save(blob, latest)
    with pytest.raises(CheckpointError, match="parameter order"):
        read_official(tmp_path / "run")
    shadow[0], shadow[1] = shadow[1], shadow[0]
    blob["net"].pop(next(iter(blob["net"])))
    shadow.pop(0)
    torch.save(blob, latest)
    with pytest.raises(CheckpointError, match="no known architecture"):
        read_official(tmp_path / "run")


def test_unsupported_options_are_refused(tmp_path):
    for argv, problem in (
        (["--corrupt", "mixture"], "not one of"),
        (["--corrupt", "sr4x-pool", "--add-x1-noise"], "add_x1_noise"),
    ):
        path = tmp_path / "options.pkl"
        path.write_bytes(pickle.dumps(_options(argv)))
        with pytest.raises(CheckpointError, match=problem):
            read_options(path)
    with pytest.raises(CheckpointError, match=r"latest\.pt"):
        read_official(tmp_path / "nowhere")


def test_official_adm256_keys_are_recognised(golden_dir):
    """The key names and shapes of the official network (tests/golden/adm256_keys.txt, in official
    order) are those of the adm256 preset, with 3 or 6 input channels."""
    lines = (golden_dir / "adm256_keys.txt").read_text().splitlines()
    shapes = {}
    for line in lines:
        key, shape, _ = line.split("\t")
        shapes[our_key(key)] = tuple(json.loads(shape))
    assert match_preset(shapes, False, None, golden_dir)[0] == "adm256"
    shapes["input_blocks.0.0.weight"] = (256, 6, 3, 3)
    assert match_preset(shapes, True, None, golden_dir)[0] == "adm256"
    with pytest.raises(CheckpointError, match="no known architecture"):
        match_preset(shapes, False, None, golden_dir)
