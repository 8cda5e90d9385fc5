"""The schedule, step spacing and sampler against the official implementation's numbers."""

import json

import numpy as np
import pytest
import torch

from i2sb_cli.bridge import (
    StepInfo,
    fill_hole,
    make_schedule,
    nfe_steps,
    per_image_noise,
    recorded_noise,
    sample,
)

QUANTITIES = ["betas", "std_fwd", "std_bwd", "mu_x0", "mu_x1", "std_sb"]


@pytest.fixture(scope="module")
def golden_schedule(golden_dir):
    return np.load(golden_dir / "schedule.npz")


@pytest.fixture(scope="module")
def golden_sampler(golden_dir):
    return np.load(golden_dir / "sampler_ot_ode.npz")


@pytest.mark.parametrize("beta_max", [0.3, 1.0])
def test_schedule_matches_official(golden_schedule, beta_max):
    schedule = make_schedule(beta_max)
    for name in QUANTITIES:
        ref64 = golden_schedule[f"bmax{beta_max}/{name}_f64"]
        ours = getattr(schedule, name).numpy()
        np.testing.assert_allclose(ours, ref64, rtol=1e-13, atol=1e-19, err_msg=name)
        # The float32 cast is what the official networks and samplers see.
        np.testing.assert_array_equal(
            ours.astype(np.float32), golden_schedule[f"bmax{beta_max}/{name}"], err_msg=name
        )
    np.testing.assert_array_equal(
        schedule.noise_levels.numpy(), golden_schedule[f"bmax{beta_max}/noise_levels"]
    )
    assert schedule.std_fwd[0] == pytest.approx(0.01)


def test_schedule_other_interval_is_symmetric():
    schedule = make_schedule(0.5, interval=200)
    assert schedule.betas.shape == (200,)
    torch.testing.assert_close(schedule.betas, schedule.betas.flip(0))
    torch.testing.assert_close(schedule.std_fwd, schedule.std_bwd.flip(0))
    assert schedule.noise_levels[-1] == pytest.approx(200.0)


def test_schedule_rejects_bad_values():
    with pytest.raises(ValueError, match="beta_max"):
        make_schedule(0.0)
    with pytest.raises(ValueError, match="interval"):
        make_schedule(0.3, interval=1)


def test_nfe_steps_match_official(golden_dir):
    golden = json.loads((golden_dir / "nfe_steps.json").read_text())
    assert golden["steps"], "golden file lists no steps"
    for nfe, steps in golden["steps"].items():
        assert nfe_steps(int(nfe), golden["interval"]) == steps, nfe
    assert nfe_steps(4) == [0, 250, 500, 749, 999]


@pytest.mark.parametrize("nfe", [0, 1000, -3])
def test_nfe_steps_rejects_out_of_range(nfe):
    with pytest.raises(ValueError, match="nfe"):
        nfe_steps(nfe)


def toy_denoiser(schedule, calls, clip=False):
    """The golden files' toy network: out = 0.3 tanh(x) + 0.001 t, x0 = x - std_fwd[n] out."""

    def denoise(x, n, cond):
        assert cond is None
        t = schedule.noise_levels[n]
        calls.append((n, float(t)))
        x0 = x - float(schedule.std_fwd[n]) * (0.3 * torch.tanh(x) + 0.001 * t)
        return x0.clamp(-1, 1) if clip else x0

    return denoise


def run_case(golden, case, *, ot_ode, clip=False, mask=None, x1=None, noise=None):
    beta_max = float(case.split("/")[1].removeprefix("bmax"))
    nfe = int(case.split("/")[2].removeprefix("nfe"))
    schedule = make_schedule(beta_max)
    steps = nfe_steps(nfe)
    np.testing.assert_array_equal(steps, golden[f"{case}/steps"])
    calls, trajectory = [], []
    x0 = sample(
        toy_denoiser(schedule, calls, clip),
        torch.from_numpy(golden["x1"]) if x1 is None else x1,
        schedule,
        steps,
        ot_ode=ot_ode,
        noise=noise,
        mask=mask,
        callback=trajectory.append,
    )
    np.testing.assert_array_equal([n for n, _ in calls], golden[f"{case}/net_steps"])
    np.testing.assert_allclose([t for _, t in calls], golden[f"{case}/net_t"], atol=1e-4)
    np.testing.assert_allclose(x0.numpy(), golden[f"{case}/x0"], atol=1e-5)
    # xs[:, k] is the state at steps[k]; pred_x0s[:, k] the prediction made at steps[k + 1].
    states = torch.stack([s.x for s in trajectory][::-1], dim=1)
    preds = torch.stack([s.x0_hat for s in trajectory][::-1], dim=1)
    np.testing.assert_allclose(states.numpy(), golden[f"{case}/xs"], atol=1e-5)
    np.testing.assert_allclose(preds.numpy(), golden[f"{case}/pred_x0s"], atol=1e-5)
    return trajectory


@pytest.mark.parametrize("beta_max", ["0.3", "1.0"])
@pytest.mark.parametrize("nfe", [1, 2, 5, 10])
def test_ot_ode_matches_official(golden_sampler, beta_max, nfe):
    run_case(golden_sampler, f"ode/bmax{beta_max}/nfe{nfe}", ot_ode=True)


def test_ot_ode_with_clip_matches_official(golden_sampler):
    run_case(golden_sampler, "ode_clip/bmax0.3/nfe5", ot_ode=True, clip=True)


def test_ot_ode_inpainting_matches_official(golden_sampler):
    g = golden_sampler
    mask = torch.from_numpy(g["mask"])
    fill = torch.from_numpy(g["ode_mask/bmax1.0/nfe5/fill_noise"])
    x1 = fill_hole(torch.from_numpy(g["x1"]), mask, recorded_noise([fill]))
    np.testing.assert_allclose(x1.numpy(), g["ode_mask/bmax1.0/nfe5/x1_filled"], atol=1e-7)
    run_case(g, "ode_mask/bmax1.0/nfe5", ot_ode=True, mask=mask, x1=x1)


def test_stochastic_sampler_matches_official_with_recorded_noise(golden_sampler):
    g = golden_sampler
    draws = list(torch.from_numpy(g["sde/bmax0.3/nfe5/noise"]))
    assert len(draws) == 4
    run_case(g, "sde/bmax0.3/nfe5", ot_ode=False, noise=recorded_noise(draws))


def test_stochastic_inpainting_matches_official_with_recorded_noise(golden_sampler):
    g = golden_sampler
    kinds = g["sde_mask/bmax1.0/nfe5/noise_kind"].tolist()
    assert kinds == [0, 1, 2, 1, 2, 1, 2, 1, 2, 2]
    noise = recorded_noise(torch.from_numpy(g["sde_mask/bmax1.0/nfe5/noise"]))
    mask = torch.from_numpy(g["mask"])
    x1 = fill_hole(torch.from_numpy(g["x1"]), mask, noise)
    run_case(g, "sde_mask/bmax1.0/nfe5", ot_ode=False, mask=mask, x1=x1, noise=noise)


def test_known_pixels_are_kept_under_ot_ode():
    schedule = make_schedule(1.0)
    x1 = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    out = sample(
        lambda x, n, c: torch.zeros_like(x), x1, schedule, nfe_steps(3), ot_ode=True, mask=mask
    )
    torch.testing.assert_close(out * (1 - mask), x1 * (1 - mask))


def test_per_image_noise_is_independent_of_the_batch():
    schedule = make_schedule(0.3)
    x1 = torch.rand(3, 3, 8, 8) * 2 - 1

    def denoise(x, n, cond):
        return 0.5 * x

    def run(indices):
        gens = [torch.Generator().manual_seed(100 + i) for i in indices]
        return sample(
            denoise, x1[indices], schedule, nfe_steps(4), ot_ode=False, noise=per_image_noise(gens)
        )

    together = run([0, 1, 2])
    alone = torch.cat([run([i]) for i in range(3)])
    torch.testing.assert_close(together, alone)
    assert not torch.allclose(together[0], run([0])[0] + 0.1)


def test_different_seeds_give_different_stochastic_results():
    schedule = make_schedule(0.3)
    x1 = torch.zeros(1, 3, 8, 8)
    outs = [
        sample(
            lambda x, n, c: x,
            x1,
            schedule,
            nfe_steps(4),
            ot_ode=False,
            noise=per_image_noise([torch.Generator().manual_seed(s)]),
        )
        for s in (1, 2)
    ]
    assert (outs[0] - outs[1]).abs().max() > 1e-3


def test_callback_reports_every_step_and_cond_is_passed():
    schedule = make_schedule(0.3)
    cond = torch.ones(1, 3, 4, 4)
    seen: list[StepInfo] = []

    def denoise(x, n, c):
        assert c is cond
        return x

    sample(
        denoise,
        torch.zeros(1, 3, 4, 4),
        schedule,
        nfe_steps(5),
        ot_ode=True,
        cond=cond,
        callback=seen.append,
    )
    assert [s.index for s in seen] == [1, 2, 3, 4, 5]
    assert all(s.total == 5 for s in seen)
    assert seen[-1].prev == 0


def test_detail_mixes_the_sample_with_the_first_one_step_estimate():
    schedule = make_schedule(0.3)
    x1 = torch.rand(2, 3, 8, 8) * 2 - 1
    estimates: list[torch.Tensor] = []

    def denoise(x, n, cond):
        estimates.append(0.5 * x + 0.1)
        return estimates[-1]

    def run(detail, mask=None):
        estimates.clear()
        noise = per_image_noise([torch.Generator().manual_seed(i) for i in range(2)])
        return sample(
            denoise, x1, schedule, nfe_steps(4), ot_ode=False, noise=noise, mask=mask,
            detail=detail,
        )  # fmt: skip

    full = run(1.0)
    first = estimates[0]
    torch.testing.assert_close(run(0.0), first)
    torch.testing.assert_close(run(0.3), 0.3 * full + 0.7 * first)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    masked_full, masked_mix = run(1.0, mask), run(0.3, mask)
    torch.testing.assert_close(masked_mix * (1 - mask), masked_full * (1 - mask))
    torch.testing.assert_close(masked_mix * mask, (0.3 * masked_full + 0.7 * first) * mask)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="detail"):
            run(bad)


def test_sampler_validates_its_inputs():
    schedule = make_schedule(0.3)
    x1 = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="noise source"):
        sample(lambda x, n, c: x, x1, schedule, nfe_steps(2), ot_ode=False)
    with pytest.raises(ValueError, match="ascending"):
        sample(lambda x, n, c: x, x1, schedule, [999, 0], ot_ode=True)
    with pytest.raises(ValueError, match="ran out"):
        sample(
            lambda x, n, c: x,
            x1,
            schedule,
            nfe_steps(3),
            ot_ode=False,
            noise=recorded_noise([torch.zeros(1)]),
        )
