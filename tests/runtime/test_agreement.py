"""`--backend auto` trusts ONNX Runtime only where it restores the same pictures as PyTorch."""

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import make_checkpoint

from i2sb_cli import runtime
from i2sb_cli.runtime import agreement, load_model
from i2sb_cli.runtime.agreement import Agreement, Check, measure_agreement


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("agreement") / "tiny.safetensors")


def _offset(model, shift: float):
    """The same model with every x0_hat moved by `shift`: a runtime that gets it wrong."""

    def denoise(x, n, cond):
        return model.denoise(x, n, cond) + shift

    return dataclasses.replace(model, denoise=denoise)


def test_a_model_agrees_with_itself_and_not_with_a_shifted_copy(checkpoint):
    model = load_model(checkpoint, "cpu", "torch")
    assert measure_agreement(model, model) == Agreement(1.0, "NFE 2 stochastic")
    # 0.1 in [-1, 1] is about 13 levels: most pixels move by more than 2.
    worse = measure_agreement(model, _offset(model, 0.1))
    assert not worse.ok and worse.share < 0.5


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache for the module: the checkpoint is exported to ONNX once."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_auto_measures_agreement_once_and_records_it(checkpoint, cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    # Which runtime is faster is the machine's business: the test fixes the timings.
    monkeypatch.setattr(
        agreement, "call_ms", lambda model: 2.0 if model.backend == "torch" else 1.0
    )
    assert load_model(checkpoint, "cpu", "auto", cache_dir=cache).backend == "onnxruntime"
    (record,) = (cache / "onnx").glob("*.agreement.json")
    check = agreement.read_check(record)
    assert check == Check(check.agreement, torch_ms=2.0, onnxruntime_ms=1.0) and check.agreement.ok

    def never(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(agreement, "measure_agreement", never)
    assert load_model(checkpoint, "cpu", "auto", cache_dir=cache).backend == "onnxruntime"


@pytest.mark.parametrize(
    ("check", "why", "says"),
    [
        (
            Check(Agreement(0.97, "NFE 10 OT-ODE"), torch_ms=2.0, onnxruntime_ms=1.0),
            "disagree",
            "97.00% of pixels within 2 levels at NFE 10 OT-ODE",
        ),
        (
            Check(Agreement(1.0, "NFE 2 stochastic"), torch_ms=200.0, onnxruntime_ms=218.0),
            "faster than ONNX Runtime",
            "200 against 218 ms a network call",
        ),
    ],
    ids=["the runtimes disagree", "onnxruntime is slower"],
)
@pytest.mark.slow
def test_auto_runs_pytorch_and_says_why(checkpoint, cache, monkeypatch, check, why, says):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(runtime, "read_check", lambda _: check)
    model = load_model(checkpoint, "cpu", "auto", cache_dir=cache)
    assert (model.backend, model.precision) == ("torch", "fp32")
    (note,) = [note for note in model.notes if why in note]
    assert says in note


def test_an_agreement_record_of_an_older_kind_is_measured_again(tmp_path):
    record = tmp_path / "x.agreement.json"
    record.write_text(json.dumps({"share": 1.0, "settings": "NFE 2 stochastic"}))
    assert agreement.read_check(record) is None
    faster = Check(Agreement(1.0, "NFE 2 stochastic"), torch_ms=3.0, onnxruntime_ms=2.0)
    record.write_text(json.dumps(dataclasses.asdict(faster)))
    assert agreement.read_check(record) == faster and faster.use_onnxruntime
