"""One HTTP(S) transfer into a working file: streaming, resume with Range, retries, timeouts.

The cache (cache.py) decides where the bytes go and what they must hash to; this module only
moves them into a file that nobody else writes, and hashes them on the way. It never puts a
file under a final name. Proxies come from the usual environment variables (http_proxy,
https_proxy, no_proxy), which urllib's default opener honours.
"""

import hashlib
import http.client
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import I2SBError

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as a transfer advances."""

CHUNK = 256 * 1024
# An attempt that fetched this much before failing resets the retry count: a long download
# over a flaky line goes on, while a server that trickles a few bytes and stalls does not.
_PROGRESS = 1 << 20
# Worth another try: the server or a proxy may recover. Other 4xx codes will not change.
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(I2SBError):
    """A file that could not be fetched (network, server, or it is not the file expected)."""


@dataclass(frozen=True)
class DownloadSettings:
    """How patient a transfer is. `timeout` bounds each connect and each read, in seconds;
    `retries` counts the attempts after the first (reset after an attempt that fetched 1 MiB);
    the wait before retry k is `backoff * 2**(k-1)`, at most `max_backoff`."""

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix."""


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
        response = urllib.request.urlopen(request, timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and partial.done:
            if exc.headers.get("Content-Range", "").strip() == f"bytes */{partial.done}":
                return True  # the partial file already holds every byte
            # Our partial file does not fit what the server has now: download it whole.
            partial.restart()
            raise _Transient("the server refused to resume (HTTP 416)") from None
        if exc.code in _RETRY_STATUS:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
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
        if progress:
            progress(partial.done, total)
        _stream(response, partial, progress, total)
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
    progress: Progress | None,
    total: int | None,
) -> None:
    with partial.path.open("ab") as handle:
        while True:
            try:
                chunk = response.read1(CHUNK)  # what has arrived: a stall loses nothing
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(_reason(exc)) from None
            if not chunk:
                return
            # Disk errors (a full disk) are not network trouble: they propagate as they are.
            handle.write(chunk)
            partial.hasher.update(chunk)
            partial.done += len(chunk)
            if progress:
                progress(partial.done, total)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
    if isinstance(exc, TimeoutError):
        return "timed out (no data within the timeout)"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the file was complete"
    return str(exc) or type(exc).__name__
