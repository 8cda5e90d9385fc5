"""The download cache against a real HTTP server on 127.0.0.1 that the tests start and stop."""

import errno
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import make_checkpoint, serving, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.errors import CheckpointError
from i2sb_cli.models import cache, lock, registry
from i2sb_cli.models.download import DownloadError, DownloadSettings

PAYLOAD = os.urandom(300_000)  # more than one read chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
FAST = DownloadSettings(timeout=2.0, retries=2, backoff=0.01)


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # a client that goes silent cannot hold a server thread for long

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        with server.guard:
            server.requests.append((self.path, self.headers.get("Range")))
            count = sum(1 for p, _ in server.requests if p == self.path)
        if self.path not in server.files:
            self.send_error(404)
            return
        body, mode = server.files[self.path]
        if mode == "503-once" and count == 1:
            self.send_error(503)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and mode != "no-range":
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self._body(body[start:], mode, count)

    def _body(self, data: bytes, mode: str, count: int) -> None:
        if mode == "drop-once" and count == 1:
            self.wfile.write(data[: len(data) // 2])  # then the connection closes
        elif mode == "stall":
            self.wfile.write(data[:10])
            self.wfile.flush()
            self.server.stop.wait(3.0)  # type: ignore[attr-defined]
        elif mode == "slow":
            for i in range(0, len(data), 50_000):
                self.wfile.write(data[i : i + 50_000])
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.guard = threading.Lock()
        self.stop = threading.Event()

    def add(self, path: str, body: bytes = PAYLOAD, mode: str = "ok") -> str:
        self.files[path] = (body, mode)
        return f"http://127.0.0.1:{self.server_port}{path}"

    def hits(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]

    def handle_error(self, request, client_address) -> None:
        pass  # clients that time out and hang up are part of the tests


@pytest.fixture
def server(monkeypatch):
    with serving(_Server(), monkeypatch) as srv:
        yield srv


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


def test_download_success(server, tmp_path):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    assert cache.fetch(url, dest, DIGEST, size=len(PAYLOAD), settings=FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert cache.recorded_sha256(dest) == DIGEST
    assert _leftovers(tmp_path) == []
    cache.fetch(url, dest, DIGEST, settings=FAST)  # already there: no second request
    assert server.hits("/model.bin") == [None]


def test_resume_after_dropped_connection(server, tmp_path):
    url = server.add("/drop.bin", mode="drop-once")
    dest = tmp_path / "m.safetensors"
    cache.fetch(url, dest, DIGEST, size=len(PAYLOAD), settings=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits("/drop.bin") == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_resume_from_an_earlier_run(server, tmp_path):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    (tmp_path / ".m.safetensors.part").write_bytes(PAYLOAD[:1000])
    cache.fetch(url, dest, DIGEST, settings=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits("/model.bin") == ["bytes=1000-"]
    assert _leftovers(tmp_path) == []


def test_partial_of_a_dead_process_is_resumed(server, tmp_path):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    orphan = tmp_path / ".m.safetensors.0123456789ab.tmp"
    orphan.write_bytes(PAYLOAD[:2000])
    old = time.time() - 2 * cache.ORPHAN_AGE
    os.utime(orphan, (old, old))
    live = tmp_path / ".m.safetensors.ba9876543210.tmp"  # another download's, still written
    live.write_bytes(b"zz")
    cache.fetch(url, dest, DIGEST, settings=FAST)
    assert server.hits("/model.bin") == ["bytes=2000-"]
    assert not orphan.exists() and live.exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    url = server.add("/plain.bin", mode="no-range")
    dest = tmp_path / "m.safetensors"
    (tmp_path / ".m.safetensors.part").write_bytes(b"x" * 5000)
    cache.fetch(url, dest, DIGEST, settings=FAST)
    assert dest.read_bytes() == PAYLOAD


def test_server_error_is_retried(server, tmp_path):
    url = server.add("/flaky.bin", mode="503-once")
    cache.fetch(url, tmp_path / "m.safetensors", DIGEST, settings=FAST)
    assert len(server.hits("/flaky.bin")) == 2


def test_wrong_hash_saves_nothing(server, tmp_path):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    with pytest.raises(DownloadError, match="sha256") as info:
        cache.fetch(url, dest, "0" * 64, settings=FAST)
    assert str(dest) in str(info.value)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_not_found_is_not_retried(server, tmp_path):
    url = server.add("/model.bin").replace("model", "gone")
    with pytest.raises(DownloadError, match="404"):
        cache.fetch(url, tmp_path / "m.safetensors", DIGEST, settings=FAST)
    assert len(server.hits("/gone.bin")) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_stalling_server_times_out_and_keeps_the_partial(server, tmp_path):
    url = server.add("/stall.bin", mode="stall")
    settings = DownloadSettings(timeout=0.3, retries=1, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        cache.fetch(url, tmp_path / "m.safetensors", DIGEST, settings=settings)
    assert time.monotonic() - start < 3
    assert server.hits("/stall.bin") == [None, "bytes=10-"]
    assert (tmp_path / ".m.safetensors.part").read_bytes() == PAYLOAD[:20]  # both trickles


def _fetch_in_threads(url, dest, on_wait) -> list:
    barrier, results = threading.Barrier(2), []

    def run() -> None:
        barrier.wait()
        try:
            results.append(cache.fetch(url, dest, DIGEST, settings=FAST, on_wait=on_wait))
        except Exception as exc:  # reported through the results
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return results


def test_two_concurrent_downloaders_fetch_once(server, tmp_path):
    url = server.add("/slow.bin", mode="slow")
    dest = tmp_path / "m.safetensors"
    waits: list = []
    assert _fetch_in_threads(url, dest, lambda: waits.append(1)) == [dest, dest]
    assert server.hits("/slow.bin") == [None]
    assert waits == [1]
    assert dest.read_bytes() == PAYLOAD


def test_concurrent_downloaders_stay_correct_without_the_lock(server, tmp_path, monkeypatch):
    def no_locking(fd):
        raise OSError(errno.ENOLCK, "no locks on this file system")

    monkeypatch.setattr(lock, "_lock", no_locking)
    url = server.add("/slow.bin", mode="slow")
    dest = tmp_path / "m.safetensors"
    assert _fetch_in_threads(url, dest, lambda: None) == [dest, dest]
    assert len(server.hits("/slow.bin")) == 2
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == []


def test_offline_makes_no_network_call(server, tmp_path, monkeypatch):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    monkeypatch.setenv("I2SB_OFFLINE", "1")
    with pytest.raises(cache.OfflineError) as info:
        cache.fetch(url, dest, DIGEST, settings=FAST)
    assert url in str(info.value) and str(dest) in str(info.value)
    assert server.requests == []
    monkeypatch.delenv("I2SB_OFFLINE")
    cache.fetch(url, dest, DIGEST, settings=FAST)
    monkeypatch.setenv("I2SB_OFFLINE", "1")
    assert cache.fetch(url, dest, DIGEST) == dest  # in the cache: offline is fine


def test_tampered_file_is_detected_and_fetched_again(server, tmp_path):
    url = server.add("/model.bin")
    dest = tmp_path / "m.safetensors"
    cache.fetch(url, dest, DIGEST, settings=FAST)
    with dest.open("r+b") as handle:
        handle.seek(100)
        handle.write(bytes([PAYLOAD[100] ^ 1]))
    with pytest.raises(CheckpointError, match="corrupt or was modified"):
        cache.verify_file(dest, DIGEST, name="m")
    cache.fetch(url, dest, DIGEST, settings=FAST)
    assert dest.read_bytes() == PAYLOAD


# --- through the command line and the registry --------------------------------------------------


def _cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_download_by_url_then_restore_verify_and_rm(server, tmp_path, monkeypatch):
    model = make_checkpoint(tmp_path / "tiny.safetensors").read_bytes()
    url = server.add("/tiny.safetensors", model)
    digest = hashlib.sha256(model).hexdigest()
    monkeypatch.setenv("I2SB_CACHE_DIR", str(tmp_path / "cache"))
    offline = _cli("models", "download", url, "--sha256", digest, "--name", "tiny", "--offline")
    assert offline.exit_code == 1 and url in offline.stderr and server.requests == []
    result = _cli("models", "download", url, "--sha256", digest, "--name", "tiny")
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "cache" / "models" / "tiny.safetensors"
    assert result.stdout.strip() == str(path)
    picture = write_picture(tmp_path / "in.png", 8)
    args = ("--model", "tiny", "-o", tmp_path / "out.png", "--nfe", 1, "--backend", "torch")
    restored = _cli("restore", picture, *args)
    assert restored.exit_code == 0, restored.stderr
    assert "ok" in _cli("models", "verify", "tiny").stdout
    path.write_bytes(model[:-1] + bytes([model[-1] ^ 1]))
    bad = _cli("models", "verify")
    assert bad.exit_code == 1 and "FAILED" in bad.stdout
    refused = _cli("restore", picture, "--model", "tiny", "-o", tmp_path / "o2.png")
    assert refused.exit_code == 1 and "corrupt" in refused.stderr
    assert not (tmp_path / "o2.png").exists()
    assert _cli("models", "rm", "tiny").exit_code == 0
    assert not path.exists() and cache.names_on_disk(path.parent) == []


@pytest.fixture
def remote_model(server, tmp_path, monkeypatch):
    """A manifest whose only model, tiny-remote (sr4x), is downloaded from the test server."""
    model = make_checkpoint(tmp_path / "tiny.safetensors").read_bytes()
    url = server.add("/remote.safetensors", model)
    weights = tmp_path / "weights"
    weights.mkdir()
    entry = {
        "name": "tiny-remote",
        "family": "sr4x",
        "tasks": ["sr4x-bicubic"],
        "url": url,
        "sha256": hashlib.sha256(model).hexdigest(),
        "size": len(model),
        "licence": "MIT",
        "default_nfe": 2,
        "summary": "a test model",
    }
    (weights / registry.MANIFEST).write_text(json.dumps({"models": [entry]}))
    monkeypatch.setattr(registry, "weights_dir", lambda: weights)
    registry.bundled_models.cache_clear()
    yield model, url
    registry.bundled_models.cache_clear()


def test_manifest_download_entry_is_fetched_on_first_use(
    server, remote_model, tmp_path, monkeypatch
):
    model, _ = remote_model
    monkeypatch.setenv("I2SB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(cache.OfflineError, match="remote"):
        registry.resolve_model("tiny-remote", None, offline=True)
    path = registry.resolve_model("tiny-remote", None)
    assert path.read_bytes() == model
    assert registry.resolve_model(None, "sr4x") == path  # the family's model in the cache
    assert server.hits("/remote.safetensors") == [None]
    listed = _cli("models", "list", "--json")
    assert json.loads(listed.stdout)[0]["status"] == "downloaded"


@pytest.mark.slow
def test_restore_export_and_benchmark_take_cache_dir_and_offline(server, remote_model, tmp_path):
    model, url = remote_model
    folder = tmp_path / "elsewhere"
    picture = write_picture(tmp_path / "in.png", 8)
    out = tmp_path / "out.png"
    restore = ("restore", picture, "--model", "tiny-remote", "-o", out, "--nfe", 1)
    restore += ("--backend", "torch")  # the reference; auto would export the model to ONNX
    refused = _cli(*restore, "--cache-dir", folder, "--offline")
    assert refused.exit_code == 1 and url in refused.stderr and str(folder) in refused.stderr
    assert server.requests == [] and not out.exists()

    done = _cli(*restore, "--cache-dir", folder, "--online", "--backend", "onnxruntime")
    assert done.exit_code == 0, done.stderr
    assert (folder / "models" / "tiny-remote.safetensors").read_bytes() == model
    assert len(list((folder / "onnx").glob("*.onnx"))) == 1  # the export is cached there too
    assert out.is_file()

    exported = tmp_path / "net.onnx"
    export = _cli(
        "export", "--model", "tiny-remote", "-o", exported, "--cache-dir", folder, "--offline"
    )
    assert export.exit_code == 0, export.stderr
    bench = ("benchmark", "--model", "tiny-remote", "--size", 16, "--nfe", 1, "--repeat", 1)
    measured = _cli(*bench, "--warmup", 0, "--cache-dir", folder, "--offline")
    assert measured.exit_code == 0, measured.stderr
    assert server.hits("/remote.safetensors") == [None]  # fetched once, then read from the cache
    elsewhere = _cli(*bench, "--cache-dir", tmp_path / "empty", "--offline")
    assert elsewhere.exit_code == 1 and "tiny-remote" in elsewhere.stderr


@pytest.mark.slow
def test_rm_takes_the_models_onnx_exports_with_it(server, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the ONNX export needs onnxruntime")
    model = make_checkpoint(tmp_path / "tiny.safetensors").read_bytes()
    url = server.add("/tiny.safetensors", model)
    digest = hashlib.sha256(model).hexdigest()
    monkeypatch.setenv("I2SB_CACHE_DIR", str(tmp_path / "cache"))
    assert _cli("models", "download", url, "--sha256", digest, "--name", "tiny").exit_code == 0
    picture = write_picture(tmp_path / "in.png", 8)
    args = ("--model", "tiny", "-o", tmp_path / "out.png", "--nfe", 1, "--backend", "auto")
    assert _cli("restore", picture, *args).exit_code == 0
    exports = tmp_path / "cache" / "onnx"
    assert list(exports.glob(f"{digest[:16]}-*"))  # the auto backend cached an export
    assert _cli("models", "rm", "tiny").exit_code == 0
    assert list(exports.glob(f"{digest[:16]}-*")) == []
