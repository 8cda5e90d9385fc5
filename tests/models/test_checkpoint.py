"""Our checkpoint format (safetensors + JSON metadata) and the registry of bundled models."""

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from helpers import make_checkpoint, tiny_meta, tiny_state
from safetensors.torch import save_file

from i2sb_cli.degrade.tasks import TASKS
from i2sb_cli.errors import CheckpointError, ModelNotFoundError, UsageError
from i2sb_cli.models import registry
from i2sb_cli.models.checkpoint import (
    FORMAT_VERSION,
    CheckpointMeta,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from i2sb_cli.nets.adm import ADMUNet


def _meta_json(**changes) -> str:
    body = json.loads(tiny_meta().to_json())
    body.update(changes)
    return json.dumps(body)


def _load_error(path: Path) -> str:
    """The message of the CheckpointError that loading `path` raises: one line naming it."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_fp16_loads_float32_within_fp16_rounding(tmp_path):
    meta = tiny_meta()
    state = tiny_state(meta)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, state, meta, dtype=torch.float16)

    net, loaded_meta = load_checkpoint(path)
    assert isinstance(net, ADMUNet)
    assert not net.training
    assert loaded_meta == meta
    assert read_meta(path) == meta
    loaded = net.state_dict()
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert loaded[key].dtype == torch.float32, key
        torch.testing.assert_close(loaded[key], tensor.half().float(), rtol=0, atol=0)
        torch.testing.assert_close(loaded[key], tensor, rtol=1e-3, atol=1e-4)


def test_round_trip_float32_is_exact_and_leaves_no_temporary_file(tmp_path):
    meta = tiny_meta(name="cond", cond_x1=True, task="inpaint-center", beta_max=1.0, ot_ode=True)
    state = tiny_state(meta, seed=3)
    path = tmp_path / "sub" / "model.safetensors"
    save_checkpoint(path, state, meta)
    net, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    assert loaded_meta.config.conditioned
    for key, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_saved_checkpoint_is_readable_by_others_per_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = make_checkpoint(tmp_path / "model.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_refuses_inconsistent_metadata_and_writes_nothing(tmp_path):
    meta = tiny_meta()
    bad = CheckpointMeta(**{**meta.__dict__, "cond_x1": True})
    path = tmp_path / "model.safetensors"
    with pytest.raises(CheckpointError, match="cond_x1"):
        save_checkpoint(path, tiny_state(meta), bad)
    assert list(tmp_path.iterdir()) == []


# --- broken files ------------------------------------------------------------------------------


def test_not_found(tmp_path):
    message = _load_error(tmp_path / "absent.safetensors")
    assert "not found" in message


def test_text_file_is_not_safetensors(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("just some text, not tensors\n" * 10)
    assert "not a readable safetensors" in _load_error(path)


def test_truncated_file(tmp_path):
    path = make_checkpoint(tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _load_error(path)
    path.write_bytes(data[:5])
    assert "not a readable safetensors" in _load_error(path)


class _Trap:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_are_refused_and_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    pickled = tmp_path / "latest.pt"
    pickled.write_bytes(pickle.dumps({"model": _Trap(marker)}))
    torch_saved = tmp_path / "torch.safetensors"
    torch.save({"weight": torch.zeros(2), "trap": _Trap(marker)}, torch_saved)
    assert not marker.exists()

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    for path in (pickled, torch_saved):
        assert "not a readable safetensors" in _load_error(path)
    assert not marker.exists()
    # A real checkpoint loads without any unpickling either.
    load_checkpoint(make_checkpoint(tmp_path / "ok.safetensors"))


def test_safetensors_without_i2sb_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path), metadata={"other": "x"})
    assert "without i2sb metadata" in _load_error(path)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an i2sb checkpoint"),
        (json.dumps({"format": "something-else"}), "not an i2sb checkpoint"),
        (_meta_json(format_version=FORMAT_VERSION + 1), "version 2 is not supported"),
        (_meta_json(format_version=None), "version None is not supported"),
        (_meta_json(beta_max="big"), "beta_max"),
        (_meta_json(ot_ode="yes"), "ot_ode"),
        (_meta_json(default_nfe=2.5), "default_nfe"),
        (_meta_json(extra=1), "invalid i2sb metadata"),
        (_meta_json(config={"image_size": 32}), "invalid i2sb metadata"),
        (_meta_json(config=None), "invalid i2sb metadata"),
        (_meta_json(beta_max=-1.0), "beta_max must be positive"),
        (_meta_json(task="denoise-everything"), "unknown task"),
        (_meta_json(t0=0.5, t1=0.1), "t0"),
        (_meta_json(default_nfe=1000), "default_nfe 1000 is out of range"),
        (_meta_json(default_detail=1.2), "default_detail must be between 0 and 1"),
        (_meta_json(default_detail="1"), "default_detail must be float"),
        (_meta_json(default_ensemble=3), "default_ensemble must be one of"),
        (_meta_json(default_ensemble=2.0), "default_ensemble must be int"),
        (_meta_json(cond_x1=True), "cond_x1=True and condition '' need 6 network inputs, not 3"),
        (_meta_json(condition="colour"), "condition must be one of '', 'jpeg-quality'"),
        (_meta_json(condition="jpeg-quality"), "is for a cond_x1 network of the jpeg family"),
        (_meta_json(start="nowhere"), "start must be one of degraded, classical"),
        (_meta_json(start="classical"), "needs a degradation of the sr4x-bicubic family"),
        (_meta_json(start="classical", degradation="jpeg-10"), "needs a degradation"),
        (_meta_json(start="classical", degradation="blur-fast"), "needs a degradation"),
        (_meta_json(start="classical", task="denoise", degradation="jpeg-10"), "unknown task"),
    ],
    ids=lambda v: v if len(v) < 40 else None,
)
def test_bad_metadata(tmp_path, metadata, expected):
    path = tmp_path / "bad.safetensors"
    meta = tiny_meta()
    save_file(tiny_state(meta), str(path), metadata={"i2sb": metadata})
    assert expected in _load_error(path)


def test_mismatched_keys(tmp_path):
    meta = tiny_meta()
    state = tiny_state(meta)
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "keys.safetensors"
    save_checkpoint(path, state, meta)
    message = _load_error(path)
    assert "1 missing" in message
    assert dropped in message
    assert "1 unexpected" in message
    assert "extra.weight" in message


def test_mismatched_shapes(tmp_path):
    meta = tiny_meta()
    wider = tiny_meta()
    wider = CheckpointMeta(**{**wider.__dict__, "config": _wider(meta.config)})
    path = tmp_path / "shapes.safetensors"
    save_checkpoint(path, tiny_state(wider), meta)
    message = _load_error(path)
    # Found in the file's header, before any tensor is read or network built.
    assert "the metadata does not match the weights" in message
    assert "32 channels described" in message and "64 stored" in message


def _wider(config):
    body = config.to_dict()
    body["model_channels"] = 64
    return type(config).from_dict(body)


# --- registry ----------------------------------------------------------------------------------


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A weights folder with one tiny sr4x model; returns (folder, write_manifest)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    model = make_checkpoint(folder / "tiny-sr4x.safetensors")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()

    def write_manifest(**changes) -> Path:
        entry = {
            "name": "tiny-sr4x",
            "file": model.name,
            "family": "sr4x",
            "tasks": ["sr4x-bicubic"],
            "sha256": digest,
            "size": model.stat().st_size,
            "licence": "MIT",
            "default_nfe": 2,
            "summary": "a test model",
            **changes,
        }
        (folder / registry.MANIFEST).write_text(json.dumps({"models": [entry]}))
        registry.bundled_models.cache_clear()
        return model

    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    # An empty cache of the test's own: the user's cache must never be read or written.
    monkeypatch.setenv("I2SB_CACHE_DIR", str(tmp_path / "cache"))
    write_manifest()
    yield folder, write_manifest
    registry.bundled_models.cache_clear()


def test_shipped_manifest_is_valid():
    registry.bundled_models.cache_clear()
    for entry in registry.bundled_models():
        assert entry.sha256 and entry.file.endswith(".safetensors")
        assert registry.verify_bundled(entry) == registry.weights_dir() / entry.file
    official = [m for m in registry.known_models() if m.kind == "import"]
    assert sorted(t for m in official for t in m.tasks) == sorted(TASKS)
    for entry in official:
        assert entry.licence == "CC-BY-NC-SA-4.0"
        assert entry.import_source.page.startswith("https://drive.google.com/drive/folders/")


def test_resolve_model_with_a_path(tmp_path, bundled):
    path = make_checkpoint(tmp_path / "mine.safetensors")
    assert registry.resolve_model(str(path), None) == path
    assert registry.resolve_model(str(path), "deblur") == path


def test_resolve_model_by_name_and_by_task(bundled):
    folder, _ = bundled
    expected = folder / "tiny-sr4x.safetensors"
    assert registry.resolve_model("tiny-sr4x", None) == expected
    assert registry.resolve_model(None, "sr4x") == expected
    assert registry.resolve_model(None, "sr4x-pool") == expected  # same family


def test_unknown_model_name_lists_the_known_ones(bundled):
    with pytest.raises(ModelNotFoundError) as info:
        registry.resolve_model("no-such-model", None)
    assert "no-such-model" in str(info.value)
    assert "tiny-sr4x" in str(info.value)


def test_family_without_bundled_model_suggests_model_option(bundled):
    with pytest.raises(ModelNotFoundError, match="--model") as info:
        registry.resolve_model(None, "deblur")
    assert "deblur" in str(info.value)


def test_neither_model_nor_task(bundled):
    with pytest.raises(UsageError, match="--task"):
        registry.resolve_model(None, None)


def test_bundled_sha256_mismatch(bundled):
    _, write_manifest = bundled
    write_manifest(sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256") as info:
        registry.resolve_model("tiny-sr4x", None)
    assert "tiny-sr4x" in str(info.value)
    with pytest.raises(CheckpointError, match="sha256"):
        registry.resolve_model(None, "sr4x")


def test_bundled_file_missing(bundled):
    _, write_manifest = bundled
    write_manifest(file="gone.safetensors")
    with pytest.raises(CheckpointError, match="missing its file"):
        registry.resolve_model("tiny-sr4x", None)


@pytest.mark.parametrize(
    "manifest", ["{not json", json.dumps({"entries": []}), json.dumps({"models": [{"name": "x"}]})]
)
def test_broken_manifest_is_a_checkpoint_error(bundled, manifest):
    folder, _ = bundled
    (folder / registry.MANIFEST).write_text(manifest)
    registry.bundled_models.cache_clear()
    with pytest.raises(CheckpointError, match=r"models\.json"):
        registry.resolve_model("tiny-sr4x", None)


def test_manifest_with_unknown_family(bundled):
    _, write_manifest = bundled
    write_manifest(family="colourise")
    with pytest.raises(CheckpointError, match="bad family"):
        registry.bundled_models()
