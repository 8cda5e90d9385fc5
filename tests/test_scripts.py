"""The helper scripts under scripts/ that prepare a GPU training run: they run as a user would."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_config
from PIL import Image

from i2sb_cli.models.checkpoint import read_meta

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _photo(path: Path, width: int, height: int) -> Path:
    rng = np.random.default_rng(width)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
    return path


def test_shrink_photos_caps_the_long_side_and_keeps_format_and_small_files(tmp_path):
    source = tmp_path / "photos"
    (source / "sub").mkdir(parents=True)
    _photo(source / "wide.jpg", 100, 50)
    _photo(source / "sub" / "tall.png", 30, 90)
    small = _photo(source / "small.png", 40, 30)
    dest = tmp_path / "small"
    command = [sys.executable, SCRIPTS / "shrink_photos.py", source, dest, "--max-side", "64"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 photos copied, 2 shrunk" in done.stdout
    with Image.open(dest / "wide.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (64, 32))
    with Image.open(dest / "sub" / "tall.png") as image:
        assert (image.format, image.size) == ("PNG", (21, 64))
    assert (dest / "small.png").read_bytes() == small.read_bytes()


@pytest.mark.skipif(shutil.which("bash") is None, reason="a bash script")
def test_gpu_train_calibrates_then_trains_the_steps_that_fit(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        _photo(photos / f"{i}.png", 40 + i, 40)
    config = json.dumps(tiny_config(cond_x1=True).to_dict())
    out = tmp_path / "m.safetensors"
    command = ["bash", SCRIPTS / "gpu_train.sh", out, "0.1", photos, "--config", config]
    command += ["--crop", "16", "--batch-size", "1", "--task", "jpeg-10"]
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    planned = int(done.stdout.split("calibrated: ")[1].split()[0])
    assert planned >= 100  # the floor; a fast machine plans more
    meta = read_meta(out)
    assert meta.task == "jpeg-10" and meta.training["steps_done"] == planned
    events = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["steps"] == planned
    usage = subprocess.run(["bash", SCRIPTS / "gpu_train.sh"], capture_output=True, text=True)
    assert usage.returncode == 2 and "MINUTES" in usage.stdout
