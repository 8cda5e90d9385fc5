"""Which checkpoint a command runs: a path, a known model name, or a task's default model.

Known models are listed in `weights/models.json` (shipped inside the package as
`i2sb_cli.weights`; schema in manifest.py and weights/README.md). A bundled model's file ships
with i2sb; the others live in the download cache (cache.py), where `i2sb models download` or
`i2sb models import` puts them. Every file is checked against its sha256 before it is used.
"""

from functools import cache
from importlib import resources
from pathlib import Path

from ..degrade.tasks import TASKS, family_of
from ..errors import CheckpointError, ModelNotFoundError, UsageError
from . import cache as model_cache
from .checkpoint import read_meta
from .manifest import ManifestError, ModelEntry, parse_manifest

MANIFEST = "models.json"


def weights_dir() -> Path:
    return Path(str(resources.files("i2sb_cli.weights")))


def known_models() -> tuple[ModelEntry, ...]:
    """Every manifest entry, in the order listed (read afresh: the file is small)."""
    try:
        text = (weights_dir() / MANIFEST).read_text(encoding="utf-8")
        return parse_manifest(text)
    except (OSError, ManifestError) as exc:
        raise CheckpointError(
            f"weights/{MANIFEST} is missing or broken ({exc}); reinstall i2sb"
        ) from None


@cache
def bundled_models() -> tuple[ModelEntry, ...]:
    """The entries whose file ships with i2sb (the first of a family is its default)."""
    return tuple(m for m in known_models() if m.kind == "bundled")


def find_model(name: str) -> ModelEntry | None:
    return next((m for m in known_models() if m.name == name), None)


def default_model(task: str) -> ModelEntry:
    """The bundled model for a family or paper task name: for a family, its first; for a paper
    task, the first that lists it, else the first made for paper tasks at all, else the first.

    A paper task name says exactly which degradation the input went through (`blur-uni`: that
    kernel); a model made for paper tasks takes it at its word (a classical start inverts that
    kernel), where a blind model, which lists none, would ignore it."""
    family = family_of(task)
    candidates = [m for m in bundled_models() if m.family == family]
    if not candidates:
        known = ", ".join(sorted({m.family for m in bundled_models()})) or "none"
        raise ModelNotFoundError(
            f"no bundled model for the {family!r} family yet (bundled: {known}); "
            "pass --model NAME|PATH with a checkpoint for it (see i2sb models list)"
        )
    if task not in TASKS:
        return candidates[0]
    exact = [m for m in candidates if task in m.tasks]
    for_paper_tasks = [m for m in candidates if m.tasks]
    return (exact or for_paper_tasks or candidates)[0]


def family_degradation(family: str) -> str:
    """The degradation `restore --task FAMILY` takes its input to have: the one the family's
    bundled model starts from when it starts from a classical restoration (the checkpoint's
    `degradation`), else the first paper task the manifest lists for it, else (a blind model,
    which lists none) the first task its training drew pairs from."""
    entry = default_model(family)
    meta = read_meta(verify_bundled(entry))
    if meta.start == "classical":
        return meta.degradation
    trained = list(entry.tasks) or meta.training.get("tasks") or []
    if not trained:
        raise CheckpointError(f"bundled model {entry.name!r} names no task; reinstall i2sb")
    return trained[0]


def verify_bundled(entry: ModelEntry) -> Path:
    """The entry's file, after checking that it is there and is the file the manifest pins."""
    path = weights_dir() / (entry.file or "")
    if entry.kind != "bundled" or not path.is_file():
        raise CheckpointError(
            f"bundled model {entry.name!r} is missing its file {path}; reinstall i2sb"
        )
    digest = model_cache.sha256_file(path)
    if digest != entry.sha256:
        raise CheckpointError(
            f"bundled model {entry.name!r} at {path} does not match its sha256 "
            f"(expected {(entry.sha256 or '')[:12]}..., got {digest[:12]}...); reinstall i2sb"
        )
    return path


def cached_entry_path(entry: ModelEntry, cache_dir: Path | None = None) -> Path:
    """Where a downloaded or imported model lives in the cache (whether or not it is there)."""
    return model_cache.model_path(entry.name, model_cache.models_dir(cache_dir))


def how_to_import(entry: ModelEntry) -> str:
    source = entry.import_source
    if source is None:
        return ""
    return (
        f"get {' and '.join(source.files)} from {source.page} (a browser or "
        f"`gdown --folder URL` fetches the folder), then run: i2sb models import FOLDER"
    )


def entry_file(
    entry: ModelEntry, *, cache_dir: Path | None = None, offline: bool | None = None
) -> Path:
    """A known model's verified file: bundled, cached, or downloaded now if it can be."""
    if entry.kind == "bundled":
        return verify_bundled(entry)
    dest = cached_entry_path(entry, cache_dir)
    if entry.kind == "import":
        if not dest.is_file():
            raise ModelNotFoundError(
                f"model {entry.name!r} is not imported yet: {how_to_import(entry)}"
            )
        return model_cache.verify_file(dest, None, name=entry.name)
    if dest.is_file():
        return model_cache.verify_file(dest, entry.sha256, name=entry.name)
    with model_cache.progress_bar(entry.name) as progress:
        return model_cache.fetch(
            entry.url or "",
            dest,
            entry.sha256 or "",
            size=entry.size,
            offline=offline,
            progress=progress,
        )


def resolve_model(
    model: str | None,
    task: str | None,
    *,
    cache_dir: Path | None = None,
    offline: bool | None = None,
) -> Path:
    """The checkpoint file for `--model NAME|PATH` or, without it, for `--task`.

    A name is looked up in the manifest, then among the cache's models (downloads by URL and
    imports under a name of one's own); a missing manifest download is fetched unless offline.
    """
    if model is not None:
        entry = find_model(model)
        if entry is not None:
            return entry_file(entry, cache_dir=cache_dir, offline=offline)
        folder = model_cache.models_dir(cache_dir)
        if model in model_cache.cached_names(folder):
            return model_cache.verify_file(model_cache.model_path(model, folder), None, name=model)
        path = Path(model).expanduser()
        if path.is_file():
            return path
        names = ", ".join(m.name for m in known_models()) or "none"
        raise ModelNotFoundError(
            f"--model {model!r} is neither a file nor a known model (known: {names})"
        )
    if task is None:
        raise UsageError("say what to do: pass --task (e.g. --task sr4x) or --model NAME|PATH")
    try:
        return verify_bundled(default_model(task))
    except ModelNotFoundError:
        cached = _cached_for(task, cache_dir)
        if cached is None:
            raise
        return entry_file(cached, cache_dir=cache_dir, offline=offline)


def _cached_for(task: str, cache_dir: Path | None) -> ModelEntry | None:
    """A downloaded or imported model of the task's family, the exact task preferred."""
    family = family_of(task)
    present = [
        m
        for m in known_models()
        if m.kind != "bundled" and m.family == family and cached_entry_path(m, cache_dir).is_file()
    ]
    exact = [m for m in present if task in m.tasks]
    return (exact or present or [None])[0]


def import_entry_for(task: str, source_format: str) -> ModelEntry | None:
    """The manifest's import entry for `source_format` checkpoints trained on `task`."""
    return next(
        (
            m
            for m in known_models()
            if m.import_source is not None
            and m.import_source.format == source_format
            and m.tasks == (task,)
        ),
        None,
    )
