"""Model files that must not be trusted blindly (issue 16): a .pt2 archive that runs code when
torch unpickles it, a cached ONNX export changed on disk, and the clip_denoise default."""

import dataclasses
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_pixels, tiny_meta, tiny_state, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.models import cache
from i2sb_cli.models.checkpoint import save_checkpoint
from i2sb_cli.runtime import export, load_model
from i2sb_cli.runtime.export import ParityReport


class _Payload:
    """A pickle that creates a file when it is loaded without restriction."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_pt2(path: Path, marker: Path) -> Path:
    """A real torch.export archive whose pickled example inputs carry a payload."""
    program = torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    plain = path.with_name("plain.pt2")
    torch.export.save(program, str(plain))
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if "sample_inputs" in item.filename:
                data = pickle.dumps(_Payload(marker))
            target.writestr(item, data)
    return path


def test_pt2_file_is_refused_unless_trusted_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_pt2(tmp_path / "evil.pt2", marker)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_model(evil, "cpu")
    picture = write_picture(tmp_path / "in.png", 8)
    result = CliRunner().invoke(
        app, ["restore", str(picture), "--model", str(evil), "-o", str(tmp_path / "out.png")]
    )
    assert result.exit_code == 1
    assert "--trust-pickle" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.png").exists()


def test_cached_onnx_export_is_verified_before_use(tmp_path, monkeypatch):
    exports: list[Path] = []

    def export_network(net, meta, fmt, output, *, fp16=False) -> ParityReport:
        # The exporter itself is tested in test_export.py; here only what the cache does.
        exports.append(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(bytes(range(256)) * 1024)
        return ParityReport(fmt, "fp32", 1e-3, ())

    monkeypatch.setattr(export, "export_network", export_network)
    meta = tiny_meta()
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, tiny_state(meta), meta)
    path, note = export.cached_onnx(checkpoint, cache_dir=tmp_path / "cache")
    assert note is not None and cache.recorded_sha256(path) == cache.sha256_file(path)
    good = path.read_bytes()
    assert export.cached_onnx(checkpoint, cache_dir=tmp_path / "cache") == (path, None)
    assert len(exports) == 1
    # 64 KiB flipped in the middle of the export, as in the issue.
    middle = len(good) // 2
    flipped = bytes(b ^ 0xFF for b in good[middle : middle + 65536])
    path.write_bytes(good[:middle] + flipped + good[middle + len(flipped) :])
    again, note = export.cached_onnx(checkpoint, cache_dir=tmp_path / "cache")
    assert again == path and note is not None and "exported it again" in note
    assert len(exports) == 2 and path.read_bytes() == good
    assert cache.recorded_sha256(path) == cache.sha256_file(path)


def test_restore_clips_only_when_asked(tmp_path):
    meta = tiny_meta(beta_max=1.0)
    state = tiny_state(meta)
    models = {}
    for clip in (False, True):
        models[clip] = tmp_path / f"clip-{clip}.safetensors"
        save_checkpoint(models[clip], state, dataclasses.replace(meta, clip_denoise=clip))
    picture = write_picture(tmp_path / "in.png", 8)

    def restore(model: Path, *flags: str) -> np.ndarray:
        out = tmp_path / f"{model.stem}{''.join(flags)}.png"
        args = ["restore", str(picture), "--model", str(model), "-o", str(out), "--nfe", "2"]
        args += ["--backend", "torch"]  # what clips is the sampler's, whatever runs the network
        result = CliRunner().invoke(app, [*args, *flags])
        assert result.exit_code == 0, result.stderr
        return read_pixels(out)

    plain = restore(models[False])
    # A checkpoint that recorded clip_denoise (an import made before issue 16) no longer clips.
    np.testing.assert_array_equal(restore(models[True]), plain)
    clipped = restore(models[False], "--clip-denoise")
    assert np.abs(clipped.astype(int) - plain.astype(int)).max() > 0
