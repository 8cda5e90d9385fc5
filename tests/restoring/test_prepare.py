"""One model-preparation path (restoring/prepare.py): each model resolved once, hashed once."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_checkpoint, write_picture
from typer.testing import CliRunner

import i2sb_cli as i2sb
from i2sb_cli.cli.app import app
from i2sb_cli.models import cache, registry
from i2sb_cli.runtime import export, onnx_backend
from i2sb_cli.runtime.export import ParityReport
from i2sb_cli.runtime.torch_backend import load_torch_model, resolve_device

importlib.import_module("i2sb_cli.api")  # every module that could resolve or hash, imported


def _counting(monkeypatch, home, name: str) -> list:
    """Every call of `home.name`, through whichever module imported it, recorded by its first
    argument."""
    original = getattr(home, name)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if module.__name__.startswith("i2sb_cli") and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
def counts(monkeypatch):
    """Calls of the model resolver and of the file hash (by path) from now on."""
    return {
        "resolve": _counting(monkeypatch, registry, "resolve_model"),
        "hash": _counting(monkeypatch, cache, "sha256_file"),
    }


@pytest.fixture
def setup(tmp_path) -> tuple[Path, Path]:
    return make_checkpoint(tmp_path / "tiny.safetensors"), write_picture(tmp_path / "p.png", 8)


def _restore(*args) -> None:
    result = CliRunner().invoke(app, ["restore", *map(str, args), "--nfe", "1"])
    assert result.exit_code == 0, result.stderr


def test_a_chain_of_one_model_resolves_and_hashes_it_once(tmp_path, setup, counts):
    checkpoint, picture = setup
    models = f"{checkpoint},{checkpoint}"
    _restore(picture, "--model", models, "--task", "sr4x,sr4x-pool", "-o", tmp_path / "a.png",
             "--backend", "torch")  # fmt: skip
    assert len(counts["resolve"]) == 1
    assert counts["hash"].count(checkpoint) == 1


def test_a_single_model_is_resolved_and_hashed_once(tmp_path, setup, counts):
    checkpoint, picture = setup
    _restore(picture, "--model", checkpoint, "-o", tmp_path / "b.png", "--backend", "torch")
    assert len(counts["resolve"]) == 1
    assert counts["hash"].count(checkpoint) == 1


def test_the_onnx_cache_takes_the_runs_hash(tmp_path, setup, counts, monkeypatch):
    """On ONNX Runtime the export cache is keyed by the checkpoint's sha256: the one the run
    computed, not a second hash of the file."""
    checkpoint, picture = setup

    def export_network(net, meta, fmt, output, *, fp16=False) -> ParityReport:
        # The exporter itself is tested in test_export.py; here only who hashes what.
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"not really onnx")
        return ParityReport(fmt, "fp32", 1e-3, ())

    def load_onnx_model(path, device, *, clip_denoise=None):
        return load_torch_model(checkpoint, resolve_device(device), clip_denoise=clip_denoise)

    monkeypatch.setattr(export, "export_network", export_network)
    monkeypatch.setattr(onnx_backend, "load_onnx_model", load_onnx_model)
    _restore(picture, "--model", checkpoint, "-o", tmp_path / "c.png", "--backend", "onnxruntime")
    assert len(counts["resolve"]) == 1
    assert counts["hash"].count(checkpoint) == 1


def test_the_api_resolves_and_hashes_once_per_model(setup, counts):
    checkpoint, _ = setup
    r = i2sb.load(f"{checkpoint},{checkpoint}", device="cpu")
    picture = np.zeros((8, 8, 3), np.uint8)
    assert r.restore(picture).shape == (128, 128, 3)  # two 4x stages
    assert r.restore(picture, nfe=1, ot_ode=True).shape == (128, 128, 3)
    assert len(counts["resolve"]) == 1
    assert counts["hash"].count(checkpoint) == 1
