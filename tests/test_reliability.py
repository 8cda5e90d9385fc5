"""Hostile inputs that once gave a wrong answer with exit 0 (issue 31; docs/reliability.md)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    REPO_ROOT,
    make_checkpoint,
    make_inpaint_checkpoint,
    read_pixels,
    tiny_meta,
    tiny_state,
)
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.models.checkpoint import METADATA_KEY, save_checkpoint
from i2sb_cli.restoring import loop


def restore(*args: str | Path):
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _photo(path: Path, seed: int, size: int = 16) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_weights_with_nan_are_refused_at_load(tmp_path: Path) -> None:
    meta = tiny_meta()
    state = tiny_state(meta)
    first = next(iter(state))
    state[first] = state[first].clone().fill_(float("nan"))
    broken = tmp_path / "broken.safetensors"
    save_checkpoint(broken, state, meta)
    result = restore(_photo(tmp_path / "a.png", 0), "--model", broken, "--nfe", 1)
    assert result.exit_code == 1
    (line,) = [text for text in result.stderr.splitlines() if "NaN" in text]
    assert str(broken) in line and "Traceback" not in result.stderr
    assert not (tmp_path / "a_restored.png").exists()


def test_a_non_finite_result_is_never_written(tmp_path: Path, monkeypatch) -> None:
    model = make_checkpoint(tmp_path / "sr.safetensors")
    real_sample = loop.sample
    monkeypatch.setattr(loop, "sample", lambda *a, **k: real_sample(*a, **k) * float("nan"))
    result = restore(_photo(tmp_path / "a.png", 0), "--model", model, "--nfe", 1)
    assert result.exit_code == 1 and "NaN or infinite" in result.stderr
    assert not (tmp_path / "a_restored.png").exists()


def test_a_mask_that_is_all_hole_is_refused(tmp_path: Path) -> None:
    model = make_inpaint_checkpoint(tmp_path / "inpaint.safetensors")
    mask = tmp_path / "all.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(mask)
    result = restore(_photo(tmp_path / "a.png", 0), "--model", model, "--mask", mask)
    assert result.exit_code == 1 and "whole picture as hole" in result.stderr
    assert not (tmp_path / "a_restored.png").exists()


@pytest.mark.parametrize("start", ["degraded", "classical"])
def test_pixels_under_the_hole_never_reach_the_result(tmp_path: Path, start: str) -> None:
    options = {"degradation": "inpaint-freeform1020"} if start == "classical" else {}
    model = make_inpaint_checkpoint(
        tmp_path / f"{start}.safetensors", task="inpaint-freeform1020", start=start, **options
    )
    hole = np.zeros((16, 16), np.uint8)
    hole[3:13, 2:11] = 255
    mask = tmp_path / "hole.png"
    Image.fromarray(hole).save(mask)
    first = _photo(tmp_path / "first.png", 1)
    other = read_pixels(first).copy()
    other[hole > 0] = np.random.default_rng(2).integers(0, 256, (int((hole > 0).sum()), 3))
    second = tmp_path / "second.png"
    Image.fromarray(other.astype(np.uint8)).save(second)
    outputs = []
    for picture in (first, second):
        target = tmp_path / f"{picture.stem}-{start}-out.png"
        # The seed is derived from the picture's name: give both the same one.
        named = tmp_path / start / picture.stem / "photo.png"
        named.parent.mkdir(parents=True)
        named.write_bytes(picture.read_bytes())
        result = restore(named, "--model", model, "--mask", mask, "-o", target, "--nfe", 2)
        assert result.exit_code == 0, result.stderr
        outputs.append(read_pixels(target))
    assert np.array_equal(outputs[0], outputs[1])
    assert not np.array_equal(read_pixels(first), other)


def _evil_torchscript(path: Path, victim: Path) -> Path:
    """A TorchScript file whose graph overwrites `victim` when it runs."""

    class Evil(torch.nn.Module):
        def __init__(self, target: str) -> None:
            super().__init__()
            self.target = target

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            written = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
            written.fill_(33)
            return x

    torch.jit.save(torch.jit.script(Evil(str(victim))), str(path))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, to make the file
@pytest.mark.parametrize("command", ["restore", "benchmark"])
def test_a_torchscript_file_runs_only_when_trusted(tmp_path: Path, command: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"safe")
    evil = _evil_torchscript(tmp_path / "evil.pt", victim)
    args = [command, "--model", str(evil)]
    args += (
        [str(_photo(tmp_path / "a.png", 0))]
        if command == "restore"
        else ["--size", "8", "--repeat", "1", "--warmup", "0"]
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "--trust-pickle" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert victim.read_bytes() == b"safe"


def test_stdout_closed_before_the_picture_is_written_fails_in_one_line(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "tiny.safetensors", cond_x1=True)
    command = [sys.executable, "-m", "i2sb_cli", "restore", str(_photo(tmp_path / "a.png", 0))]
    command += ["--model", str(model), "--backend", "torch", "-o", "-"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    # The reader goes away at once, as `| head -c 10` does once it has its bytes.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "cannot write to stdout: Broken pipe" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_garbage_colour_profile_is_dropped_not_copied(tmp_path: Path, suffix: str) -> None:
    # A viewer that cannot read a profile shows the pixels as sRGB: so does the result.
    model = make_checkpoint(tmp_path / "tiny.safetensors", cond_x1=True)
    source = tmp_path / f"a{suffix}"
    with Image.open(_photo(tmp_path / "a.png", 0)) as image:
        image.save(source, icc_profile=b"not a colour profile " * 8)
    out = tmp_path / f"out{suffix}"
    result = restore(source, "--model", model, "-o", out)
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as restored:
        assert restored.info.get("icc_profile") is None


def test_a_trusted_torchscript_files_notes_are_said_once_per_run(tmp_path: Path) -> None:
    tiny = make_checkpoint(tmp_path / "tiny.safetensors", cond_x1=True)
    program = tmp_path / "tiny.pt"
    exported = CliRunner().invoke(
        app, ["export", "--model", str(tiny), "--format", "torchscript", "-o", str(program)]
    )
    assert exported.exit_code == 0, exported.stderr
    (tmp_path / "in").mkdir()
    pictures = [_photo(tmp_path / "in" / f"{i}.png", i) for i in range(3)]
    result = restore(*pictures, "--model", program, "--trust-pickle", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith(("note", "warning"))]
    assert notes and len(notes) == len(set(notes))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_channels", 8192, "does not match the weights"),
        ("num_res_blocks", 2000, "does not match the weights"),
        # Eight levels also need pictures of 128-pixel multiples, beyond its training size.
        ("channel_mult", [1, 2, 2, 2, 4, 4, 8, 8], "no tile could run it"),
        ("interval", 10**12, "interval must be"),
    ],
)
def test_lying_metadata_is_refused_before_any_network_is_built(tmp_path, field, value, message):
    honest = make_checkpoint(tmp_path / "honest.safetensors")
    with safe_open(str(honest), "pt") as handle:
        header, state = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    body = json.loads(header[METADATA_KEY])
    (body if field == "interval" else body["config"])[field] = value
    liar = tmp_path / "liar.safetensors"
    save_file(state, str(liar), metadata={**header, METADATA_KEY: json.dumps(body)})
    started = time.monotonic()
    result = restore(_photo(tmp_path / "a.png", 0), "--model", liar, "--nfe", 1)
    assert result.exit_code != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 5


def test_auto_backend_runs_pytorch_when_the_cache_cannot_be_written(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the auto backend's ONNX path needs onnxruntime")
    model = make_checkpoint(tmp_path / "sr.safetensors")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    result = CliRunner().invoke(
        app,
        ["restore", str(_photo(tmp_path / "a.png", 0)), "--model", str(model), "--nfe", "1",
         "--cache-dir", str(blocker / "cache")],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "running PyTorch: the ONNX export" in result.stderr and "--cache-dir" in result.stderr
    assert "Traceback" not in result.stderr and (tmp_path / "a_restored.png").is_file()


def test_an_endless_stdin_is_refused_at_the_picture_byte_limit(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "sr.safetensors")
    stream = b"\x89PNG\r\n\x1a\n" + bytes(40 << 20)  # 40 MiB: more than 1,000 pixels can take
    result = CliRunner().invoke(
        app,
        ["restore", "-", "-o", str(tmp_path / "out.png"), "--model", str(model),
         "--max-pixels", "1000"],
        input=stream,
    )  # fmt: skip
    assert result.exit_code == 1 and "stdin: more than" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_an_output_written_meanwhile_by_another_run_is_kept(tmp_path: Path, monkeypatch) -> None:
    model = make_checkpoint(tmp_path / "sr.safetensors")
    source = _photo(tmp_path / "a.png", 0)
    target = tmp_path / "out.png"
    real_sample = loop.Restorer._sample_stages

    def other_run_writes_first(self, batch, recorder):  # it finishes while this one samples
        target.write_bytes(b"the other run's picture")
        return real_sample(self, batch, recorder)

    monkeypatch.setattr(loop.Restorer, "_sample_stages", other_run_writes_first)
    result = restore(source, "--model", model, "--nfe", 1, "-o", target, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "skipped"
    assert "written by another run meanwhile" in result.stderr
    assert target.read_bytes() == b"the other run's picture"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = restore(source, "--model", model, "--nfe", 1, "-o", target, "--overwrite")
    assert again.exit_code == 0 and target.read_bytes() != b"the other run's picture"


def test_temporary_files_of_dead_runs_are_removed_never_a_live_ones(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    stale = tmp_path / f".out.png.{host}-{dead.stdout.strip()}.0123456789ab.tmp"
    live = tmp_path / f".out.png.{host}-{os.getpid()}.ba9876543210.tmp"
    stale.write_bytes(b"cut off by kill -9")
    live.write_bytes(b"being written")
    model = make_checkpoint(tmp_path / "sr.safetensors")
    result = restore(_photo(tmp_path / "a.png", 0), "--model", model, "--nfe", 1,
                     "-o", tmp_path / "out.png")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and live.exists() and (tmp_path / "out.png").is_file()


def test_a_checkpoint_too_small_to_tile_is_the_checkpoints_fault(tmp_path: Path) -> None:
    honest = make_checkpoint(tmp_path / "honest.safetensors")
    with safe_open(str(honest), "pt") as handle:
        header, state = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    body = json.loads(header[METADATA_KEY])
    body["config"]["image_size"] = 1
    path = tmp_path / "tiny-tile.safetensors"
    save_file(state, str(path), metadata={**header, METADATA_KEY: json.dumps(body)})
    result = restore(_photo(tmp_path / "a.png", 0), "--model", path, "--nfe", 1)
    assert result.exit_code == 1  # a bad checkpoint, not a usage error of the user's
    assert "image_size 1" in result.stderr and "--tile" not in result.stderr


def test_a_safetensors_header_that_claims_a_terabyte_is_one_line(tmp_path: Path) -> None:
    liar = tmp_path / "liar.safetensors"
    liar.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    result = restore(_photo(tmp_path / "a.png", 0), "--model", liar)
    assert result.exit_code == 1 and "not a readable safetensors checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and "preparing" not in result.stderr


def test_a_png_whose_text_chunk_inflates_past_the_limit_fails_alone(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("bomb", "A" * (50 << 20), zip=True)  # 50 MB of text in a few kB
    bomb = tmp_path / "in" / "text.png"
    bomb.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bomb, pnginfo=info)
    _photo(tmp_path / "in" / "fine.png", 1, size=8)
    model = make_checkpoint(tmp_path / "sr.safetensors")
    result = restore(tmp_path / "in", "--model", model, "-o", tmp_path / "out", "--nfe", 1)
    assert result.exit_code == 1 and "text.png" in result.stderr
    assert "text metadata inflates past the safe limit" in result.stderr
    assert (tmp_path / "out" / "fine.png").is_file() and not (
        tmp_path / "out" / "text.png"
    ).exists()


@pytest.mark.parametrize("seed", [-5, 2**70])
def test_any_whole_number_is_a_seed(tmp_path: Path, seed: int) -> None:
    model = make_checkpoint(tmp_path / "sr.safetensors")
    source = _photo(tmp_path / "a.png", 0, size=8)
    runs = [
        restore(source, "--model", model, "--seed", seed, "--nfe", 1, "-o", tmp_path / f"{k}.png")
        for k in range(2)
    ]
    assert all(r.exit_code == 0 for r in runs), runs[0].stderr
    assert np.array_equal(read_pixels(tmp_path / "0.png"), read_pixels(tmp_path / "1.png"))


def test_a_one_pixel_picture_is_restored(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "sr.safetensors")
    one = tmp_path / "one.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(one)
    result = restore(one, "--model", model, "--nfe", 1, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.stderr
    assert read_pixels(tmp_path / "out.png").shape == (4, 4, 3)


def test_a_mask_file_that_is_not_a_picture_is_refused_before_loading(tmp_path: Path) -> None:
    text = tmp_path / "mask.txt"
    text.write_text("hello")
    result = restore(_photo(tmp_path / "a.png", 0), "--task", "inpaint", "--mask", text)
    assert result.exit_code == 2 and "--mask" in result.stderr and "not a picture" in result.stderr
    assert "preparing" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
