"""One HTTP(S) transfer into a working file: streaming, resume with Range, retries, timeouts.

The cache (cache.py) decides where the bytes go and what they must hash to; this module only
moves them into a file that nobody else writes, and hashes them on the way. It never puts a
file under a final name. Proxies come from the usual environment variables (http_proxy,
https_proxy, no_proxy), which urllib's default opener honours.
"""

import contextlib
import hashlib
import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import __version__
from ..errors import I2SBError

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as a transfer advances."""

CHUNK = 256 * 1024
MAX_BYTES = 8_000_000_000
"""The default ceiling of a download of unknown size, 8 GB: several times the largest
checkpoint known (an official I2SB ADM checkpoint with its EMA weights, about 2.1 GB)."""
# An attempt that fetched this much before failing resets the retry count: a long download
# over a flaky line goes on, while a server that trickles a few bytes and stalls does not.
_PROGRESS = 1 << 20
# Worth another try: the server or a proxy may recover. Other 4xx codes will not change.
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
# urllib reports a redirect loop, or a redirect it will not follow, as an HTTPError of a 3xx.
_REDIRECT_STATUS = range(300, 400)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(I2SBError):
    """A file that could not be fetched (network, server, or it is not the file expected)."""


@dataclass(frozen=True)
class DownloadSettings:
    """How patient a transfer is. `timeout` bounds each connect and each read, in seconds, and
    a stall: an attempt that receives less than `min_rate` bytes per second over `timeout`
    seconds is given up (a server that trickles a byte at a time never hits the read timeout);
    `retries` counts the attempts after the first (reset after an attempt that fetched 1 MiB);
    the wait before retry k is `backoff * 2**(k-1)`, at most `max_backoff`."""

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    min_rate: int = 1024
    max_bytes: int = MAX_BYTES
    """A file of unknown size is given up past this many bytes (a server that never ends
    would otherwise fill the disk); a pinned size bounds a transfer by itself."""


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to ftp:// too, and reports one to file:// as an HTTP error of a
    3xx that reads like a loop; a model comes over http(s) or not at all, and says so."""

    def http_error_302(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
    ) -> IO[bytes] | None:
        target = headers.get("Location") or headers.get("URI")
        if target:
            newurl = urllib.parse.urljoin(req.full_url, target)
            scheme = urllib.parse.urlsplit(newurl).scheme.lower()
            if scheme not in ("http", "https"):
                fp.close()
                raise DownloadError(
                    f"{req.full_url}: the server redirects to {newurl}, which is not http(s); "
                    "refused (ask for an http(s) address)"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Deadline:
    """Mixed into http.client's connections: the status line and headers must all arrive
    within the connection's timeout (`DownloadSettings.timeout`). The socket's own timeout
    bounds each read, so a server that sends its headers a byte a second would never time out;
    past the deadline the socket is shut down, which ends the wait with an OSError (a failed
    attempt, retried)."""

    def getresponse(self):  # type: ignore[no-untyped-def]
        sock = getattr(self, "sock", None)
        limit = getattr(self, "timeout", None)
        timer = None
        if sock is not None and isinstance(limit, int | float):
            timer = threading.Timer(limit, _shut, args=(sock,))
            timer.daemon = True
            timer.start()
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            if timer is not None:
                timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


class _HTTPConnection(_Deadline, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Deadline, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context)


# Proxies from the environment and the usual handlers, as urlopen's, but http(s)-only redirects
# and a deadline for the headers.
_OPENER = urllib.request.build_opener(_HttpOnlyRedirects, _HTTPHandler, _HTTPSHandler)


class _Partial:
    """The working file and the sha256 of what it holds so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.done = 0
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                self.hasher.update(block)
                self.done += len(block)

    def restart(self) -> None:
        with self.path.open("r+b") as handle:
            handle.truncate(0)
        self.hasher = hashlib.sha256()
        self.done = 0


def transfer(
    url: str,
    work: Path,
    *,
    expected_size: int | None = None,
    settings: DownloadSettings | None = None,
    progress: Progress | None = None,
) -> str:
    """Append `url`'s bytes to `work` (resuming after what it holds) until the whole file is
    there; return the sha256 of the complete file. `work` must exist (it may be empty)."""
    settings = settings or DownloadSettings()
    partial = _Partial(work)
    failures = 0
    while True:
        before = partial.done
        try:
            if _attempt(url, partial, expected_size, settings, progress):
                return partial.hasher.hexdigest()
            raise _Transient(f"the connection closed after {partial.done:,} bytes")
        except _Transient as exc:
            failures = 1 if partial.done >= before + _PROGRESS else failures + 1
            if failures > settings.retries:
                raise DownloadError(
                    f"{url}: {exc} (gave up after {failures} failed attempt(s); "
                    "run the command again to resume)"
                ) from None
            time.sleep(min(settings.backoff * 2 ** (failures - 1), settings.max_backoff))


def _attempt(
    url: str,
    partial: _Partial,
    expected_size: int | None,
    settings: DownloadSettings,
    progress: Progress | None,
) -> bool:
    """One request; True when the file is complete, False when the stream ended early."""
    if expected_size is not None and partial.done > expected_size:
        partial.restart()  # a leftover from some other file: start afresh
    if expected_size is not None and partial.done == expected_size and partial.done:
        return True
    headers = {"User-Agent": f"i2sb/{__version__}", "Accept-Encoding": "identity"}
    if partial.done:
        headers["Range"] = f"bytes={partial.done}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and partial.done:
            if exc.headers.get("Content-Range", "").strip() == f"bytes */{partial.done}":
                return True  # the partial file already holds every byte
            # Our partial file does not fit what the server has now: download it whole.
            partial.restart()
            raise _Transient("the server refused to resume (HTTP 416)") from None
        # urllib's reasons can span lines (a redirect loop's is three): the first says it.
        reason = str(exc.reason).strip().splitlines()[0] if str(exc.reason).strip() else ""
        if exc.code in _RETRY_STATUS:
            raise _Transient(f"HTTP {exc.code} {reason}") from None
        if exc.code in _REDIRECT_STATUS:
            raise DownloadError(f"{url}: too many redirects (HTTP {exc.code})") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise _Transient(_reason(exc)) from None
    with response:
        total = _start(response, partial)
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(
                f"{url}: the server offers {total:,} bytes, but the file should have "
                f"{expected_size:,}; it is not the file this model pins"
            )
        total = total if total is not None else expected_size
        if total is not None and total > settings.max_bytes and expected_size is None:
            raise DownloadError(
                f"{url}: the server offers {total:,} bytes, more than the {settings.max_bytes:,} "
                "allowed; raise the limit (--max-size) if this file is what you want"
            )
        if progress:
            progress(partial.done, total)
        _stream(response, partial, settings, progress, total)
    if expected_size is not None and partial.done > expected_size:
        # Nothing of it is worth resuming from: the next attempt starts afresh.
        partial.restart()
        raise DownloadError(
            f"{url}: the server sent more than the {expected_size:,} bytes this model pins; "
            "it is not the file expected, and nothing was kept"
        )
    return total is None or partial.done >= total


def _start(response: http.client.HTTPResponse, partial: _Partial) -> int | None:
    """Line the working file up with the response; the file's total size, if the server says."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != partial.done:
            partial.restart()
            raise _Transient("the server answered the resume with another byte range")
        return None if match.group(3) == "*" else int(match.group(3))
    if partial.done:
        partial.restart()  # the server ignores Range and sends the whole file
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _stream(
    response: http.client.HTTPResponse,
    partial: _Partial,
    settings: DownloadSettings,
    progress: Progress | None,
    total: int | None,
) -> None:
    """Append the body to the working file, up to one byte past `total` (enough to tell that
    a server sends more than it should, without writing what it sends on)."""
    window_start, window_bytes = time.monotonic(), 0
    with partial.path.open("ab") as handle:
        while True:
            wanted = CHUNK if total is None else min(CHUNK, total - partial.done + 1)
            if wanted <= 0:
                return
            try:
                chunk = response.read1(wanted)  # what has arrived: a stall loses nothing
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(_reason(exc)) from None
            if not chunk:
                return
            if total is None and partial.done + len(chunk) > settings.max_bytes:
                raise DownloadError(
                    f"{response.url}: more than {settings.max_bytes:,} bytes and no end in "
                    "sight; stopped (raise the limit with --max-size; what arrived is kept "
                    "for resuming)"
                )
            # Disk errors (a full disk) are not network trouble: they propagate as they are.
            handle.write(chunk)
            partial.hasher.update(chunk)
            partial.done += len(chunk)
            if progress:
                progress(partial.done, total)
            window_bytes += len(chunk)
            elapsed = time.monotonic() - window_start
            if elapsed >= settings.timeout:
                if window_bytes < settings.min_rate * elapsed:
                    raise _Transient(
                        f"too slow: {window_bytes:,} bytes in {elapsed:.0f} s, under "
                        f"{settings.min_rate:,} bytes/s"
                    )
                window_start, window_bytes = time.monotonic(), 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
    if isinstance(exc, TimeoutError):
        return "timed out (no data within the timeout)"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the file was complete"
    return str(exc) or type(exc).__name__
