"""Training: the objective (Algorithm 1), the EMA, the data, and `i2sb train` end to end."""

import numpy as np
import pytest
import torch
from helpers import tiny_config
from PIL import Image
from typer.testing import CliRunner

from i2sb_cli.bridge import make_schedule
from i2sb_cli.bridge.objective import (
    INPUT_ERROR_FLOOR,
    bridge_loss,
    bridge_sample,
    bridge_target,
    input_error_weights,
    time_input,
)
from i2sb_cli.cli.app import app
from i2sb_cli.errors import UsageError
from i2sb_cli.models.checkpoint import load_checkpoint
from i2sb_cli.nets import ADMUNet
from i2sb_cli.training.data import PhotoCrops, quantize8
from i2sb_cli.training.step import (
    EMA,
    Hooks,
    TrainSettings,
    learning_rate,
    new_state,
    step_seed,
    train,
)


def test_bridge_sample_is_the_analytic_posterior():
    schedule = make_schedule(0.3)
    x0, x1 = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), -0.5)
    n = torch.tensor([0, 999])
    x_n = bridge_sample(x0, x1, n, schedule, eps=None)
    # At the ends of the bridge the marginal sits on x0 and x1 up to the tiny std_fwd[0].
    assert x_n[0].mean().item() == pytest.approx(0.5, abs=1e-3)
    assert x_n[1].mean().item() == pytest.approx(-0.5, abs=1e-3)
    eps = torch.ones_like(x0)
    noisy = bridge_sample(x0, x1, n, schedule, eps)
    torch.testing.assert_close(noisy - x_n, schedule.std_sb[n].float().view(-1, 1, 1, 1) * eps)


def test_target_recovers_x0_through_the_denoiser_formula():
    schedule = make_schedule(1.0)
    x0, x1, eps = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    n = torch.tensor([5, 400, 990])
    x_n = bridge_sample(x0, x1, n, schedule, eps)
    target = bridge_target(x_n, x0, n, schedule)
    x0_hat = x_n - schedule.std_fwd[n].float().view(-1, 1, 1, 1) * target
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        time_input(n, schedule, torch.device("cpu")), schedule.noise_levels[n]
    )


def test_inpainting_loss_only_counts_the_hole():
    output, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    assert bridge_loss(output, target, mask).item() == 0
    mask[..., 0, 0] = 1
    assert bridge_loss(output, target, mask).item() == pytest.approx(3 / 48)


def test_weighed_loss_with_equal_weights_is_the_plain_mean_and_weights_scale_pictures():
    generator = torch.Generator().manual_seed(0)
    output, target = torch.randn(3, 3, 4, 4, generator=generator), torch.zeros(3, 3, 4, 4)
    plain = bridge_loss(output, target)
    assert bridge_loss(output, target, weights=torch.ones(3)).item() == pytest.approx(plain.item())
    only_first = bridge_loss(output, target, weights=torch.tensor([3.0, 0.0, 0.0]))
    assert only_first.item() == pytest.approx(output[0].square().mean().item())


def test_input_error_weights_count_each_picture_relative_to_its_input_error():
    x0 = torch.zeros(3, 3, 8, 8)
    x1 = torch.stack([torch.full((3, 8, 8), v) for v in (0.1, 0.2, 0.0)])
    weights = input_error_weights(x0, x1)
    assert weights.mean().item() == pytest.approx(1.0)
    # Inversely proportional to the squared error: twice the error, a quarter of the weight.
    assert (weights[0] / weights[1]).item() == pytest.approx(4.0)
    # A clean input weighs as one off by the floor, not without bound.
    assert (weights[2] / weights[0]).item() == pytest.approx(0.01 / INPUT_ERROR_FLOOR)


def test_ema_warm_up_follows_the_official_formula():
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.99)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # k = 1: decay min(0.99, 2 / 11)
    assert ema.shadow["weight"].item() == pytest.approx(1 - 2 / 11)


def test_learning_rate_warms_up_then_decays():
    settings = TrainSettings(steps=1000, lr=1e-3, warmup_steps=100)
    assert learning_rate(0, settings) == pytest.approx(1e-5)
    assert learning_rate(99, settings) == pytest.approx(1e-3)
    assert learning_rate(999, settings) == pytest.approx(1e-4, rel=1e-3)


def test_training_reduces_the_loss_on_a_fixed_task():
    torch.manual_seed(0)
    net = ADMUNet(tiny_config(cond_x1=True))
    schedule = make_schedule(0.3)
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1

    def batches(generator):
        x1 = quantize8(x0.flip(-1))
        return x0, x1, None, x1

    settings = TrainSettings(steps=60, lr=2e-3, warmup_steps=5)
    state = new_state(net, settings)
    logs = []
    finished = train(
        state,
        schedule,
        batches,
        settings,
        seed=0,
        hooks=Hooks(on_log=logs.append, log_every=20),
    )
    assert finished and state.step == 60 and [e.step for e in logs] == [20, 40, 60]
    assert logs[-1].loss < 0.7 * logs[0].loss
    assert all(e.grad_norm > 0 for e in logs)


@pytest.mark.parametrize("share, noise_free", [(0.0, "none"), (0.5, "some"), (1.0, "all")])
def test_ot_ode_share_draws_that_share_of_examples_without_bridge_noise(share, noise_free):
    torch.manual_seed(0)
    net = ADMUNet(tiny_config())
    schedule = make_schedule(0.3)
    x0 = torch.rand(16, 3, 8, 8) * 2 - 1
    x1 = x0.flip(-1)
    seen = []

    def recording(x_n, t, cond):
        seen.append(x_n.detach().clone())
        return net(x_n, t, cond)

    settings = TrainSettings(steps=2, warmup_steps=1, ot_ode_share=share)
    train(
        new_state(net, settings),
        schedule,
        lambda g: (x0, x1, None, None),
        settings,
        seed=0,
        model=recording,
    )
    on_ode_bridge = []
    for x_n in seen:
        # Which step each example drew is not known here: an example is noise-free when it
        # lies on the line between x0 and x1 at some step.
        for i in range(x_n.shape[0]):
            means = schedule.mu_x0[:, None] * x0[i].flatten() + schedule.mu_x1[:, None] * x1[
                i
            ].flatten().to(schedule.mu_x0.dtype)
            gap = (means.float() - x_n[i].flatten()).abs().amax(dim=1).min()
            on_ode_bridge.append(bool(gap < 1e-5))
    assert len(on_ode_bridge) == 32
    expected = {"none": not any(on_ode_bridge), "all": all(on_ode_bridge)}
    assert expected.get(noise_free, 0 < sum(on_ode_bridge) < 32)


def test_step_seeds_differ_by_rank_and_step():
    seeds = {step_seed(0, rank, step) for rank in range(2) for step in range(50)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(0, 0, 7) == step_seed(0, 0, 7) != step_seed(1, 0, 7)


def _write_photos(folder, count=3, size=(80, 72)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")


def test_photo_crops_are_seeded_and_in_range(tmp_path):
    _write_photos(tmp_path / "photos")
    crops = PhotoCrops(tmp_path / "photos", crop=32)
    a = crops.batch(5, torch.Generator().manual_seed(1))
    b = crops.batch(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 32, 32)
    torch.testing.assert_close(a, b)
    assert a.min() >= -1 and a.max() <= 1
    with pytest.raises(UsageError, match="at least"):
        PhotoCrops(tmp_path / "photos", crop=128)


def _train_args(tmp_path, *extra, steps=1):
    """`i2sb train` on tmp_path/photos into tmp_path/model.safetensors, small and on the CPU."""
    return [
        "train",
        str(tmp_path / "photos"),
        "-o",
        str(tmp_path / "model.safetensors"),
        "--steps",
        str(steps),
        "--batch-size",
        "2",
        "--crop",
        "64",
        "--checkpoint-every",
        "0",
        "--device",
        "cpu",
        *extra,
    ]


def test_train_command_writes_a_loadable_checkpoint(tmp_path):
    _write_photos(tmp_path / "photos", size=(96, 80))
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(app, _train_args(tmp_path, "--name", "t", steps=3))
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out)
    assert meta.name == "t" and meta.task == "sr4x-bicubic" and meta.cond_x1
    assert meta.training["steps_done"] == 3
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_ot_ode_share_is_recorded_and_must_agree_with_the_sampler(tmp_path):
    _write_photos(tmp_path / "photos", size=(96, 80))
    both = CliRunner().invoke(app, _train_args(tmp_path, "--ot-ode-share", "0.5"))
    assert both.exit_code == 0, both.output
    _, meta = load_checkpoint(tmp_path / "model.safetensors")
    assert not meta.ot_ode and meta.training["ot_ode_share"] == 0.5
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.state.safetensors").unlink()
    wrong = CliRunner().invoke(app, _train_args(tmp_path, "--stochastic", "--ot-ode-share", "1"))
    assert wrong.exit_code == 2
    assert "pass --ot-ode instead" in wrong.output
    assert not (tmp_path / "model.safetensors").exists()


def test_bf16_autocast_trains_with_a_float32_loss():
    torch.manual_seed(0)
    net = ADMUNet(tiny_config())
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    settings = TrainSettings(steps=2, warmup_steps=1, bf16=True)
    state = new_state(net, settings)
    logs = []
    train(
        state,
        make_schedule(0.3),
        lambda g: (x0, x0.flip(-1), None, None),
        settings,
        seed=0,
        hooks=Hooks(on_log=logs.append, log_every=1),
    )
    assert len(logs) == 2 and all(np.isfinite(e.loss) for e in logs)
    assert all(p.dtype == torch.float32 for p in net.parameters())
