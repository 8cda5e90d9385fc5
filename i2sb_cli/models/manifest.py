"""The manifest of known models (weights/models.json): its entries and their validation.

Each entry says where the model's file comes from, in one of three ways (weights/README.md):
`file` (bundled in weights/), `url` (downloaded into the cache, pinned by sha256) or `import`
(a foreign checkpoint the user obtains, e.g. an official I2SB folder on Google Drive, and
converts with `i2sb models import`). The architecture and schedule fields describe the model
for people; the checkpoint's own metadata is what sampling uses. `trained_on` and `scores` say
what a model is good for: the exact degradation it learnt, and what it measured against the
classical baseline (weights/README.md's model cards); manifests may leave them out.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from ..bridge.ensemble import COPIES
from ..degrade import get_operator
from ..degrade.tasks import FAMILIES, TASKS
from ..errors import UsageError
from ..nets.adm import PRESET_NAMES

SCHEMA_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("name", "family", "tasks", "licence", "default_nfe", "summary")
_OPTIONAL: dict[str, Any] = {
    "file": None,
    "url": None,
    "sha256": None,
    "size": None,
    "preset": None,
    "cond_x1": None,
    "beta_max": None,
    "ot_ode": None,
    "provenance": "",
    "import": None,
    "trained_on": "",
    "scores": [],
}
_SCORE_FIELDS = {"task", "pictures", "nfe", "baseline", "psnr", "ssim", "st_lpips", "command"}
_METRICS = ("psnr", "ssim", "st_lpips")


class ManifestError(ValueError):
    """An entry or field that does not follow the manifest schema."""


@dataclass(frozen=True)
class ImportSource:
    """Where the user gets a foreign checkpoint and which files `i2sb models import` reads."""

    format: str
    page: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """One metric's mean for the model's restorations and for the classical baseline."""

    restored: float
    baseline: float


@dataclass(frozen=True)
class Score:
    """A measurement of the model beside the classical baseline, and the command that made it.

    `task` is the `i2sb degrade` task the pictures went through; `pictures` says which;
    `detail` is restore's --detail when it was not 1, `ensemble` its --ensemble when not 1.
    """

    task: str
    pictures: str
    nfe: int
    baseline: str
    psnr: Pair
    ssim: Pair
    st_lpips: Pair
    command: str
    detail: float | None = None
    ensemble: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    tasks: tuple[str, ...]
    licence: str
    default_nfe: int
    summary: str
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    preset: str | None = None
    cond_x1: bool | None = None
    beta_max: float | None = None
    ot_ode: bool | None = None
    provenance: str = ""
    import_source: ImportSource | None = None
    trained_on: str = ""
    scores: tuple[Score, ...] = ()

    @property
    def kind(self) -> str:
        """ "bundled" (ships in weights/), "download" (from `url`) or "import" (convert it)."""
        if self.url is not None:
            return "download"
        if self.import_source is not None:
            return "import"
        return "bundled"


def is_valid_name(name: str) -> bool:
    """Model names double as file names in the cache: no separators, no leading dot."""
    return bool(_NAME.fullmatch(name))


def parse_manifest(text: str) -> tuple[ModelEntry, ...]:
    """The entries of a manifest's JSON text, in order; a ManifestError says what is wrong."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not valid JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("models"), list):
        raise ManifestError('the top level must be an object with a "models" list')
    version = body.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ManifestError(f"schema_version {version!r} is not {SCHEMA_VERSION}")
    entries = [_entry(raw, index) for index, raw in enumerate(body["models"])]
    names = [e.name for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(f"model names listed twice: {', '.join(twice)}")
    return tuple(entries)


def _entry(raw: Any, index: int) -> ModelEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"entry {index} is not an object")
    label = repr(raw.get("name", f"#{index}"))
    missing = [k for k in _REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ManifestError(f"entry {label}: missing fields {missing}, unknown fields {unknown}")
    values = {**_OPTIONAL, **raw}
    source = values.pop("import")
    try:
        entry = ModelEntry(
            **{
                **values,
                "tasks": tuple(_list(values["tasks"], "tasks", empty=True)),
                "scores": _scores(values["scores"]),
            },
            import_source=None if source is None else _import_source(source),
        )
        _check(entry)
    except ManifestError as exc:
        raise ManifestError(f"entry {label}: {exc}") from None
    return entry


def _import_source(raw: Any) -> ImportSource:
    if not isinstance(raw, dict) or set(raw) != {"format", "page", "files"}:
        raise ManifestError('"import" must be an object with format, page and files')
    files = tuple(_list(raw["files"], "import.files"))
    if not all(isinstance(v, str) for v in (raw["format"], raw["page"], *files)):
        raise ManifestError('"import" fields must be strings')
    return ImportSource(raw["format"], raw["page"], files)


def _scores(raw: Any) -> tuple[Score, ...]:
    if not isinstance(raw, list):
        raise ManifestError('"scores" must be a list')
    return tuple(_score(item, index) for index, item in enumerate(raw))


def _score(raw: Any, index: int) -> Score:
    where = f"score {index}"
    optional = {"detail", "ensemble"}
    if not isinstance(raw, dict) or not _SCORE_FIELDS <= set(raw) <= _SCORE_FIELDS | optional:
        raise ManifestError(
            f"{where} must have the fields {sorted(_SCORE_FIELDS)} (and detail, ensemble)"
        )
    if not all(
        isinstance(raw[k], str) and raw[k] for k in ("task", "pictures", "baseline", "command")
    ):
        raise ManifestError(f"{where}: task, pictures, baseline and command must be text")
    if type(raw["nfe"]) is not int or raw["nfe"] < 1:
        raise ManifestError(f"{where}: nfe must be a whole number from 1")
    if raw.get("detail") is not None and not _is_number(raw["detail"]):
        raise ManifestError(f"{where}: detail must be a number")
    if raw.get("ensemble") is not None and (
        type(raw["ensemble"]) is not int or raw["ensemble"] not in COPIES
    ):
        raise ManifestError(f"{where}: ensemble must be one of {COPIES}")
    pairs = {metric: _pair(raw[metric], f"{where}: {metric}") for metric in _METRICS}
    return Score(**{**raw, **pairs})


def _pair(raw: Any, where: str) -> Pair:
    if not isinstance(raw, dict) or set(raw) != {"restored", "baseline"}:
        raise ManifestError(f'{where} must be {{"restored": number, "baseline": number}}')
    if not all(_is_number(v) for v in raw.values()):
        raise ManifestError(f"{where}: the values must be numbers")
    return Pair(**raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list(value: Any, field: str, *, empty: bool = False) -> list:
    if not isinstance(value, list) or not (value or empty):
        raise ManifestError(f"{field} must be a {'' if empty else 'non-empty '}list")
    return value


def _check(e: ModelEntry) -> None:
    _types(e)
    if not is_valid_name(e.name):
        raise ManifestError("name must be letters, digits, '.', '_' or '-'")
    if e.family not in FAMILIES or any(t not in TASKS for t in e.tasks):
        raise ManifestError("bad family or task")
    if any(TASKS[t].family != e.family for t in e.tasks):
        raise ManifestError(f"every task must belong to the {e.family!r} family")
    if e.preset is not None and e.preset not in PRESET_NAMES:
        raise ManifestError(f"unknown preset {e.preset!r}")
    if e.default_nfe < 1:
        raise ManifestError("default_nfe must be at least 1")
    sources = [e.file is not None, e.url is not None, e.import_source is not None]
    if sum(sources) != 1:
        raise ManifestError('give exactly one of "file" (bundled), "url" or "import"')
    if e.kind == "bundled" and not (e.file or "").endswith(".safetensors"):
        raise ManifestError('"file" must name a .safetensors file in weights/')
    if e.kind in ("bundled", "download"):
        if e.sha256 is None or not _SHA256.fullmatch(e.sha256):
            raise ManifestError("sha256 must be 64 lowercase hexadecimal digits")
        if e.size is None or e.size <= 0:
            raise ManifestError("size must be the file's size in bytes")
    if e.url is not None and not e.url.startswith(("https://", "http://")):
        raise ManifestError("url must be http(s)")
    for score in e.scores:
        try:
            family = get_operator(score.task).family
        except UsageError:
            family = None
        if family != e.family:
            raise ManifestError(f"score task {score.task!r} is not a degradation of {e.family}")


def _types(e: ModelEntry) -> None:
    kinds: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "family": (str,),
        "licence": (str,),
        "summary": (str,),
        "provenance": (str,),
        "trained_on": (str,),
        "default_nfe": (int,),
        "file": (str, type(None)),
        "url": (str, type(None)),
        "sha256": (str, type(None)),
        "size": (int, type(None)),
        "preset": (str, type(None)),
        "cond_x1": (bool, type(None)),
        "beta_max": (int, float, type(None)),
        "ot_ode": (bool, type(None)),
    }
    for field, allowed in kinds.items():
        value = getattr(e, field)
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            raise ManifestError(f"{field} has the wrong type ({value!r})")
    if not all(isinstance(t, str) for t in e.tasks):
        raise ManifestError("tasks must be strings")
