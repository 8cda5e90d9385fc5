"""Choosing a runtime (`load_model`), the torch fast paths, and exported-file metadata."""

import sys
from pathlib import Path

import pytest
import torch
from helpers import make_checkpoint, tiny_meta

from i2sb_cli.errors import CheckpointError, UsageError
from i2sb_cli.models.checkpoint import load_checkpoint
from i2sb_cli.nets.adm import ADMUNet
from i2sb_cli.runtime import agreement, default_tile, load_model
from i2sb_cli.runtime.export import export_network
from i2sb_cli.runtime.metadata import export_metadata, parse_extra_file, read_metadata
from i2sb_cli.runtime.onnx_backend import import_ort
from i2sb_cli.runtime.torch_backend import check_precision, wrap_network


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("runtime") / "tiny.safetensors")


def _output(model, x: torch.Tensor, n: int = 400) -> torch.Tensor:
    return model.denoise(x, n, None)


def test_load_model_defaults_to_the_torch_backend_with_channels_last_on_cpu(checkpoint):
    model = load_model(checkpoint, "cpu")
    assert (model.backend, model.precision, model.device.type) == ("torch", "fp32", "cpu")
    assert model.notes == ()


def test_memory_format_does_not_change_the_result(checkpoint):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    nchw = _output(load_model(checkpoint, "cpu", channels_last=False), x)
    nhwc = _output(load_model(checkpoint, "cpu", channels_last=True), x)
    assert torch.allclose(nchw, nhwc, atol=1e-5)


def test_bf16_runs_on_the_cpu_close_to_fp32(checkpoint):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fp32 = _output(load_model(checkpoint, "cpu"), x)
    bf16 = load_model(checkpoint, "cpu", precision="bf16")
    assert bf16.precision == "bf16"
    out = _output(bf16, x)
    assert out.dtype == torch.float32
    assert (out - fp32).abs().max() < 0.1 * fp32.abs().max()


def test_fp16_on_the_cpu_is_a_usage_error_before_loading():
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(UsageError, match="choose one of fp32, bf16, fp16"):
        check_precision("fp64", torch.device("cpu"))
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        load_model(Path("never-read.safetensors"), "cpu", precision="fp16")


def test_wrap_network_serves_random_weights_without_a_file():
    meta = tiny_meta()
    model = wrap_network(ADMUNet(meta.config), meta, torch.device("cpu"), channels_last=False)
    assert model.denoise(torch.zeros(1, 3, 8, 8), 10, None).shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    ("name", "backend", "message"),
    [
        ("m.pt", "onnxruntime", "--backend torch"),
        ("m.pt2", "onnxruntime", "--backend torch"),
        ("m.onnx", "torch", "--backend onnxruntime"),
        ("m.safetensors", "tensorrt", "choose one of auto, torch, onnxruntime"),
    ],
)
def test_suffix_and_backend_must_agree(tmp_path, name, backend, message):
    with pytest.raises(UsageError, match=message):
        load_model(tmp_path / name, "cpu", backend)


def test_compile_applies_to_checkpoints_only(tmp_path):
    with pytest.raises(UsageError, match="checkpoints"):
        load_model(tmp_path / "m.pt2", "cpu", compile=True)


def test_pt2_export_runs_on_the_torch_backend(checkpoint, tmp_path):
    net, meta = load_checkpoint(checkpoint)
    report = export_network(net, meta, "pt2", tmp_path / "tiny.pt2")
    assert report.ok and len(report.cases) == 4
    model = load_model(tmp_path / "tiny.pt2", "cpu", trust_pickle=True)
    x = torch.randn(3, 3, 10, 14)
    with torch.inference_mode():
        want = net(x, torch.full((3,), 250.0))
    assert torch.allclose(model.denoise.net(x, torch.full((3,), 250.0), None), want, atol=1e-5)
    with pytest.raises(UsageError, match="holds fp32 weights"):
        load_model(tmp_path / "tiny.pt2", "cpu", precision="bf16", trust_pickle=True)


def test_metadata_round_trip_and_refusals():
    meta = tiny_meta(cond_x1=True)
    props = export_metadata(meta, fmt="onnx", precision="fp16", device="cpu")
    info = read_metadata(props, source="x.onnx")
    assert info.meta == meta and info.precision == "fp16" and info.tile == default_tile(meta.config)
    assert props["i2sb.inputs"] == "x_t,t,x1" and props["i2sb.default_nfe"] == "2"
    assert props["i2sb.default_detail"] == "1.0"
    assert props["i2sb.default_ensemble"] == "1"
    with pytest.raises(CheckpointError, match="no i2sb metadata"):
        read_metadata({"producer": "someone"}, source="other.onnx")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        parse_extra_file("{", source="x.pt")


def test_a_file_that_is_not_an_export_is_a_checkpoint_error(tmp_path):
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"not a readable torch\.export program"):
        load_model(bogus, "cpu", trust_pickle=True)


def test_missing_onnxruntime_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UsageError, match=r"pip install 'i2sb\[onnx\]'"):
        import_ort()


@pytest.mark.slow
def test_auto_runs_a_checkpoint_in_onnxruntime_on_the_cpu_and_announces_the_export(
    checkpoint, tmp_path, monkeypatch
):
    pytest.importorskip("onnxruntime")
    # Which runtime is faster is the machine's business (test_agreement.py): fixed here.
    monkeypatch.setattr(
        agreement, "call_ms", lambda model: 2.0 if model.backend == "torch" else 1.0
    )
    steps: list[str] = []
    model = load_model(checkpoint, "cpu", "auto", cache_dir=tmp_path, on_step=steps.append)
    assert (model.backend, model.precision) == ("onnxruntime", "fp32")
    # Told before the export starts and before the one-off agreement check, then noted once
    # the export is made and cached.
    assert len(steps) == 2 and "ONNX" in steps[0] and checkpoint.name in steps[0]
    assert "same pictures" in steps[1]
    assert any("cached" in note for note in model.notes)
    steps.clear()
    again = load_model(checkpoint, "cpu", "auto", cache_dir=tmp_path, on_step=steps.append)
    assert again.backend == "onnxruntime" and again.notes == model.notes[1:]
    assert len(steps) == 1


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"precision": "bf16"}, "bf16 is a torch precision"),
        ({"channels_last": True}, "a torch option"),
        ({}, "onnxruntime missing"),
    ],
)
def test_auto_falls_back_to_torch(checkpoint, monkeypatch, options, why):
    if why == "onnxruntime missing":
        monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    model = load_model(checkpoint, "cpu", "auto", **options)
    assert model.backend == "torch"


def test_auto_runs_an_export_by_its_suffix(checkpoint, tmp_path):
    net, meta = load_checkpoint(checkpoint)
    export_network(net, meta, "torchscript", tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt", "cpu", "auto", trust_pickle=True).backend == "torch"


@pytest.mark.slow
def test_onnxruntime_says_nothing_of_cuda_when_nobody_asked_for_it(checkpoint, tmp_path):
    """onnxruntime-gpu lists its CUDA provider even on machines without a GPU; with --device
    auto the CPU is the expected answer there, not a note printed on every run."""
    pytest.importorskip("onnxruntime")
    model = load_model(checkpoint, "auto", "onnxruntime", cache_dir=tmp_path)
    assert not [note for note in model.notes if "CUDA" in note]
