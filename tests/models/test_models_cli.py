"""`i2sb models list|info|path|verify|rm`, the manifest schema, and models found in the cache."""

import dataclasses
import json

import pytest
from helpers import make_checkpoint, tiny_meta, tiny_state
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.models import cache, registry
from i2sb_cli.models.checkpoint import save_checkpoint
from i2sb_cli.models.manifest import ManifestError, parse_manifest

SHA = "ab" * 32


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("I2SB_CACHE_DIR", str(folder))
    monkeypatch.delenv("I2SB_OFFLINE", raising=False)
    registry.bundled_models.cache_clear()
    return folder / "models"


def _cli(*args):
    return CliRunner().invoke(app, ["models", *map(str, args)])


def _store(folder, name, **meta_options):
    """A tiny model in the cache as an import leaves it (with its sha256 recorded)."""
    meta = tiny_meta(name=name, **meta_options)
    path = cache.model_path(name, folder)
    cache.store(path, lambda p: save_checkpoint(p, tiny_state(meta), meta))
    return path


def test_list_shows_the_manifest_and_the_cache(cache_dir):
    _store(cache_dir, "official-blur-gauss", task="blur-gauss", beta_max=1.0, ot_ode=True)
    _store(cache_dir, "mine", task="jpeg-10")
    (cache_dir / ".official-jpeg-5.safetensors.part").write_bytes(b"x")
    records = {r["name"]: r for r in json.loads(_cli("list", "--json").stdout)}
    assert records["official-blur-gauss"]["status"] == "imported"
    assert records["official-sr4x-pool"]["status"] == "not imported"
    assert records["official-sr4x-pool"]["licence"] == "CC-BY-NC-SA-4.0"
    assert records["mine"]["source"] == "cache" and records["mine"]["tasks"] == ["jpeg-10"]
    table = _cli("list")
    assert table.exit_code == 0
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert "not imported" in rows["official-inpaint-freeform2030"]
    assert "imported" in rows["official-blur-gauss"] and "MB" in rows["official-blur-gauss"]


def test_info_says_how_to_get_an_official_model(cache_dir):
    result = _cli("info", "official-jpeg-10")
    assert result.exit_code == 0
    assert "https://drive.google.com/drive/folders/13on7v54W8ncQ4RlSl3PIZn0NalfiGaJd" in (
        result.stdout.replace("\n", "")
    )
    assert "i2sb models import" in result.stdout and "CC-BY-NC-SA-4.0" in result.stdout
    assert _cli("info", "no-such-model").exit_code == 1


def test_path_verify_and_rm(cache_dir):
    path = _store(cache_dir, "official-blur-gauss", task="blur-gauss", beta_max=1.0, ot_ode=True)
    assert _cli("path", "official-blur-gauss").stdout.strip() == str(path)
    missing = _cli("path", "official-sr4x-pool")
    assert missing.exit_code == 1 and "drive.google.com" in missing.stderr
    assert "ok" in _cli("verify").stdout
    never = _cli("verify", "official-sr4x-pool")
    assert never.exit_code == 1 and "not imported" in never.stdout
    assert _cli("rm", "official-blur-gauss").exit_code == 0
    assert not path.exists() and not cache.recorded_sha256(path)
    assert _cli("rm", "official-blur-gauss").exit_code == 1
    (cache_dir / ".x.safetensors.abc.tmp").write_bytes(b"partial")
    assert _cli("rm", "--all").exit_code == 0
    assert list(cache_dir.iterdir()) == []


def test_model_without_recorded_hash_is_not_trusted(cache_dir):
    path = make_checkpoint(cache.model_path("copied", cache_dir))
    with pytest.raises(CheckpointError, match="no recorded sha256"):
        registry.resolve_model("copied", None)
    assert _cli("verify", "copied").exit_code == 1
    cache.record_sha256(path, cache.sha256_file(path))
    assert registry.resolve_model("copied", None) == path


def test_task_without_bundled_model_uses_an_imported_one(cache_dir, monkeypatch):
    without_deblur = tuple(m for m in registry.bundled_models() if m.family != "deblur")
    monkeypatch.setattr(registry, "bundled_models", lambda: without_deblur)
    with pytest.raises(registry.ModelNotFoundError, match="--model"):
        registry.resolve_model(None, "deblur")
    path = _store(cache_dir, "official-blur-uni", task="blur-uni", beta_max=1.0, ot_ode=True)
    assert registry.resolve_model(None, "deblur") == path
    assert registry.resolve_model(None, "blur-gauss") == path  # same family
    assert registry.resolve_model("official-blur-uni", None) == path


def _entry(**changes) -> dict:
    entry = {
        "name": "sr4x-tiny",
        "family": "sr4x",
        "tasks": ["sr4x-bicubic", "sr4x-pool"],
        "file": "sr4x-tiny.safetensors",
        "sha256": SHA,
        "size": 1000,
        "licence": "MIT",
        "preset": "tiny",
        "cond_x1": True,
        "beta_max": 0.3,
        "ot_ode": False,
        "default_nfe": 10,
        "summary": "bundled CPU model",
        "provenance": "trained with i2sb train",
    }
    return {k: v for k, v in {**entry, **changes}.items() if v is not None}


def test_manifest_schema():
    (bundled,) = parse_manifest(json.dumps({"schema_version": 1, "models": [_entry()]}))
    assert bundled.kind == "bundled" and bundled.tasks == ("sr4x-bicubic", "sr4x-pool")
    remote = _entry(file=None, url="https://example.org/m.safetensors")
    assert parse_manifest(json.dumps({"models": [remote]}))[0].kind == "download"
    broken = {
        "give exactly one": _entry(url="https://example.org/m.safetensors"),
        "sha256": _entry(sha256="xyz"),
        "unknown fields": _entry(colour="red"),
        "name must be": _entry(name="../evil"),
        "family": _entry(tasks=["jpeg-5"]),
        "preset": _entry(preset="huge"),
        "wrong type": _entry(cond_x1="yes"),
        "import": _entry(file=None, sha256=None, size=None, **{"import": {"page": "x"}}),
    }
    for problem, entry in broken.items():
        with pytest.raises(ManifestError, match=problem):
            parse_manifest(json.dumps({"models": [entry]}))
    with pytest.raises(ManifestError, match="twice"):
        parse_manifest(json.dumps({"models": [_entry(), _entry()]}))
    (blind,) = parse_manifest(json.dumps({"models": [_entry(tasks=[])]}))  # no paper task
    assert blind.tasks == ()
    with pytest.raises(ManifestError, match="tasks must be a list"):
        parse_manifest(json.dumps({"models": [_entry(tasks="sr4x-bicubic")]}))
    with pytest.raises(ManifestError, match="schema_version"):
        parse_manifest(json.dumps({"schema_version": 2, "models": []}))


def _score(**changes) -> dict:
    score = {
        "task": "sr4x-bicubic",
        "pictures": "9 photos",
        "nfe": 2,
        "baseline": "bicubic upsampling",
        "psnr": {"restored": 26.76, "baseline": 26.1},
        "ssim": {"restored": 0.77, "baseline": 0.76},
        "st_lpips": {"restored": 0.18, "baseline": 0.32},
        "command": "i2sb evaluate pairs restored",
    }
    return {**score, **changes}


def test_manifest_says_what_a_model_is_good_for():
    (plain,) = parse_manifest(json.dumps({"models": [_entry()]}))
    assert plain.trained_on == "" and plain.scores == ()
    scores = [_score(), _score(detail=0.4), _score(ensemble=2)]
    entry = _entry(trained_on="4x bicubic only", scores=scores)
    (known,) = parse_manifest(json.dumps({"models": [entry]}))
    assert known.trained_on == "4x bicubic only"
    assert known.scores[0].psnr.restored == 26.76 and known.scores[1].detail == 0.4
    assert known.scores[2].ensemble == 2 and known.scores[0].ensemble is None
    broken = {
        "not a degradation of sr4x": _score(task="jpeg-10"),
        "must have the fields": {k: v for k, v in _score().items() if k != "command"},
        "psnr must be": _score(psnr={"restored": 26.7}),
        "must be numbers": _score(ssim={"restored": "high", "baseline": 0.7}),
        "nfe must be": _score(nfe=0),
        "ensemble must be one of": _score(ensemble=3),
    }
    for problem, score in broken.items():
        with pytest.raises(ManifestError, match=problem):
            parse_manifest(json.dumps({"models": [_entry(scores=[score])]}))
    with pytest.raises(ManifestError, match="wrong type"):
        parse_manifest(json.dumps({"models": [_entry(trained_on=["x"])]}))


def test_info_shows_what_a_bundled_model_was_trained_on_and_scores(cache_dir, worktree_weights):
    for entry in registry.bundled_models():
        assert entry.trained_on and entry.scores, entry.name
    result = _cli("info", "deblur-tiny")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "trained_on: one blur only, the Gaussian of sigma 10 on 5 taps" in text
    assert "blur-gauss-plain deblur-tiny, NFE 1 34.37 0.9231 0.0249" in text
    assert "Wiener deconvolution 32.76 0.8559 0.0387" in text
    assert "--model runs/deblur-tiny-step500.safetensors --nfe 1" in text
    record = json.loads(_cli("info", "sr4x-p4", "--json").stdout)
    assert record["checkpoint"]["start"] == "classical" and "start_network" not in record
    assert record["scores"][0]["detail"] == 0.5
    assert record["scores"][0]["psnr"] == {"restored": 27.0, "baseline": 26.1}


def test_the_blind_deblurrer_answers_the_family_and_lists_no_paper_task(
    cache_dir, worktree_weights
):
    assert registry.default_model("deblur").name == "deblur-blind"
    assert registry.default_model("blur-gauss").name == "deblur-tiny"  # lists it
    assert registry.default_model("blur-uni").name == "deblur-tiny"  # made for paper kernels
    records = {r["name"]: r for r in json.loads(_cli("list", "--json").stdout)}
    assert records["deblur-blind"]["status"] == "bundled" and records["deblur-blind"]["tasks"] == []
    info = _cli("info", "deblur-blind")
    assert info.exit_code == 0
    assert "tasks:" not in info.stdout  # an empty list is not shown
    text = " ".join(info.stdout.split())
    assert "real-blur deblur-blind, NFE 2, ensemble 2 32.78 0.8887 0.0996" in text
    assert "blur-blind deblur-blind, NFE 2, ensemble 2 28.99 0.8431 0.2098" in text


def _blind_weights(folder, monkeypatch, training: dict):
    """A weights folder whose one deblur model lists no paper task, trained as `training` says."""
    folder.mkdir()
    meta = dataclasses.replace(
        tiny_meta(name="blind", task="deblur", beta_max=1.0, ot_ode=True), training=training
    )
    model = folder / "blind.safetensors"
    save_checkpoint(model, tiny_state(meta), meta)
    entry = _entry(name="blind", family="deblur", tasks=[], file=model.name, preset=None)
    entry.update(sha256=cache.sha256_file(model), size=model.stat().st_size)
    (folder / registry.MANIFEST).write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    registry.bundled_models.cache_clear()


def test_a_blind_family_default_degrades_by_its_first_training_task(
    cache_dir, tmp_path, monkeypatch
):
    _blind_weights(tmp_path / "w", monkeypatch, {"tasks": ["blur-blind", "blur-gauss-plain"]})
    assert registry.family_degradation("deblur") == "blur-blind"
    assert registry.default_model("blur-uni").name == "blind"  # the only deblur model there is
    _blind_weights(tmp_path / "w2", monkeypatch, {"steps": 0})
    with pytest.raises(CheckpointError, match="names no task"):
        registry.family_degradation("deblur")
    registry.bundled_models.cache_clear()
