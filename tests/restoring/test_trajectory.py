"""Trajectory strips and animations (restoring/trajectory.py), driven by the real sampler."""

from pathlib import Path

import torch
from PIL import Image

from i2sb_cli.bridge import make_schedule, nfe_steps, sample
from i2sb_cli.restoring.trajectory import FRAME, TrajectoryRecorder, animation, chosen, strip


def _run(nfe: int, size: tuple[int, int], batch: int = 2) -> tuple[TrajectoryRecorder, int]:
    """Sample a batch with a denoiser that counts its calls, recording the trajectory."""
    schedule = make_schedule(interval=1000, beta_max=0.3)
    calls = []

    def denoise(x: torch.Tensor, n: int, cond: torch.Tensor | None) -> torch.Tensor:
        calls.append(n)
        return torch.zeros_like(x)

    x1 = torch.rand(batch, 3, *size) * 2 - 1
    recorder = TrajectoryRecorder()
    recorder.begin(x1)
    sample(denoise, x1, schedule, nfe_steps(nfe, 1000), ot_ode=True, callback=recorder)
    return recorder, len(calls)


def test_recording_costs_no_network_call_and_keeps_every_step() -> None:
    recorder, calls = _run(nfe=5, size=(16, 24))
    assert calls == 5
    assert len(recorder.frames) == 2 and all(len(f) == 5 for f in recorder.frames)
    frames = recorder.frames[0]
    assert [f.prev for f in frames] == sorted((f.prev for f in frames), reverse=True)
    assert frames[-1].prev == 0 and all(f.n > f.prev for f in frames)
    # The recorded state is the sampler's: with x0_hat = 0 the OT-ODE walks x1 towards 0.
    assert frames[-1].x.abs().max() < recorder.start[0].abs().max()


def test_large_pictures_are_kept_small() -> None:
    recorder, _ = _run(nfe=2, size=(FRAME * 2, FRAME), batch=1)
    assert recorder.start[0].shape == (3, FRAME, FRAME // 2)
    assert recorder.frames[0][0].x.shape == (3, FRAME, FRAME // 2)


def test_chosen_steps_are_even_and_end_at_the_last() -> None:
    recorder, _ = _run(nfe=20, size=(8, 8), batch=1)
    frames = recorder.frames[0]
    picked = chosen(frames, 7)
    assert len(picked) == 7 and picked[0] is frames[0] and picked[-1] is frames[-1]
    assert chosen(frames[:3], 7) == frames[:3]


def test_strip_and_animation_files(tmp_path: Path) -> None:
    recorder, _ = _run(nfe=10, size=(32, 48), batch=1)
    sheet = strip(recorder.start[0], recorder.frames[0], columns=8)
    # 8 columns (x1 and 7 steps), 2 rows; a picture under 192 px keeps its size in a tile.
    assert sheet.size == (8 * 48, 2 * 32)
    path = tmp_path / "t.gif"
    animation(recorder.start[0], recorder.frames[0], path)
    with Image.open(path) as gif:
        assert gif.n_frames == 11 and gif.size == (48, 32)
