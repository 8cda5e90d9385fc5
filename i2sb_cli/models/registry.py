"""Which checkpoint a command runs: a path, a known model name, or a task's bundled default.

Bundled models are listed in `weights/models.json` (shipped inside the package as
`i2sb_cli.weights`), each with its file, the tasks it serves, its sha256 and how it was made.
"""

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import CheckpointError, ModelNotFoundError, UsageError
from ..tasks import FAMILIES, TASKS, family_of

MANIFEST = "models.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    family: str
    tasks: tuple[str, ...]
    sha256: str
    size: int
    licence: str
    default_nfe: int
    summary: str

    @property
    def path(self) -> Path:
        return weights_dir() / self.file


def weights_dir() -> Path:
    return Path(str(resources.files("i2sb_cli.weights")))


@cache
def bundled_models() -> tuple[ModelEntry, ...]:
    """The manifest's entries, in the order listed (the first of a family is its default)."""
    try:
        text = (weights_dir() / MANIFEST).read_text(encoding="utf-8")
        raws = [{**raw, "tasks": tuple(raw["tasks"])} for raw in json.loads(text)["models"]]
        listed = [ModelEntry(**raw) for raw in raws]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"weights/{MANIFEST} is missing or broken ({exc}); reinstall i2sb"
        ) from None
    entries = []
    for entry in listed:
        if entry.family not in FAMILIES or any(t not in TASKS for t in entry.tasks):
            raise CheckpointError(f"weights/{MANIFEST}: bad family or task in entry {entry.name!r}")
        entries.append(entry)
    return tuple(entries)


def find_model(name: str) -> ModelEntry | None:
    return next((m for m in bundled_models() if m.name == name), None)


def default_model(task: str) -> ModelEntry:
    """The bundled model for a family or paper task name (the exact task preferred)."""
    family = family_of(task)
    candidates = [m for m in bundled_models() if m.family == family]
    if not candidates:
        known = ", ".join(sorted({m.family for m in bundled_models()})) or "none"
        raise ModelNotFoundError(
            f"no bundled model for the {family!r} family yet (bundled: {known}); "
            "pass --model NAME|PATH with a checkpoint for it"
        )
    exact = [m for m in candidates if task in m.tasks]
    return (exact or candidates)[0]


def verify_bundled(entry: ModelEntry) -> Path:
    """The entry's file, after checking that it is there and is the file the manifest pins."""
    path = entry.path
    if not path.is_file():
        raise CheckpointError(
            f"bundled model {entry.name!r} is missing its file {path}; reinstall i2sb"
        )
    digest = _sha256(path)
    if digest != entry.sha256:
        raise CheckpointError(
            f"bundled model {entry.name!r} at {path} does not match its sha256 "
            f"(expected {entry.sha256[:12]}..., got {digest[:12]}...); reinstall i2sb"
        )
    return path


@cache
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(model: str | None, task: str | None) -> Path:
    """The checkpoint file for `--model NAME|PATH` or, without it, for `--task`."""
    if model is not None:
        entry = find_model(model)
        if entry is not None:
            return verify_bundled(entry)
        path = Path(model).expanduser()
        if path.is_file():
            return path
        names = ", ".join(m.name for m in bundled_models()) or "none"
        raise ModelNotFoundError(
            f"--model {model!r} is neither a file nor a known model (known: {names})"
        )
    if task is None:
        raise UsageError("say what to do: pass --task (e.g. --task sr4x) or --model NAME|PATH")
    return verify_bundled(default_model(task))
