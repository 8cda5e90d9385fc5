"""A lock that keeps two processes from downloading the same file at the same time.

An advisory OS lock (flock, or msvcrt on Windows) on a lock file: the OS drops it when its
process dies, so a crashed download never leaves a stale lock. The lock only saves duplicate
work; the cache stays correct without it.
"""

import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path


class FileLock:
    """An advisory OS lock (flock, or msvcrt on Windows) on a lock file.

    The OS drops the lock when its process dies, so a crashed download never leaves a stale
    lock. After `wait` seconds, or where the file system cannot lock, the caller goes on
    without it (`held` False): the lock only saves duplicate downloads.
    """

    def __init__(
        self, path: Path, *, wait: float, on_wait: Callable[[], None] | None = None
    ) -> None:
        self.path, self.wait, self.on_wait = path, wait, on_wait
        self.held = False
        self.busy = False
        self._fd: int | None = None

    def __enter__(self) -> "FileLock":
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                _lock(self._fd)
                self.held = True
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                    return self  # no locking on this file system
            self.busy = True
            if time.monotonic() >= deadline:
                return self
            if self.on_wait is not None:
                self.on_wait()
                self.on_wait = None
            time.sleep(min(0.2, max(self.wait / 10, 0.01)))

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            if self.held:
                with contextlib.suppress(OSError):
                    _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
