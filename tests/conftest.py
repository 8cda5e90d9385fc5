"""Shared fixtures: where the golden reference data lives, tiny restoration models, and the
isolation every test gets."""

import os
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, make_checkpoint


def _golden_dir() -> Path:
    override = os.environ.get("I2SB_GOLDEN_DIR")
    return Path(override) if override else REPO_ROOT / "tests" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Reference values computed by the official implementation (tests/golden, described in
    tests/golden/README.md; I2SB_GOLDEN_DIR points elsewhere). The files are part of the
    repository, so a missing folder or file fails the tests that need it: it never skips."""
    path = _golden_dir()
    if not (path / "README.md").is_file():
        pytest.fail(f"golden data not found at {path} (tests/golden/README.md lists its files)")
    return path


@pytest.fixture(autouse=True)
def _isolated_model_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's model cache, nor reach a network."""
    monkeypatch.setenv("I2SB_CACHE_DIR", str(tmp_path_factory.mktemp("i2sb-cache")))
    monkeypatch.setenv("I2SB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests' tiny nets run fastest on one thread, and far faster when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def worktree_weights(monkeypatch):
    """The manifest and checkpoints of this checkout's weights/ (an editable install of another
    checkout would otherwise serve its own)."""
    from i2sb_cli.models import registry

    monkeypatch.setattr(registry, "weights_dir", lambda: REPO_ROOT / "weights")
    registry.bundled_models.cache_clear()
    yield
    registry.bundled_models.cache_clear()


@pytest.fixture(scope="session")
def sr(tmp_path_factory) -> Path:
    """A tiny untrained 4x super-resolution model."""
    return make_checkpoint(tmp_path_factory.mktemp("models") / "tiny-sr4x.safetensors")


@pytest.fixture(scope="session")
def same_size(tmp_path_factory) -> Path:
    """A tiny untrained model whose output has the input's size (JPEG artefact removal)."""
    folder = tmp_path_factory.mktemp("models")
    return make_checkpoint(folder / "tiny-jpeg.safetensors", name="tiny-jpeg", task="jpeg-10")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: takes more than about 5 s (deselect: -m 'not slow')")
