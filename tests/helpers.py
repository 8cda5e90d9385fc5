"""Shared test helpers: tiny random checkpoints, small pictures written to disk, and a local
HTTP server for download tests."""

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2sb_cli.models.checkpoint import CheckpointMeta, save_checkpoint
from i2sb_cli.models.condition import CONDITIONS
from i2sb_cli.nets.adm import ADMUNet, UNetConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the tests run from (for scripts, benchmarks and a subprocess's PYTHONPATH)."""


def tiny_config(*, cond_x1: bool = False, condition: str = "") -> UNetConfig:
    """The smallest useful ADM UNet: two levels, one block each, attention only in the middle."""
    return UNetConfig(
        image_size=32,
        in_channels=(6 if cond_x1 else 3) + CONDITIONS[condition],
        out_channels=3,
        model_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        attention_resolutions=(),
        num_heads=1,
        num_head_channels=-1,
    )


def tiny_meta(
    *,
    name: str = "tiny-sr4x",
    task: str = "sr4x-bicubic",
    beta_max: float = 0.3,
    ot_ode: bool = False,
    cond_x1: bool = False,
    default_nfe: int = 2,
    interval: int = 1000,
    start: str = "degraded",
    degradation: str = "",
    default_ensemble: int = 1,
    condition: str = "",
) -> CheckpointMeta:
    return CheckpointMeta(
        name=name,
        config=tiny_config(cond_x1=cond_x1, condition=condition),
        task=task,
        beta_max=beta_max,
        ot_ode=ot_ode,
        cond_x1=cond_x1,
        default_nfe=default_nfe,
        interval=interval,
        start=start,
        degradation=degradation,
        default_ensemble=default_ensemble,
        condition=condition,
        licence="MIT",
        provenance="random weights for tests",
        training={"steps": 0},
    )


def tiny_state(meta: CheckpointMeta, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for `meta`'s net; the output layer (zero at init) is randomised too, so
    that the net is not the identity of the bridge and restorations depend on the noise."""
    torch.manual_seed(seed)
    net = ADMUNet(meta.config)
    generator = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    return {
        key: (t + 0.05 * torch.randn(t.shape, generator=generator) if t.is_floating_point() else t)
        for key, t in state.items()
    }


def make_checkpoint(path: Path, *, dtype: torch.dtype | None = None, **meta_options) -> Path:
    """Write a tiny random checkpoint at `path` and return the path."""
    meta = tiny_meta(**meta_options)
    save_checkpoint(path, tiny_state(meta), meta, dtype=dtype)
    return path


def make_inpaint_checkpoint(path: Path, task: str = "inpaint-center", **meta_options) -> Path:
    """A tiny untrained inpainting model as the official ones are set up (beta_max 1, OT-ODE,
    conditioned on x1)."""
    return make_checkpoint(
        path,
        name="tiny-inpaint",
        task=task,
        beta_max=1.0,
        ot_ode=True,
        cond_x1=True,
        **meta_options,
    )


def small_config_json() -> str:
    """`train --config` for the tiny net: every field but in_channels, which --cond-x1 and
    --condition decide."""
    fields = tiny_config(cond_x1=True).to_dict()
    return json.dumps({k: v for k, v in fields.items() if k != "in_channels"})


def write_smooth_photos(folder: Path, *, seed: int = 0, count: int = 3) -> Path:
    """`count` smooth 56x48 pictures with some texture (random low-res colours, upsampled, plus
    noise), as training photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
        big = np.asarray(Image.fromarray(small).resize((56, 48), Image.BICUBIC), np.int16)
        noisy = np.clip(big + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"p{i}.png")
    return folder


def write_picture(path: Path, size: int | tuple[int, int] = 16, *, seed: int = 0, mode="RGB"):
    """A random picture of `size` (width, height) pixels in `mode` (RGB or RGBA)."""
    width, height = (size, size) if isinstance(size, int) else size
    channels = 4 if mode == "RGBA" else 3
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def read_pixels(path: Path) -> np.ndarray:
    """A picture file's RGB pixels as uint8 (height, width, 3)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@contextlib.contextmanager
def serving(server, monkeypatch) -> Iterator:
    """Run a local HTTP test server (an http.server subclass with a `stop` Event) in a thread,
    with proxies and offline mode cleared so that downloads reach it; stop it afterwards."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("I2SB_OFFLINE", raising=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
