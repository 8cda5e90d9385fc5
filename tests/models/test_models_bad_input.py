"""`i2sb models` against bad input (issue 16): names that leave the cache, exit codes, one-line
errors, and what an import takes from the official training options."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, make_checkpoint
from test_models_convert import SMALL, _options, write_official
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.models import cache
from i2sb_cli.models.checkpoint import read_meta


def _cli(*args):
    return CliRunner().invoke(app, ["models", *map(str, args)])


def test_names_that_leave_the_cache_are_usage_errors(tmp_path):
    # A model file with its sha256 recorded, two folders above the cache's models/ folder.
    outside = make_checkpoint(tmp_path / "outside.safetensors")
    cache.record_sha256(outside, cache.sha256_file(outside))
    folder = ("--cache-dir", tmp_path / "cache")
    (tmp_path / "cache" / "models").mkdir(parents=True)
    for command in ("path", "verify", "info", "rm", "download"):
        result = _cli(command, "../../outside", *folder)
        assert result.exit_code == 2, (command, result.stdout, result.stderr)
        assert "not a model name" in result.stderr and "ok" not in result.stdout
    assert outside.is_file()


def test_rm_all_on_an_empty_cache_succeeds(tmp_path):
    result = _cli("rm", "--all", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.stderr
    assert "nothing to remove" in result.stderr
    assert _cli("rm", "--cache-dir", tmp_path / "cache").exit_code == 2  # no names, no --all


def test_a_sha256_that_is_not_64_hex_digits_is_a_usage_error(tmp_path):
    url = "http://127.0.0.1:9/m.safetensors"  # never reached: the option is checked first
    result = _cli("download", url, "--sha256", "xyz", "--name", "m", "--cache-dir", tmp_path)
    assert result.exit_code == 2
    assert "--sha256" in result.stderr and "64 hexadecimal digits" in result.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, used to make the file
def test_importing_a_torchscript_file_fails_in_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(run / "latest.pt"))
    (run / "options.pkl").write_bytes(pickle.dumps(_options(["--corrupt", "sr4x-pool"])))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "i2sb_cli", "models", "import", str(run)]
    done = subprocess.run(
        [*command, "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr


def test_import_leaves_clip_denoise_off_as_the_official_sampler_does(tmp_path):
    write_official(tmp_path / "run", ["--corrupt", "sr4x-pool", "--clip-denoise", *SMALL])
    result = _cli("import", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.stderr
    meta = read_meta(Path(result.stdout.strip()))
    assert meta.clip_denoise is False
    assert meta.training["options"]["clip_denoise"] is True  # still on record
