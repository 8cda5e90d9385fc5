"""Our checkpoint format: safetensors plus one JSON metadata block (docs/design.md decision 5).

The header's metadata holds the key "i2sb" with everything a sampler needs besides the weights:
the network's architecture config, the task, the schedule options (beta_max, interval, t0, t1),
ot_ode, cond_x1, the condition, the default NFE, the licence and the provenance. safetensors
cannot execute code, so loading an untrusted file is safe; a wrong or corrupt file is a
`CheckpointError`.
"""

import json
import math
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..bridge.ensemble import COPIES
from ..degrade import get_operator
from ..degrade.tasks import FAMILIES, TASKS, family_of
from ..errors import CheckpointError, UsageError
from ..nets.adm import ADMUNet, UNetConfig
from ..nets.starts import START_NETWORKS
from .condition import CONDITIONS, UNKNOWN_JPEG_QUALITY, network_cond
from .quantize import dequantize, quantize_int8

FORMAT = "i2sb-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "i2sb"
MAX_INTERVAL = 100_000
"""The most steps a schedule may have: a lying checkpoint must not make restore allocate a
schedule of a trillion entries."""
STARTS = ("degraded", "classical", *START_NETWORKS)
"""x1's forms: the paper's, the classical restoration, or a start network's upscale."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself besides its weights."""

    name: str
    config: UNetConfig
    task: str
    beta_max: float
    ot_ode: bool
    cond_x1: bool
    interval: int = 1000
    t0: float = 1e-4
    t1: float = 1.0
    default_nfe: int = 10
    default_detail: float = 1.0
    """The sampler's `detail` unless the user gives one: 1 returns the bridge's sample, less
    mixes in its one-step estimate (bridge.sample), chosen by measurement like default_nfe."""
    default_ensemble: int = 1
    """How many mirror images each network call averages unless the user says (1, 2 or 4;
    bridge.ensemble), chosen by measurement like default_nfe."""
    clip_denoise: bool = False
    start: str = "degraded"
    """How x1 is formed: "degraded", the paper's form (restoring/start.make_x1); "classical", the
    classical restoration of the degraded picture (baselines.classical_baseline), which moves
    the bridge's start closer to x0 and makes an untrained network (zero output) as good as
    the baseline; or a start network's name (nets/starts.py, sr4x only): its upscale."""
    degradation: str = ""
    """For start "classical": the degradation (a `degrade` task name) that a family request
    such as `--task deblur` is taken to be; a paper task name given to restore overrides it."""
    condition: str = ""
    """What the network is told besides x1 (models/condition.py): "" nothing, "jpeg-quality"
    the picture's JPEG quality (jpeg family only)."""
    licence: str = "unknown"
    provenance: str = ""
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        body = asdict(self)
        body["config"] = self.config.to_dict()
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **body}, indent=1)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> "CheckpointMeta":
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"{source}: the i2sb metadata is not valid JSON ({exc})"
            ) from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CheckpointError(f"{source}: not an i2sb checkpoint (no '{FORMAT}' metadata)")
        version = body.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format version {version} is not supported "
                f"(this i2sb reads version {FORMAT_VERSION}); upgrade i2sb"
            )
        body.pop("format")
        try:
            body["config"] = UNetConfig.from_dict(body["config"])
            meta = cls(**body)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid i2sb metadata ({exc})") from None
        meta.validate(source)
        return meta

    def validate(self, source: str) -> None:
        problem = self._type_problem()
        if problem:
            raise CheckpointError(f"{source}: invalid i2sb metadata ({problem})")
        checks = [
            (self.task in TASKS or self.task in FAMILIES, f"unknown task {self.task!r}"),
            (self.beta_max > 0, f"beta_max must be positive, not {self.beta_max}"),
            (math.isfinite(self.beta_max), f"beta_max must be finite, not {self.beta_max}"),
            (
                2 <= self.interval <= MAX_INTERVAL,
                f"interval must be 2..{MAX_INTERVAL:,} (official checkpoints: 1000), "
                f"not {self.interval}",
            ),
            (
                0 <= self.t0 < self.t1 <= 1,
                f"t0 {self.t0} and t1 {self.t1} must satisfy 0 <= t0 < t1 <= 1",
            ),
            (
                0 < self.default_nfe < self.interval,
                f"default_nfe {self.default_nfe} is out of range",
            ),
            (
                0 <= self.default_detail <= 1,
                f"default_detail must be between 0 and 1, not {self.default_detail}",
            ),
            (
                self.default_ensemble in COPIES,
                f"default_ensemble must be one of {COPIES}, not {self.default_ensemble}",
            ),
            (self.start in STARTS, f"start must be one of {', '.join(STARTS)}, not {self.start!r}"),
            (
                self.start != "classical" or self._degradation_ok(),
                f"start 'classical' needs a degradation of the {self.task} family, "
                f"not {self.degradation!r}",
            ),
            (
                self.start not in START_NETWORKS or self._family() == "sr4x",
                f"start {self.start!r} upscales 4x: it is for the sr4x family, not {self.task}",
            ),
            (
                self.config.image_size >= self.config.size_multiple,
                f"image_size {self.config.image_size} is smaller than the network's size "
                f"multiple {self.config.size_multiple}: no tile could run it",
            ),
            (
                self.condition in CONDITIONS,
                f"condition must be one of {', '.join(map(repr, CONDITIONS))}, "
                f"not {self.condition!r}",
            ),
            (
                not self.condition or (self.cond_x1 and self._family() == "jpeg"),
                f"condition {self.condition!r} is for a cond_x1 network of the jpeg family",
            ),
            (
                self.config.in_channels == self.expected_inputs(),
                f"cond_x1={self.cond_x1} and condition {self.condition!r} need "
                f"{self.expected_inputs()} network inputs, not {self.config.in_channels}",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise CheckpointError(f"{source}: {problem}")

    def network_cond(self, x1: Tensor, jpeg_quality: Tensor | None = None) -> Tensor | None:
        """The network's cond input for x1 [B, 3, H, W] (models/condition.py). A network told
        the JPEG quality is told `jpeg_quality` ([B]), else UNKNOWN_JPEG_QUALITY (for checks
        and timings; restore says each picture's)."""
        if self.condition and jpeg_quality is None:
            jpeg_quality = torch.full((x1.shape[0],), float(UNKNOWN_JPEG_QUALITY))
        return network_cond(
            x1, cond_x1=self.cond_x1, condition=self.condition, jpeg_quality=jpeg_quality
        )

    def expected_inputs(self) -> int:
        """The network's input channels: x_t's, x1's when cond_x1, then the condition's."""
        planes = self.config.out_channels * (2 if self.cond_x1 else 1)
        return planes + CONDITIONS.get(self.condition, 0)

    def _family(self) -> str | None:
        try:
            return family_of(self.task)
        except UsageError:
            return None

    def _degradation_ok(self) -> bool:
        try:
            operator = get_operator(self.degradation)
            family = family_of(self.task)  # an unknown task is reported by its own check
        except UsageError:
            return False
        return operator.family == family and not operator.needs_mask

    def _type_problem(self) -> str | None:
        """What has the wrong type (JSON can hold anything), or None; checked before values."""
        kinds = {
            "name": str,
            "task": str,
            "beta_max": float,
            "ot_ode": bool,
            "cond_x1": bool,
            "interval": int,
            "t0": float,
            "t1": float,
            "default_nfe": int,
            "default_detail": float,
            "default_ensemble": int,
            "clip_denoise": bool,
            "start": str,
            "degradation": str,
            "condition": str,
            "licence": str,
            "provenance": str,
            "training": dict,
        }
        for name, kind in kinds.items():
            value = getattr(self, name)
            if kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, kind)
            if not ok:
                return f"{name} must be {kind.__name__}, not {value!r}"
        return None


def save_checkpoint(
    path: Path,
    state_dict: dict[str, Tensor],
    meta: CheckpointMeta,
    *,
    dtype: torch.dtype | None = None,
) -> None:
    """Write weights and metadata atomically (temporary file in the same folder, then rename).

    `dtype` (e.g. torch.float16) stores the floating-point tensors smaller; torch.int8 stores
    the weights in 8 bits with a scale per output channel (quantize.py). Loading restores
    float32.
    """
    meta.validate(str(path))
    if dtype == torch.int8:
        state_dict = quantize_int8(state_dict)
        dtype = None
    tensors = {
        key: (t.to(dtype) if dtype is not None and t.is_floating_point() else t)
        .detach()
        .contiguous()
        .cpu()
        for key, t in state_dict.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # A checkpoint is meant to be shared (and shipped in the wheel): give it 0o666 less the
    # umask, as pictures/files.py does for pictures, not the private 0o600 that mkstemp and
    # safetensors' own save_file give. os.open applies the umask; the mode is read back.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    os.close(os.open(tmp, flags, 0o666))
    try:
        mode = tmp.stat().st_mode & 0o777
        save_file(tensors, str(tmp), metadata={METADATA_KEY: meta.to_json()})
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_meta(path: Path) -> CheckpointMeta:
    """Read and validate a checkpoint's metadata without loading its tensors."""
    with _open(path) as handle:
        metadata = handle.metadata() or {}
    if METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{path}: safetensors file without i2sb metadata; official I2SB checkpoints "
            "must be converted first (i2sb models import)"
        )
    return CheckpointMeta.from_json(metadata[METADATA_KEY], source=str(path))


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu"
) -> tuple[ADMUNet, CheckpointMeta]:
    """Build the network a checkpoint describes, load its weights (float32), and return both."""
    meta = read_meta(path)
    with _open(path) as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
        net = _network_for(path, meta, shapes)
        try:
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except SafetensorError as exc:
            raise CheckpointError(
                f"{path}: corrupt tensor data ({exc}); download it again"
            ) from None
    try:
        state = dequantize(stored)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}; the file is damaged or was edited") from None
    # A NaN or inf weight makes every picture a flat grey "restoration": refuse it here.
    broken = next((key for key, tensor in state.items() if not tensor.isfinite().all()), None)
    if broken is not None:
        raise CheckpointError(
            f"{path}: weight {broken} holds NaN or infinite values; the checkpoint is damaged "
            "(train or download it again)"
        )
    missing, unexpected = _key_mismatch(net, state)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the {meta.name!r} architecture "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:2]})"
        )
    try:
        # The network was built on the meta device (no memory, no random initialisation):
        # the checkpoint's tensors become its parameters as they are.
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"{path}: tensor shapes do not match the architecture ({first})"
        ) from None
    return net.to(device).eval(), meta


def _network_for(path: Path, meta: CheckpointMeta, shapes: dict[str, tuple[int, ...]]) -> ADMUNet:
    """The metadata's network on the meta device (no memory), checked against the tensor
    shapes of the file's header before any tensor is read: metadata that lies (a network
    thousands of blocks deep, 8192 channels) would otherwise cost minutes and gigabytes before
    the weights could disagree. First the count of input blocks and the first layer's width,
    which bound the network's size; then every shape."""
    config = meta.config
    blocks = {int(key.split(".")[1]) for key in shapes if key.startswith("input_blocks.")}
    expected = len(config.channel_mult) * (config.num_res_blocks + 1)
    first = shapes.get("input_blocks.0.0.weight", ())
    if len(blocks) != expected or first[:1] != (config.model_channels,):
        raise CheckpointError(
            f"{path}: the metadata does not match the weights ({expected} input blocks of "
            f"{config.model_channels} channels described, {len(blocks)} blocks of "
            f"{first[0] if first else 0} stored); the file is damaged or was edited"
        )
    with torch.device("meta"):
        net = ADMUNet(config)
    for key, tensor in net.state_dict().items():
        if key in shapes and tuple(tensor.shape) != shapes[key]:
            raise CheckpointError(
                f"{path}: tensor {key} is {list(shapes[key])}, the metadata's network needs "
                f"{list(tensor.shape)}; the file is damaged or was edited"
            )
    return net


def _key_mismatch(net: torch.nn.Module, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    expected = set(net.state_dict())
    return sorted(expected - state.keys()), sorted(state.keys() - expected)


def _open(path: Path):
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({exc}); "
            "is the file truncated or another format?"
        ) from None
