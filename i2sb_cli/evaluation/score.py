"""Scoring restorations against their clean originals (`i2sb evaluate`).

A folder written by `i2sb degrade` names, in its manifest.jsonl, each degraded picture's clean
original, task, mask and size. Each restoration (found under the restored folder by the
record's `name`, as `i2sb restore DIR/degraded -o RESTORED` writes it) is scored against its
original beside two references computed here: the task's classical baseline (`baselines.py`)
and the degraded input itself (for sr4x the paper's nearest-upsampled x1, for inpainting the
picture with its white hole). Super-resolution outputs, 4 ceil(H/4) x 4 ceil(W/4), are cropped to
the clean size H x W. Metrics are those of `metrics.py`, on the pixels as the files hold them; a
metric not defined for a picture's size is None for it (with the reason), and the means count
only the pictures that have it.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..degrade import get_operator, nearest_upsample4
from ..degrade.baselines import baseline_name, classical_baseline, low_resolution
from ..errors import I2SBError, ImageError, UsageError
from ..pictures.files import read_image, read_mask
from ..pictures.inputs import PICTURE_EXTENSIONS
from .metrics import PSNR_CAP, MetricUnavailable, Perceptual, psnr, ssim

MANIFEST = "manifest.jsonl"
METHODS = ("restored", "baseline", "degraded")
PERCEPTUAL = "stlpips"


@dataclass(frozen=True)
class Record:
    """One pair of a degrade manifest, with its paths resolved."""

    name: str
    task: str
    clean: Path
    degraded: Path
    mask: Path | None
    size: tuple[int, int]
    upsampled: bool


@dataclass(frozen=True)
class Scores:
    """The metrics of one picture: scores[metric][method], methods as in `METHODS`; each
    method None for a metric in `unavailable`."""

    name: str
    task: str
    baseline: str
    scores: dict[str, dict[str, float | None]]
    unavailable: dict[str, str] = field(default_factory=dict)
    """The metrics not defined for this picture, each with the reason."""

    def to_json(self) -> dict[str, object]:
        return {
            "kind": "image",
            "name": self.name,
            "task": self.task,
            "baseline": self.baseline,
            **_rounded(self.scores),
            "unavailable": dict(self.unavailable),
        }


@dataclass(frozen=True)
class Failure:
    name: str
    reason: str


@dataclass
class Summary:
    """Means over the scored pictures, each metric's over those that have it."""

    count: int = 0
    failed: int = 0
    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """The pictures that have each metric (fewer than `count` where it is not defined for
    some)."""
    identical: dict[str, int] = field(default_factory=dict)
    """Pictures of each method identical to their originals: their PSNR is PSNR_CAP, which
    lifts the mean (a blind blur leaves one picture in ten sharp)."""

    def add(self, row: Scores) -> None:
        self.count += 1
        for metric, values in row.scores.items():
            bucket = self.sums.setdefault(metric, {})
            self.counts.setdefault(metric, 0)
            if metric in row.unavailable:
                continue
            self.counts[metric] += 1
            for method, value in values.items():
                bucket[method] = bucket.get(method, 0.0) + value
        for method, value in row.scores.get("psnr", {}).items():
            if value == PSNR_CAP:
                self.identical[method] = self.identical.get(method, 0) + 1

    def means(self) -> dict[str, dict[str, float | None]]:
        """Each metric's means over the pictures that have it; None where none has it."""
        return {
            metric: {method: total / self.counts[metric] for method, total in values.items()}
            if self.counts[metric]
            else dict.fromkeys(METHODS)
            for metric, values in self.sums.items()
        }

    def to_json(self) -> dict[str, object]:
        return {
            "kind": "mean",
            "count": self.count,
            "failed": self.failed,
            **_rounded(self.means()),
            "counts": dict(self.counts),
            "identical": dict(self.identical),
        }


def _rounded(scores: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    return {
        metric: {k: None if v is None else round(v, 5) for k, v in values.items()}
        for metric, values in scores.items()
    }


def read_manifest(folder: Path) -> list[Record]:
    """The records of `folder/manifest.jsonl`; a UsageError when it is missing or malformed."""
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(f"{path} not found: give the folder `i2sb degrade -o` wrote")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            records.append(
                Record(
                    name=body["name"],
                    task=body["task"],
                    clean=folder / body["clean"],
                    degraded=folder / body["degraded"],
                    mask=folder / body["mask"] if body.get("mask") else None,
                    size=(int(body["size"][0]), int(body["size"][1])),
                    upsampled=body.get("form") == "upsampled",
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise UsageError(f"{path}:{number}: not a degrade manifest record ({exc})") from None
    if not records:
        raise UsageError(f"{path} lists no pictures")
    return records


def find_restored(folder: Path, name: str) -> Path | None:
    """The restoration of manifest picture `name`: `folder/name`, or the same stem with another
    picture extension, or restore's default `<stem>_restored` naming."""
    relative = Path(name)
    for stem in (relative.stem, f"{relative.stem}_restored"):
        for ext in (relative.suffix, *sorted(PICTURE_EXTENSIONS)):
            candidate = folder / relative.parent / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None


def _degraded_as_seen(record: Record, degraded: Tensor) -> Tensor:
    """The degraded input at the clean size, as a restoration's competitor."""
    if get_operator(record.task).family == "sr4x":
        small = low_resolution(degraded, upsampled=record.upsampled)
        return nearest_upsample4(small)[..., : record.size[0], : record.size[1]]
    return degraded


def score(record: Record, restored_path: Path, perceptual: Perceptual | None) -> Scores:
    """Score one restoration, its task's baseline and its degraded input."""
    clean = read_image(record.clean).pixels
    if tuple(clean.shape[-2:]) != record.size:
        raise ImageError(f"{record.clean} is not the {record.size} picture the manifest names")
    degraded = read_image(record.degraded).pixels
    mask = read_mask(record.mask, record.size) if record.mask is not None else None
    restored = read_image(restored_path).pixels
    height, width = record.size
    if restored.shape[-2] < height or restored.shape[-1] < width:
        got = f"{restored.shape[-1]}x{restored.shape[-2]}"
        raise ImageError(f"{restored_path} is {got}, smaller than its original ({width}x{height})")
    candidates = {
        "restored": restored[..., :height, :width],
        "baseline": classical_baseline(
            record.task, degraded, record.size, mask=mask, upsampled=record.upsampled
        ),
        "degraded": _degraded_as_seen(record, degraded),
    }
    metrics = {"psnr": psnr, "ssim": ssim}
    if perceptual is not None:
        metrics[PERCEPTUAL] = perceptual
    scores: dict[str, dict[str, float | None]] = {}
    unavailable = {}
    for metric, fn in metrics.items():
        try:
            scores[metric] = {method: fn(picture, clean) for method, picture in candidates.items()}
        except MetricUnavailable as exc:  # the picture's size, checked before any work
            scores[metric] = dict.fromkeys(METHODS)
            unavailable[metric] = str(exc)
    return Scores(record.name, record.task, baseline_name(record.task), scores, unavailable)


def evaluate(
    degrade_dir: Path, restored_dir: Path, perceptual: Perceptual | None
) -> Iterator[Scores | Failure]:
    """Score every picture of a degrade folder; a missing or unreadable one, or one whose
    scoring fails in any other way, is a Failure, and the others are scored."""
    if not restored_dir.is_dir():
        raise UsageError(f"{restored_dir} is not a folder of restored pictures")
    for record in read_manifest(degrade_dir):
        restored = find_restored(restored_dir, record.name)
        if restored is None:
            yield Failure(record.name, f"no restoration of it in {restored_dir}")
            continue
        try:
            yield score(record, restored, perceptual)
        except I2SBError as exc:
            yield Failure(record.name, str(exc))
        except Exception as exc:  # a library failing on one picture must not end the folder
            reason = type(exc).__name__
            if str(exc).strip():
                reason += f": {str(exc).strip().splitlines()[0]}"
            yield Failure(record.name, f"scoring failed ({reason})")
