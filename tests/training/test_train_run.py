"""`i2sb train` end to end: the resumable state, Ctrl-C and --resume, --init, --config, pairs,
validation, the metrics log, and two processes under torchrun (gloo)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import small_config_json, tiny_config, write_smooth_photos
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.models.checkpoint import load_checkpoint, read_meta
from i2sb_cli.nets import ADMUNet
from i2sb_cli.training import run as train_run
from i2sb_cli.training.state import load_state, read_header, save_state, state_path_for
from i2sb_cli.training.step import TrainSettings, new_state

SMALL = small_config_json()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_smooth_photos(tmp_path_factory.mktemp("photos"), seed=0)


def _train(photos, out, *extra, config=SMALL):
    args = ["train", str(photos), "-o", str(out), "--crop", "32", "--batch-size", "2"]
    args += ["--device", "cpu", "--log-every", "1", *extra]
    if config is not None:
        args += ["--config", config]
    return CliRunner().invoke(app, args)


def _state_tensors(path):
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118


def test_state_round_trip_restores_net_ema_optimizer_and_step(tmp_path):
    settings = TrainSettings(steps=3)
    torch.manual_seed(0)
    state = new_state(ADMUNet(tiny_config()), settings)
    for parameter in state.net.parameters():
        parameter.grad = torch.randn_like(parameter)
    state.optimizer.step()
    state.ema.update(state.net)
    state.step = 7
    path = tmp_path / "s.state.safetensors"
    save_state(path, state, {"task": "jpeg-10"}, {"note": 1})
    fresh = new_state(ADMUNet(tiny_config()), settings)
    header = load_state(path, fresh)
    assert header["run"] == {"task": "jpeg-10"} and header["extra"] == {"note": 1}
    assert fresh.step == 7 and fresh.ema.num_updates == 1
    for a, b in zip(state.net.parameters(), fresh.net.parameters(), strict=True):
        assert torch.equal(a, b)
    saved, loaded = state.optimizer.state_dict(), fresh.optimizer.state_dict()
    for index, values in saved["state"].items():
        for name, value in values.items():
            assert torch.equal(value, loaded["state"][index][name])
    assert state_path_for(tmp_path / "m.safetensors") == tmp_path / "m.state.safetensors"


def test_ctrl_c_saves_and_resume_continues_exactly(photos, tmp_path, monkeypatch):
    straight = tmp_path / "straight.safetensors"
    assert _train(photos, straight, "--steps", "5").exit_code == 0

    report = train_run.TrainingRun.report

    def interrupt_at_step_2(self, entry):
        report(self, entry)
        if entry.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = tmp_path / "stopped.safetensors"
    metrics = tmp_path / "metrics.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(train_run.TrainingRun, "report", interrupt_at_step_2)
        result = _train(photos, stopped, "--steps", "5", "--metrics", str(metrics))
    assert result.exit_code == 130, result.output
    assert "--resume" in result.stderr
    assert read_header(state_path_for(stopped))["step"] == 2
    assert read_meta(stopped).training["steps_done"] == 2

    again = _train(photos, stopped, "--steps", "5")
    assert again.exit_code == 2 and "--resume" in again.stderr

    resumed = _train(photos, stopped, "--steps", "5", "--resume", "--metrics", str(metrics))
    assert resumed.exit_code == 0, resumed.output
    a = _state_tensors(state_path_for(straight))
    b = _state_tensors(state_path_for(stopped))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # no step lost, none drawn differently

    events = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [e["step"] for e in events if e["event"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    meta = read_meta(stopped)
    assert meta.training["steps_done"] == 5 and meta.name == "stopped"

    other = _train(photos, stopped, "--steps", "6", "--resume", config=SMALL.replace("32", "64"))
    assert other.exit_code == 2 and "config" in other.stderr

    fresh = _train(photos, tmp_path / "fresh.safetensors", "--steps", "1", "--resume")
    assert fresh.exit_code == 0 and "starting afresh" in fresh.stderr


def test_init_fine_tunes_a_checkpoint_and_config_sets_the_net(photos, tmp_path):
    base = tmp_path / "base.safetensors"
    assert _train(photos, base, "--steps", "1", "--no-cond-x1").exit_code == 0
    config = read_meta(base).config
    assert config.model_channels == 32 and config.channel_mult == (1, 2)
    assert not config.conditioned

    tuned = tmp_path / "tuned.safetensors"
    args = ["train", str(photos), "-o", str(tuned), "--init", str(base), "--steps", "1"]
    args += ["--crop", "32", "--batch-size", "2", "--device", "cpu", "--task", "jpeg-10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(tuned)
    assert meta.config == config and meta.task == "jpeg-10" and not meta.cond_x1
    assert meta.training["preset"] == "init:base"
    refused = CliRunner().invoke(app, [*args, "--preset", "tiny"])
    assert refused.exit_code == 2 and "--init" in refused.stderr


def test_inpainting_mixture_on_the_fly_with_validation(photos, tmp_path):
    out = tmp_path / "inpaint.safetensors"
    metrics = tmp_path / "m.jsonl"
    result = _train(
        photos,
        out,
        "--steps", "2",
        "--task", "inpaint-freeform1020",
        "--task", "inpaint-center",
        "--degrade-size", "48",
        "--val", str(photos),
        "--val-every", "2",
        "--val-nfe", "1",
        "--val-crop", "32",
        "--metrics", str(metrics),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read_meta(out)
    assert meta.task == "inpaint" and meta.ot_ode and meta.beta_max == 1.0
    assert meta.training["tasks"] == ["inpaint-freeform1020", "inpaint-center"]
    val = [json.loads(x) for x in metrics.read_text().splitlines() if '"val"' in x]
    assert len(val) == 1 and val[0]["pictures"] == 6
    assert f"(input {val[0]['psnr_input']:.2f} dB)" in result.output
    assert set(val[0]["by_task"]) == {"inpaint-freeform1020", "inpaint-center"}
    assert meta.training["validation"]["psnr"] == val[0]["psnr"]


def test_loss_weight_is_recorded_may_change_on_resume_and_is_refused_for_inpainting(
    photos, tmp_path
):
    out = tmp_path / "jpeg.safetensors"
    args = ["--task", "jpeg-real-30", "--checkpoint-every", "1"]
    first = _train(photos, out, *args, "--steps", "1", "--loss-weight", "input-error")
    assert first.exit_code == 0, first.output
    assert read_meta(out).training["loss_weight"] == "input-error"
    resumed = _train(photos, out, *args, "--steps", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert read_meta(out).training["loss_weight"] == "uniform"
    refused = _train(
        photos, tmp_path / "i.safetensors", "--task", "inpaint-center", "--steps", "1",
        "--loss-weight", "input-error",
    )  # fmt: skip
    assert refused.exit_code == 2 and "--loss-weight input-error" in refused.stderr
    unknown = _train(photos, out, *args, "--steps", "1", "--loss-weight", "psnr")
    assert unknown.exit_code == 2 and "uniform, input-error" in unknown.stderr


def test_pairs_training_and_validation(photos, tmp_path):
    degraded = tmp_path / "degraded"
    degraded.mkdir()
    for picture in photos.iterdir():
        with Image.open(picture) as image:
            image.save(degraded / f"{picture.stem}.jpg", quality=20)
    out = tmp_path / "pairs.safetensors"
    metrics = tmp_path / "m.jsonl"
    pairs = [str(photos), str(degraded)]
    args = ["train", "-o", str(out), "--pairs", *pairs, "--task", "jpeg", "--steps", "2"]
    args += ["--crop", "32", "--batch-size", "2", "--device", "cpu", "--config", SMALL]
    args += ["--val-pairs", *pairs, "--val-every", "2", "--val-nfe", "1", "--val-crop", "32"]
    result = CliRunner().invoke(app, [*args, "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    meta = read_meta(out)
    assert meta.task == "jpeg" and meta.beta_max == 0.3 and not meta.ot_ode
    assert meta.training["data"] == pairs and meta.training["photos"] == 3
    assert any('"val"' in line for line in metrics.read_text().splitlines())
    both = CliRunner().invoke(app, ["train", str(photos), *args[1:]])
    assert both.exit_code == 2


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo needs a POSIX machine here")
def test_torchrun_two_processes_train_one_model(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    out, metrics = tmp_path / "ddp.safetensors", tmp_path / "metrics.jsonl"
    config = json.dumps(tiny_config(cond_x1=True).to_dict())
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "i2sb_cli", "train", str(photos), "-o", str(out), "--config", config,
        "--steps", "3", "--batch-size", "2", "--crop", "32", "--device", "cpu",
        "--log-every", "1", "--checkpoint-every", "2", "--metrics", str(metrics),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only rank 0 talks and writes.
    assert done.stderr.count("wrote ") == 1 and "x 2 processes" in done.stderr
    _, meta = load_checkpoint(out)
    assert meta.training["world_size"] == 2 and meta.training["steps_done"] == 3
    assert read_header(state_path_for(out))["step"] == 3
    events = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 3]


def test_classical_start_is_recorded_and_refused_for_pairs(photos, tmp_path):
    out = tmp_path / "deblur.safetensors"
    tasks = ["--task", "blur-gauss", "--task", "blur-gauss-plain"]
    val = ["--val", str(photos), "--val-every", "1", "--val-nfe", "1", "--val-crop", "32"]
    result = _train(photos, out, "--steps", "1", "--start", "classical", *tasks, *val)
    assert result.exit_code == 0, result.output
    assert "(classical start " in result.output  # x1 is Tikhonov/Wiener's, not the input's
    meta = read_meta(out)
    assert (meta.task, meta.start, meta.degradation) == ("deblur", "classical", "blur-gauss-plain")
    tuned = _train(photos, tmp_path / "tuned.safetensors", "--steps", "1", "--init", str(out),
                   *tasks, config=None)  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert read_meta(tmp_path / "tuned.safetensors").start == "classical"
    pairs = ["--pairs", str(photos), str(photos), "--task", "deblur", "--start", "classical"]
    refused = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "p.safetensors"), *pairs])
    assert refused.exit_code == 2 and "--pairs" in refused.stderr
    unknown = _train(photos, tmp_path / "u.safetensors", "--start", "somewhere")
    assert unknown.exit_code == 2 and "--start" in unknown.stderr
