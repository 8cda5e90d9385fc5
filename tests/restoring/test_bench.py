"""`i2sb benchmark` on a tiny model at tiny sizes: it runs, reports, and refuses bad options."""

import json
from pathlib import Path

import pytest
import torch
from helpers import make_checkpoint
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import UsageError
from i2sb_cli.models.checkpoint import load_checkpoint
from i2sb_cli.restoring.bench import RunConfig, parse_config
from i2sb_cli.runtime.export import export_network
from i2sb_cli.runtime.resources import peak_rss_bytes, reset_peak_rss

FAST = ["--size", "16", "--nfe", "2", "--warmup", "1", "--repeat", "2", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """--threads sets torch's thread count for the process; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("bench") / "tiny.safetensors", cond_x1=True)


def benchmark(*args: str | Path):
    return CliRunner().invoke(app, ["benchmark", *map(str, args)])


def test_benchmark_emits_a_table_and_valid_json(checkpoint):
    result = benchmark("--model", checkpoint, "--backend", "torch+nchw", "--batch", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"machine", "model", "settings", "results", "comparison"} <= report.keys()
    assert report["machine"]["torch"] == torch.__version__
    assert report["machine"]["torch_threads"] == 1
    (row,) = report["results"]
    assert (row["config"], row["height"], row["batch"], row["nfe"]) == ("torch+nchw:fp32", 16, 2, 2)
    assert row["runs"] == 2 and len(row["seconds"]) == 2
    assert row["ms_per_nfe_p90"] >= row["ms_per_nfe_median"] > 0
    assert row["s_per_image_median"] == pytest.approx(row["ms_per_nfe_median"] * 2 / 1e3 / 2)
    assert row["images_per_s"] > 0
    assert row["s_per_megapixel_median"] == pytest.approx(row["s_per_image_median"] / 256e-6)
    assert 0 <= row["outside_network_fraction"] < 1
    assert row["peak_rss_bytes"] > 0 and row["cuda_peak_bytes"] is None
    assert "torch+nchw:fp32" in result.stderr and "outside" in result.stderr
    assert "s/MP" in result.stderr


def test_grid_covers_every_backend_size_and_nfe_and_writes_a_file(checkpoint, tmp_path):
    out = tmp_path / "report.json"
    result = benchmark(
        "--model", checkpoint, "--backend", "torch", "--backend", "torch+cl", *FAST,
        "--size", "8x24", "--nfe", "1", "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 2 * 2 * 2
    assert {(r["height"], r["width"]) for r in rows} == {(16, 16), (8, 24)}


def test_sizes_may_be_comma_separated(checkpoint):
    result = benchmark("--model", checkpoint, *FAST, "--size", "8, 8x24,16")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert [(r["height"], r["width"]) for r in rows] == [(16, 16), (8, 8), (8, 24), (16, 16)]


def test_compare_alternates_two_configurations_and_gives_the_ratio(checkpoint):
    result = benchmark("--model", checkpoint, "--compare", "torch+nchw", "torch+cl", *FAST)
    assert result.exit_code == 0, result.stderr
    (ratio,) = json.loads(result.stdout)["comparison"]
    assert ratio["a"] == "torch+nchw:fp32" and ratio["b"] == "torch+cl:fp32"
    assert ratio["b_over_a"] > 0
    assert "the throughput of torch+nchw:fp32" in result.stderr


def test_preset_with_random_weights():
    result = benchmark("--preset", "tiny", "--backend", "torch", *FAST)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "preset tiny"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA GPU"),
        (["--backend", "tflite"], "the backend is torch or onnxruntime"),
        (["--backend", "ort:bf16"], "fp32 or fp16 exports"),
        (["--backend", "torch+fast"], "unknown modifier +fast"),
        (["--compare", "torch", "ort", "--backend", "torch"], "drop --backend"),
        (["--size", "big"], "not N or HxW"),
    ],
)
def test_benchmark_usage_errors(checkpoint, args, message):
    result = benchmark("--model", checkpoint, "--device", "cpu", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_config_labels_round_trip():
    config = parse_config("torch+cl+compile:bf16")
    assert config == RunConfig("torch", "bf16", True, True)
    assert parse_config(config.label) == config
    assert parse_config("ort", "fp16") == RunConfig("onnxruntime", "fp16")
    with pytest.raises(UsageError, match="torch options"):
        parse_config("onnxruntime+cl")


def test_peak_rss_is_measured():
    reset_peak_rss()
    assert peak_rss_bytes() > 10 * 2**20


def test_tile_batch_is_used_and_recorded(checkpoint):
    args = ["--model", checkpoint, "--backend", "torch", *FAST, "--size", "40", "--tile", "16"]
    result = benchmark(*args, "--tile-overlap", "4", "--tile-batch", "3")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["tile_batch"] == 3 and report["settings"]["tile"] == 16
    assert benchmark(*args, "--tile-batch", "0").exit_code == 2


def test_a_pt2_export_is_benchmarked_only_when_trusted(checkpoint, tmp_path):
    net, meta = load_checkpoint(checkpoint)
    pt2 = tmp_path / "tiny.pt2"
    assert export_network(net, meta, "pt2", pt2).ok
    refused = benchmark("--model", pt2, *FAST)
    assert refused.exit_code == 1
    assert "--trust-pickle" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    trusted = benchmark("--model", pt2, "--trust-pickle", *FAST)
    assert trusted.exit_code == 0, trusted.stderr
    (row,) = json.loads(trusted.stdout)["results"]
    assert row["config"] == "torch:fp32" and row["runs"] == 2
