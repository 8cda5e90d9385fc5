"""Downloads against servers that misbehave on purpose (issue 16): oversized bodies, trickles,
redirects out of http(s), cut responses without a length, and a SIGTERM mid-download. Every
server is a local one on 127.0.0.1 that the test starts and stops."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import REPO_ROOT, serving

from i2sb_cli.models import cache
from i2sb_cli.models.download import DownloadError, DownloadSettings

PAYLOAD = os.urandom(300_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
FAST = DownloadSettings(timeout=2.0, retries=1, backoff=0.01)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0, so that a body without Content-Length ends where the connection closes."""

    timeout = 10

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        wanted = self.headers.get("Range")
        server.requests.append(wanted)
        mode, body = server.mode, server.body
        if mode == "header-trickle":
            for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello":
                if server.stop.wait(0.3):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", server.location or self.path)
            self.end_headers()
            return
        if wanted:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self.send_response(200)  # no Content-Length in any of the modes below
        self.end_headers()
        if mode == "cut":
            self.wfile.write(body[: len(body) // 2])
        elif mode == "trickle":
            for byte in body[:20]:
                if server.stop.wait(0.4):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        elif mode == "endless":
            while not server.stop.is_set():
                self.wfile.write(body)
        elif mode == "stall":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            server.stop.wait(30)
        else:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.body, self.location = "ok", PAYLOAD, None
        self.requests: list[str | None] = []
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/model.safetensors"

    def handle_error(self, request, client_address) -> None:
        pass  # clients that give up and hang up are part of the tests


@pytest.fixture
def server(monkeypatch):
    with serving(_Server(), monkeypatch) as srv:
        yield srv


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


def test_pinned_size_stops_an_oversized_download(server, tmp_path):
    server.body = PAYLOAD * 8  # 2.4 MB, no Content-Length, for a file pinned at 300 kB
    seen: list[int] = []
    with pytest.raises(DownloadError, match="more than the 300,000 bytes"):
        cache.fetch(
            server.url,
            tmp_path / "m.safetensors",
            DIGEST,
            size=len(PAYLOAD),
            settings=FAST,
            progress=lambda done, total: seen.append(done),
        )
    assert max(seen) <= len(PAYLOAD) + 1  # stopped at the pin, not at the server's end
    assert _leftovers(tmp_path) == []


def test_trickling_server_times_out(server, tmp_path):
    server.mode = "trickle"  # a byte every 0.4 s: each read is well within the timeout
    settings = DownloadSettings(timeout=1.0, retries=0, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="too slow"):
        cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=settings)
    assert time.monotonic() - start < 4


def test_redirect_out_of_http_is_refused(server, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    server.mode = "redirect"
    server.location = f"ftp://127.0.0.1:{listener.getsockname()[1]}/model.safetensors"
    try:
        with pytest.raises(DownloadError, match=r"not http\(s\); refused") as info:
            cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=FAST)
        with pytest.raises(TimeoutError):
            listener.accept()[0].close()  # nothing ever connected to the ftp:// address
    finally:
        listener.close()
    assert "\n" not in str(info.value)


def test_redirect_loop_is_reported_in_one_line(server, tmp_path):
    server.mode = "redirect"  # to itself, for ever
    with pytest.raises(DownloadError) as info:
        cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=FAST)
    assert "too many redirects" in str(info.value) and "\n" not in str(info.value)


def test_cut_download_without_content_length_is_resumed(server, tmp_path):
    server.mode = "cut"  # half the file, no length, then the connection closes
    dest = tmp_path / "m.safetensors"
    assert cache.fetch(server.url, dest, DIGEST, settings=FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert _leftovers(tmp_path) == []


def test_sigterm_keeps_the_partial_download_for_the_next_run(server, tmp_path):
    server.mode = "stall"  # half the file, then nothing until the test ends
    folder = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "I2SB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "i2sb_cli", "models", "download", server.url]
    command += ["--sha256", DIGEST, "--name", "m", "--cache-dir", folder, "--timeout", "30"]
    process = subprocess.Popen(
        [str(c) for c in command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        models = folder / "models"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            working = list(models.glob(".m.safetensors.*.tmp")) if models.is_dir() else []
            if working and working[0].stat().st_size >= len(PAYLOAD) // 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the download never started")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr.decode()
    assert _leftovers(models) == [".m.safetensors.part"]
    assert (models / ".m.safetensors.part").read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]


def test_headers_sent_a_byte_at_a_time_time_out(server, tmp_path):
    server.mode = "header-trickle"  # each byte well within the read timeout, the whole never
    settings = DownloadSettings(timeout=1.0, retries=0, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=settings)
    assert time.monotonic() - start < 4 and "\n" not in str(info.value)


def test_redirect_to_a_local_file_is_refused_by_name(server, tmp_path):
    server.mode = "redirect"
    server.location = "file:///etc/passwd"
    with pytest.raises(DownloadError, match=r"file:///etc/passwd, which is not http\(s\)"):
        cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=FAST)


def test_a_body_that_never_ends_stops_at_the_ceiling(server, tmp_path):
    server.mode = "endless"  # no Content-Length, and it never closes
    settings = DownloadSettings(timeout=2.0, retries=0, backoff=0.01, max_bytes=2_000_000)
    with pytest.raises(DownloadError, match="more than 2,000,000 bytes"):
        cache.fetch(server.url, tmp_path / "m.safetensors", DIGEST, settings=settings)
    assert not (tmp_path / "m.safetensors").exists()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 2_000_000
