"""The helper scripts under scripts/ that prepare a GPU training run or bundle its model: they run
as a user would."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, make_checkpoint, tiny_config
from PIL import Image
from safetensors.torch import load_file

from i2sb_cli.models.cache import sha256_file
from i2sb_cli.models.checkpoint import load_checkpoint, read_meta
from i2sb_cli.models.manifest import parse_manifest

SCRIPTS = REPO_ROOT / "scripts"


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


@pytest.mark.slow
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


def _bundled_entry(name: str, family: str, tasks: list[str]) -> dict:
    return {
        "name": name,
        "family": family,
        "tasks": tasks,
        "file": f"{name}.safetensors",
        "sha256": "ab" * 32,
        "size": 1000,
        "licence": "MIT",
        "default_nfe": 1,
        "summary": "a test model",
    }


def test_bundle_model_without_a_task_pins_a_blind_model_as_its_familys_default(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    before = [
        _bundled_entry("sr", "sr4x", ["sr4x-bicubic"]),
        _bundled_entry("k", "deblur", ["blur-gauss"]),
    ]
    (weights / "models.json").write_text(json.dumps({"schema_version": 1, "models": before}))
    trained = make_checkpoint(tmp_path / "run.safetensors", task="deblur", beta_max=1.0)
    command = [sys.executable, SCRIPTS / "bundle_model.py", trained, "--name", "blind"]
    command += ["--default-nfe", "2", "--summary", "blind", "--weights", weights]
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS.parent)}
    done = subprocess.run([*command, "--family-default"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    models = parse_manifest((weights / "models.json").read_text())
    assert [(m.name, m.tasks) for m in models] == [
        ("sr", ("sr4x-bicubic",)),
        ("blind", ()),
        ("k", ("blur-gauss",)),
    ]
    assert models[1].sha256 == sha256_file(weights / "blind.safetensors")
    meta = read_meta(weights / "blind.safetensors")
    assert (meta.name, meta.default_nfe) == ("blind", 2)
    tensors = load_file(weights / "blind.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    wrong = subprocess.run([*command, "--task", "jpeg-10"], capture_output=True, text=True, env=env)
    assert wrong.returncode != 0 and "paper tasks of the deblur family" in wrong.stderr


def test_bundle_model_int8_stores_weights_in_8_bits_that_load_as_the_network(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "models.json").write_text(json.dumps({"schema_version": 1, "models": []}))
    trained = make_checkpoint(tmp_path / "run.safetensors", task="jpeg-10", beta_max=1.0)
    command = [sys.executable, SCRIPTS / "bundle_model.py", trained, "--name", "q", "--int8"]
    command += ["--default-nfe", "1", "--summary", "8 bits", "--weights", weights]
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS.parent)}

    done = subprocess.run(command, capture_output=True, text=True, env=env)

    assert done.returncode == 0, done.stderr
    stored = load_file(weights / "q.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.int8, torch.float16, torch.float32}
    original, _ = load_checkpoint(trained)
    bundled, meta = load_checkpoint(weights / "q.safetensors")
    assert meta.name == "q"
    for key, tensor in bundled.state_dict().items():
        reference = original.state_dict()[key]
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, reference, rtol=0, atol=0.01 * reference.abs().max())


def test_bundle_model_again_keeps_the_hand_written_fields_of_its_entry(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    scores = [{"task": "blur-gauss", "nfe": 2, "psnr": {"restored": 30.0, "baseline": 29.0}}]
    old = _bundled_entry("k", "deblur", ["blur-gauss"])
    old |= {"provenance": "two runs", "trained_on": "blurs", "scores": scores}
    (weights / "models.json").write_text(json.dumps({"schema_version": 1, "models": [old]}))
    trained = make_checkpoint(tmp_path / "run.safetensors", task="blur-gauss", beta_max=1.0)
    command = [sys.executable, SCRIPTS / "bundle_model.py", trained, "--name", "k", "--task"]
    command += ["blur-gauss", "--default-nfe", "4", "--summary", "new", "--weights", weights]
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS.parent)}

    done = subprocess.run(command, capture_output=True, text=True, env=env)

    assert done.returncode == 0, done.stderr
    assert "kept provenance, trained_on, scores of the previous entry" in done.stdout
    (entry,) = json.loads((weights / "models.json").read_text())["models"]
    assert (entry["summary"], entry["default_nfe"]) == ("new", 4)
    assert entry["sha256"] == sha256_file(weights / "k.safetensors")
    assert (entry["trained_on"], entry["scores"]) == ("blurs", scores)
    assert entry["provenance"] == "two runs"


def test_fetch_photos_refuses_a_test_photo_that_is_a_validation_photo_resized(tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    try:
        import fetch_photos
    finally:
        sys.path.remove(str(SCRIPTS))
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
    _photo(tmp_path / "train" / "a.png", 64, 48)
    val = _photo(tmp_path / "val" / "b.png", 80, 60)
    _photo(tmp_path / "test" / "c.png", 96, 72)
    manifest = {"train/a.png": {}, "val/b.png": {}, "test/c.png": {}}
    fetch_photos.check_disjoint(tmp_path, manifest)
    Image.open(val).resize((120, 90), Image.BICUBIC).save(tmp_path / "test" / "c.png")

    with pytest.raises(SystemExit, match="a test photo looks like a val photo"):
        fetch_photos.check_disjoint(tmp_path, manifest)


def test_shrink_photos_downscales_a_named_source_first(tmp_path):
    source = tmp_path / "photos"
    source.mkdir()
    _photo(source / "gcompris-cat.png", 80, 60)
    kept = _photo(source / "mate-tree.jpg", 80, 60)
    dest = tmp_path / "clean"
    command = [sys.executable, SCRIPTS / "shrink_photos.py", source, dest, "--max-side", "1000",
               "--downscale", "gcompris:2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with Image.open(dest / "gcompris-cat.png") as image:
        assert image.size == (40, 30)
    assert (dest / "mate-tree.jpg").read_bytes() == kept.read_bytes()
    bad = [sys.executable, SCRIPTS / "shrink_photos.py", source, dest, "--downscale", "gcompris"]
    refused = subprocess.run(bad, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "PREFIX:FACTOR" in refused.stderr


def test_user_cases_writes_each_case_as_users_have_it(tmp_path):
    sys.path.insert(0, str(SCRIPTS.parent / "benchmarks"))
    try:
        import user_cases
    finally:
        sys.path.pop(0)
    from i2sb_cli.degrade.jpeg import estimate_quality

    photo = _photo(tmp_path / "photo.png", 70, 50)
    for case, spec in user_cases.CASES.items():
        clean = user_cases.prepare(case, [photo], tmp_path / case, 64)
        assert clean["photo"].size == (64, 48)  # centre crop, sides multiples of 4
        (degraded,) = (tmp_path / case / "degraded").iterdir()
        with Image.open(degraded) as image:
            small = spec.family == "sr4x"
            assert image.size == ((16, 12) if small else (64, 48))
            if spec.quality is None:
                assert image.format == "PNG"
            else:
                tables = image.quantization
                assert estimate_quality([tables[k] for k in sorted(tables)])[0] == spec.quality


def test_cases_figure_stacks_the_first_row_of_each_case_without_the_as_is_columns(tmp_path):
    tile = 64
    scores = {
        "phone": {"seconds": 1.0, "model": None, "input": {}, "unsharp": {}, "i2sb": {}},
        "jpeg75": {"seconds": 1.0, "model": None, "jpeg": {}, "i2sb": {}, "failed": []},
    }
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    shades = {"phone": [10, 20, 30, 40, 50], "jpeg75": [60, 70, 80, 90]}
    for case, values in shades.items():
        sheet = np.zeros((2 * tile, len(values) * tile, 3), np.uint8)
        for i, value in enumerate(values):
            sheet[:, i * tile : (i + 1) * tile] = value
        Image.fromarray(sheet).save(tmp_path / f"{case}.png")
    figure = tmp_path / "figure.png"
    command = [sys.executable, SCRIPTS / "cases_figure.py", tmp_path, "-o", figure]

    done = subprocess.run([*command, "--case", "phone", "--case", "jpeg75"], capture_output=True)

    assert done.returncode == 0, done.stderr
    picture = np.asarray(Image.open(figure).convert("RGB"))
    header = 16
    assert picture.shape == (2 * (tile + header), 4 * tile, 3)
    # phone: degraded | unsharp | i2sb | original (the "input" column, 20, left out)
    phone_row = picture[tile + header - 1, :, 0]
    assert [int(phone_row[i * tile + tile - 1]) for i in range(4)] == [10, 30, 40, 50]
    jpeg_row = picture[2 * (tile + header) - 1, :, 0]
    assert [int(jpeg_row[i * tile + tile - 1]) for i in range(3)] == [60, 80, 90]
    missing = subprocess.run([*command, "--case", "grainy"], capture_output=True, text=True)
    assert missing.returncode != 0 and "no scores for grainy" in missing.stderr
