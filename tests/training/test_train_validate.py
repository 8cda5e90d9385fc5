"""Validation during training: what the restorations are scored beside."""

import torch
from helpers import tiny_config

from i2sb_cli.bridge import make_schedule
from i2sb_cli.degrade import apply_hole
from i2sb_cli.evaluation.metrics import psnr
from i2sb_cli.nets import ADMUNet
from i2sb_cli.training.data import quantize8
from i2sb_cli.training.validate import ValItem, validate


def _inpainting_item() -> ValItem:
    generator = torch.Generator().manual_seed(0)
    x0 = quantize8(torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    fill = quantize8(x0 + 0.1 * torch.randn(x0.shape, generator=generator)).clamp(-1, 1)
    return ValItem("a.png", "inpaint-center", x0, (1 - mask) * x0 + mask * fill, mask)


def _validate(item: ValItem, **options) -> dict:
    net = ADMUNet(tiny_config(cond_x1=True)).eval()
    schedule = make_schedule(1.0)
    return validate(net, schedule, [item], nfe=1, ot_ode=True, cond_x1=True, seed=0, **options)


def test_a_classical_start_is_scored_as_it_is_and_a_noise_start_with_a_white_hole() -> None:
    item = _inpainting_item()
    told = _validate(item, classical_start=True)["psnr_input"]
    assert told == round(psnr(item.x1, item.x0), 4)
    white = _validate(item)["psnr_input"]
    assert white == round(psnr(apply_hole(item.x1, item.mask), item.x0), 4)
    assert told > white + 5
