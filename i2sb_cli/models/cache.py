"""The download cache: where models live on disk, and how a file gets there verified.

Location: `--cache-dir` > `$I2SB_CACHE_DIR` > platformdirs' user cache dir, with the models in
its `models/` folder as `<name>.safetensors`, each beside a `<name>.safetensors.sha256` in
`sha256sum` format. A download goes to a working file in the same folder and appears under its
final name (`os.replace`) only once its sha256 matches; a lock keeps two processes from fetching
the same file twice, but a second downloader that runs anyway writes its own working file, so
correctness never depends on the lock. `I2SB_OFFLINE=1` (or `offline=True`) makes no network
call at all.
"""

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import platformdirs
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import CheckpointError, ModelNotFoundError
from .download import DownloadError, DownloadSettings, transfer
from .download import Progress as ProgressHook
from .lock import FileLock

ENV_CACHE_DIR = "I2SB_CACHE_DIR"
ENV_OFFLINE = "I2SB_OFFLINE"
SUFFIX = ".safetensors"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A working file nobody has touched for this long belongs to a process that died (a live
# download writes at least once per read timeout); the lock holder may resume from it.
ORPHAN_AGE = 600.0


class OfflineError(DownloadError):
    """A file that is not in the cache while network access is switched off."""


def cache_root(flag: Path | None = None) -> Path:
    """The cache folder: the `--cache-dir` flag, else $I2SB_CACHE_DIR, else the user cache."""
    if flag is not None:
        return Path(flag).expanduser()
    env = os.environ.get(ENV_CACHE_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("i2sb", appauthor=False))


def models_dir(flag: Path | None = None) -> Path:
    return cache_root(flag) / "models"


def is_offline(flag: bool | None = None) -> bool:
    """The `--offline` flag when given, else whether $I2SB_OFFLINE is set to a true value."""
    if flag is not None:
        return flag
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def model_path(name: str, folder: Path) -> Path:
    return folder / f"{name}{SUFFIX}"


def cached_names(folder: Path) -> list[str]:
    """Names of the complete model files in a cache folder (working files excluded)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name[: -len(SUFFIX)]
        for p in folder.glob(f"*{SUFFIX}")
        if p.is_file() and not p.name.startswith(".")
    )


def names_on_disk(folder: Path) -> list[str]:
    """Names with anything in the cache: a model, its hash, a partial download or a lock."""
    if not folder.is_dir():
        return []
    names = {p.name.lstrip(".").split(SUFFIX)[0] for p in folder.iterdir() if SUFFIX in p.name}
    return sorted(names - {""})


def check_sha256(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise DownloadError(f"{value!r} is not a sha256 (64 hexadecimal digits)")
    return digest


def sha256_file(path: Path) -> str:
    """The file's sha256, remembered while the file's identity and times stay the same."""
    stat = path.stat()
    return _sha256(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, *identity: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def recorded_sha256(dest: Path) -> str | None:
    """The sha256 written beside a cached file when it was downloaded or imported."""
    try:
        text = _hash_file(dest).read_text(encoding="utf-8")
    except OSError:
        return None
    first = text.split()[0] if text.split() else ""
    return first if _SHA256.fullmatch(first) else None


def record_sha256(dest: Path, digest: str) -> None:
    side = _hash_file(dest)
    tmp = side.with_name(f".{side.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(f"{digest}  {dest.name}\n", encoding="utf-8")
    os.replace(tmp, side)


def verify_file(dest: Path, expected: str | None, *, name: str) -> Path:
    """`dest` after checking it against `expected` (else its recorded sha256); a missing,
    unpinned, corrupt or modified file is a CheckpointError and is never loaded."""
    if not dest.is_file():
        raise ModelNotFoundError(f"model {name!r} is not in the cache ({dest} is missing)")
    expected = expected or recorded_sha256(dest)
    if expected is None:
        raise CheckpointError(
            f"model {name!r} at {dest} has no recorded sha256, so it cannot be trusted; "
            f"remove it (i2sb models rm {name}) and download or import it again"
        )
    actual = sha256_file(dest)
    if actual != expected:
        raise CheckpointError(
            f"model {name!r} at {dest} is corrupt or was modified (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...); remove it (i2sb models rm {name}) and download "
            "or import it again"
        )
    return dest


def fetch(
    url: str,
    dest: Path,
    sha256: str,
    *,
    size: int | None = None,
    offline: bool | None = None,
    settings: DownloadSettings | None = None,
    progress: ProgressHook | None = None,
    on_wait: Callable[[], None] | None = None,
    lock_wait: float = 1800.0,
) -> Path:
    """`dest`, downloaded from `url` unless a file with this sha256 is already there."""
    sha256 = check_sha256(sha256)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    if is_offline(offline):
        state = "is corrupt" if dest.exists() else "is not in the cache"
        raise OfflineError(
            f"offline (--offline or {ENV_OFFLINE}=1): {dest} {state}; it would be downloaded "
            f"from {url}"
        )
    with _cache_writes(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(_lock_file(dest), wait=lock_wait, on_wait=on_wait) as lock:
            # Whoever held the lock before us may have fetched the file meanwhile.
            if dest.is_file() and sha256_file(dest) == sha256:
                return dest
            # Without a pinned size, a connection cut in a response without Content-Length
            # looks like the end of the file: on a wrong sha256, ask once for the bytes after
            # it (HTTP Range) before calling the file wrong.
            may_be_cut = size is None
            started_fresh = False  # a partial found on disk may hold some other file's bytes
            for _ in range(3):
                work = _claim_partial(dest, adopt_orphans=lock.held)
                started_fresh = started_fresh or work.stat().st_size == 0
                try:
                    digest = transfer(
                        url, work, expected_size=size, settings=settings, progress=progress
                    )
                except BaseException:
                    _keep_partial(work, dest)
                    raise
                if digest == sha256:
                    _publish(work, dest, digest)
                    return dest
                if may_be_cut:
                    may_be_cut = False
                    _keep_partial(work, dest)
                    continue
                work.unlink(missing_ok=True)
                if started_fresh:
                    break  # a fresh download with the wrong bytes: retrying will not help
    raise DownloadError(
        f"{url}: the downloaded file has sha256 {digest[:12]}..., expected "
        f"{sha256[:12]}...; it was discarded and nothing was saved to {dest}"
    )


@contextlib.contextmanager
def _cache_writes(folder: Path) -> Iterator[None]:
    """Disk trouble (no permission, a full disk) as an error that names the folder; network
    trouble never gets here as an OSError (download.py turns it into a DownloadError)."""
    try:
        yield
    except OSError as exc:
        raise DownloadError(
            f"cannot write to the cache folder {folder} ({exc.strerror or exc}); choose "
            f"another with --cache-dir or {ENV_CACHE_DIR}"
        ) from None


def store(dest: Path, write: Callable[[Path], None]) -> str:
    """Put a file made here (an import) into the cache under `dest`, atomically, with its
    sha256 recorded; `write(path)` writes it. Returns the sha256."""
    with _cache_writes(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(_lock_file(dest), wait=60.0):
            work = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
            try:
                write(work)
                digest = sha256_file(work)
                _publish(work, dest, digest)
            except BaseException:
                work.unlink(missing_ok=True)
                raise
    return digest


def _publish(work: Path, dest: Path, digest: str) -> None:
    with work.open("rb+") as handle:
        os.fsync(handle.fileno())
    # The hash first: a crash between the two leaves an old file that fails verification.
    record_sha256(dest, digest)
    os.replace(work, dest)


def _lock_file(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def _part_file(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def working_files(dest: Path) -> list[Path]:
    """Partial downloads of `dest`: the resumable one and those of running or dead processes."""
    found = [_part_file(dest)] if _part_file(dest).is_file() else []
    return found + _claimed_files(dest)


def _claimed_files(dest: Path) -> list[Path]:
    pattern = re.sub(r"([*?\[])", r"[\1]", dest.name)  # names are globbed literally
    return sorted(dest.parent.glob(f".{pattern}.*.tmp"))


def _claim_partial(dest: Path, *, adopt_orphans: bool) -> Path:
    """A working file only this process writes, holding the best partial download there is.

    Claiming is an atomic rename, so two downloaders can never share a file even without the
    lock. Working files left by dead processes are adopted only under the lock.
    """
    work = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    candidates = [_part_file(dest)]
    if adopt_orphans:
        now = time.time()
        candidates += [p for p in _claimed_files(dest) if now - _mtime(p, default=now) > ORPHAN_AGE]
    candidates.sort(key=lambda p: _size(p), reverse=True)
    for candidate in candidates:
        try:
            os.replace(candidate, work)
            break
        except FileNotFoundError:
            continue
    else:
        os.close(os.open(work, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    if adopt_orphans:
        # Under the lock no one else writes these: drop the ones not resumed from.
        for leftover in candidates:
            leftover.unlink(missing_ok=True)
    return work


def _keep_partial(work: Path, dest: Path) -> None:
    """Leave what was fetched where the next attempt resumes from it."""
    with contextlib.suppress(OSError):
        if work.stat().st_size:
            os.replace(work, _part_file(dest))
        else:
            work.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _mtime(path: Path, *, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def remove(dest: Path) -> int:
    """Delete a cached model with its hash, partial downloads and lock; the bytes freed."""
    if not dest.parent.is_dir():
        return 0
    with _cache_writes(dest.parent), FileLock(_lock_file(dest), wait=0.0) as lock:
        if not lock.held and lock.busy:
            raise DownloadError(f"{dest.name} is being written by another process; try later")
        freed = 0
        for path in [dest, _hash_file(dest), *working_files(dest)]:
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
    _lock_file(dest).unlink(missing_ok=True)
    return freed


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[ProgressHook]:
    """A rich download bar on stderr (off when stderr is not a terminal), as a progress hook."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
