"""`i2sb export` and the ONNX Runtime backend on a tiny random checkpoint.

One ONNX export (the slow part: about 10 s) is shared by the module's tests.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, read_pixels, write_picture
from typer.testing import CliRunner

from i2sb_cli.bridge import nfe_steps, per_image_noise, sample
from i2sb_cli.cli.app import app
from i2sb_cli.errors import UsageError
from i2sb_cli.models.checkpoint import load_checkpoint
from i2sb_cli.models.registry import bundled_models
from i2sb_cli.pictures.inputs import InputFile
from i2sb_cli.restoring.chain import StageSpec, make_stage
from i2sb_cli.restoring.loop import Job, Restorer, RestoreSettings
from i2sb_cli.runtime import load_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def export(*args: str | Path):
    return CliRunner().invoke(app, ["export", *map(str, args)])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    return make_checkpoint(folder / "tiny.safetensors", cond_x1=True)


@pytest.fixture(scope="module")
def onnx_file(checkpoint) -> tuple[Path, str]:
    path = checkpoint.with_name("tiny.onnx")
    result = export("--model", checkpoint, "--format", "onnx", "-o", path)
    assert result.exit_code == 0, result.stderr
    return path, result.stderr


def test_onnx_export_passes_its_parity_check_and_embeds_the_metadata(onnx_file):
    path, stderr = onnx_file
    assert "parity ok" in stderr
    assert stderr.count(" ok ") >= 4  # two sizes x two time levels, each in the table
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert props["i2sb.task"] == "sr4x-bicubic"
    assert props["i2sb.cond_x1"] == "true"
    assert props["i2sb.size_multiple"] == "2"
    assert float(props["i2sb.beta_max"]) == 0.3
    assert {"i2sb", "i2sb.tile", "i2sb.interval", "i2sb.t0", "i2sb.ot_ode"} <= props.keys()
    assert [i.name for i in session.get_inputs()] == ["x_t", "t", "x1"]


def test_onnx_network_matches_torch_at_a_new_batch_and_size(checkpoint, onnx_file):
    net, _ = load_checkpoint(checkpoint)
    model = load_model(onnx_file[0], "cpu")
    assert (model.backend, model.precision, model.device.type) == ("onnxruntime", "fp32", "cpu")
    x, cond = torch.randn(2, 3, 20, 36), torch.rand(2, 3, 20, 36) * 2 - 1
    t = torch.tensor([3.0, 870.0])
    with torch.inference_mode():
        want = net(x, t, cond)
    got = model.denoise.net(x, t, cond)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_same_seed_same_picture_with_torch_and_onnxruntime(checkpoint, onnx_file):
    outputs = []
    for source in (checkpoint, onnx_file[0]):
        model = load_model(source, "cpu")
        x1 = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
        generators = [torch.Generator().manual_seed(seed) for seed in (5, 6)]
        outputs.append(
            sample(
                model.denoise,
                x1,
                model.schedule,
                nfe_steps(3, model.schedule.interval),
                ot_ode=False,
                noise=per_image_noise(generators),
                cond=x1,
            )
        )
    assert torch.allclose(outputs[0], outputs[1], atol=1e-4)


def test_restorer_writes_the_same_picture_with_either_backend(tmp_path, checkpoint, onnx_file):
    source = write_picture(tmp_path / "in.png", 8)
    pictures = []
    for model_file, name in ((checkpoint, "torch.png"), (onnx_file[0], "ort.png")):
        model = load_model(model_file, "cpu")
        stage = make_stage(model, StageSpec(task="sr4x", nfe=2), "sr4x")
        job = Job(InputFile(source, Path("in.png")), tmp_path / name)
        (outcome,) = Restorer([stage], RestoreSettings(seed=3)).run([job])
        assert outcome.status == "restored", outcome.message
        pictures.append(read_pixels(tmp_path / name).astype(int))
    assert pictures[0].shape == (32, 32, 3)
    assert np.abs(pictures[0] - pictures[1]).max() <= 1  # float rounding may flip a level


def test_torchscript_export_runs_with_its_metadata_and_a_deprecation_note(checkpoint, tmp_path):
    path = tmp_path / "tiny.pt"
    result = export("--model", checkpoint, "--format", "torchscript", "-o", path)
    assert result.exit_code == 0, result.stderr
    assert "parity ok" in result.stderr
    model = load_model(path, "cpu", trust_pickle=True)
    assert model.meta.name == "tiny-sr4x" and model.meta.cond_x1
    assert any("deprecated" in note for note in model.notes)
    net, _ = load_checkpoint(checkpoint)
    x, cond, t = torch.randn(3, 3, 12, 20), torch.randn(3, 3, 12, 20), torch.full((3,), 500.0)
    with torch.inference_mode():
        assert torch.allclose(model.denoise.net(x, t, cond), net(x, t, cond), atol=1e-5)


def test_a_failed_parity_check_is_loud_and_writes_nothing(checkpoint, tmp_path):
    path = tmp_path / "half.pt"
    result = export(
        "--model",
        checkpoint,
        "--format",
        "torchscript",
        "--fp16",
        "--tolerance",
        "1e-9",
        "-o",
        path,
    )
    assert result.exit_code == 1
    assert "parity check failed" in result.stderr and "FAIL" in result.stderr
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite", "-o", "m.tflite"], "not a format"),
        (["--format", "torchscript", "-o", "m.onnx"], "must end in .pt"),
    ],
)
def test_export_usage_errors(checkpoint, tmp_path, args, message):
    result = export("--model", checkpoint, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_onnx_file_with_the_torch_backend_and_fp16_on_cpu_are_usage_errors(onnx_file, checkpoint):
    with pytest.raises(UsageError, match="--backend onnxruntime"):
        load_model(onnx_file[0], "cpu", "torch")
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        load_model(checkpoint, "cpu", "onnxruntime", precision="fp16")
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        load_model(checkpoint, "cpu", precision="fp16")


def test_explicit_cuda_without_a_usable_provider_is_a_usage_error(onnx_file):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError, match="CUDA"):
        load_model(onnx_file[0], "cuda")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_bundled_model_exports_and_passes_the_parity_check(fmt, tmp_path):
    bundled = bundled_models()
    assert {m.family for m in bundled} >= {"sr4x"}
    for entry in bundled:
        path = tmp_path / f"{entry.name}.{'onnx' if fmt == 'onnx' else 'pt'}"
        result = export("--model", entry.name, "--format", fmt, "-o", path)
        assert result.exit_code == 0, result.stderr
        assert "parity ok" in result.stderr
        model = load_model(path, "cpu", trust_pickle=fmt == "torchscript")
        assert model.meta.name == entry.name and model.meta.task in (entry.family, *entry.tasks)
