"""Runtimes: what computes the network, behind one `denoise` callable (docs/design.md decision 1).

`load_model` is the one entry point. It picks the runtime by the file's suffix and the backend
asked for:
- a checkpoint (.safetensors) runs in PyTorch, or with `backend="onnxruntime"` is exported to
  ONNX once and cached (see `export.cached_onnx`): the cache key is the checkpoint's sha256,
  the precision and the i2sb and torch versions, so a changed file or upgrade exports afresh;
- an `i2sb export` file runs directly: .onnx in ONNX Runtime, .pt (TorchScript) and .pt2
  (torch.export) in PyTorch;
- `backend="auto"` is the fastest correct path: a checkpoint runs in ONNX Runtime on the CPU in
  fp32 when onnxruntime is installed, its restorations agree with PyTorch's and its network
  calls are faster (agreement.py, checked once per export: 1.5 to 1.8x eager fp32 for the tiny
  UNets, no faster for a patched one), PyTorch otherwise; a file runs by its suffix.
A checkpoint's start network (nets/starts.py) runs where the model runs: in ONNX Runtime it is
exported once and cached too (start_export.py), in PyTorch restoring/start.py loads it.
"""

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import ImageError, UsageError
from .agreement import LEVELS, SHARE, measure_check, read_check
from .metadata import default_tile
from .torch_backend import LoadedModel, load_torch_model, resolve_device

BACKENDS = ("auto", "torch", "onnxruntime")
TORCH_EXPORTS = (".pt", ".pt2")

__all__ = ["BACKENDS", "LoadedModel", "default_tile", "load_model", "resolve_device"]


def load_model(
    source: Path | str,
    device: str | torch.device = "auto",
    backend: str | None = None,
    *,
    precision: str | None = None,
    compile: bool = False,
    channels_last: bool | None = None,
    clip_denoise: bool | None = None,
    cache_dir: Path | None = None,
    trust_pickle: bool = False,
    on_step: Callable[[str], None] | None = None,
    sha256: str | None = None,
) -> LoadedModel:
    """A checkpoint or exported file as the sampler's model.

    `backend` None picks by suffix (.onnx: onnxruntime, anything else: torch); "auto" also
    runs a checkpoint in ONNX Runtime where that is faster (`_auto_backend`). `precision`
    None means fp32 for a checkpoint and the file's own for an export. `compile` and
    `channels_last` tune the torch backend on a checkpoint (see torch_backend.py). A .pt2
    export, which torch loads with pickle, is refused unless `trust_pickle` (exported.py).
    `on_step` is told of slow steps before they start (a checkpoint's ONNX export). `sha256`
    is the checkpoint's, when the caller has hashed it already (restoring/prepare.py): the
    ONNX export cache is keyed by it, and a large checkpoint is not read twice to get it.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if backend not in (None, *BACKENDS):
        raise UsageError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    spec = str(device)
    chosen = backend or ("onnxruntime" if suffix == ".onnx" else "torch")
    if chosen == "auto":
        chosen = _auto_backend(suffix, spec, precision, compile or channels_last is not None)
        if chosen == "onnxruntime" and suffix not in TORCH_EXPORTS and suffix != ".onnx":
            try:
                return _checkpoint_on_ort_if_same(
                    path, spec, clip_denoise, cache_dir, on_step, sha256
                )
            except (OSError, ImageError) as exc:
                # A read-only or full cache folder costs speed, never the restoration.
                model = load_torch_model(path, resolve_device(spec), clip_denoise=clip_denoise)
                note = (
                    f"running PyTorch: the ONNX export of {path.name} could not be kept in the "
                    f"cache ({_first_line(exc)}); --cache-dir DIR names a writable folder"
                )
                return dataclasses.replace(model, notes=(*model.notes, note))
    exported = suffix == ".onnx" or suffix in TORCH_EXPORTS
    if exported and (compile or channels_last is not None):
        raise UsageError("--compile and channels_last apply to checkpoints, not exported files")
    if suffix == ".onnx":
        if chosen != "onnxruntime":
            raise UsageError(f"{path} is an ONNX file: run it with --backend onnxruntime")
        from .onnx_backend import load_onnx_model
        from .start_export import with_onnx_start

        model = load_onnx_model(path, spec, clip_denoise=clip_denoise)
        model = with_onnx_start(model, spec, cache_dir, on_step)
    elif suffix in TORCH_EXPORTS:
        if chosen != "torch":
            raise UsageError(
                f"{path} is a torch export: run it with --backend torch, or export the "
                "checkpoint with i2sb export --format onnx"
            )
        from .exported import load_exported_model

        model = load_exported_model(
            path, resolve_device(spec), clip_denoise=clip_denoise, trust_pickle=trust_pickle
        )
    elif chosen == "torch":
        return load_torch_model(
            path,
            resolve_device(spec),
            clip_denoise=clip_denoise,
            precision=precision or "fp32",
            channels_last=channels_last,
            compile=compile,
        )
    else:
        if on_step is not None:
            on_step(f"running {path.name} in ONNX Runtime (exported to ONNX once, then cached)")
        return _checkpoint_on_ort(
            path, spec, precision, compile, clip_denoise, cache_dir, sha256, on_step
        )
    if precision is not None and precision != model.precision:
        raise UsageError(
            f"{path} holds {model.precision} weights; --precision applies to checkpoints "
            "(export again with or without --fp16)"
        )
    return model


def _auto_backend(suffix: str, device: str, precision: str | None, torch_options: bool) -> str:
    """ONNX Runtime for a checkpoint on the CPU in fp32 when it is installed, else torch; an
    exported file runs where its suffix says."""
    if suffix == ".onnx":
        return "onnxruntime"
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if (
        suffix in TORCH_EXPORTS
        or not on_cpu
        or precision not in (None, "fp32")  # bf16 is a torch precision
        or torch_options  # --compile and channels_last tune the torch backend
        or importlib.util.find_spec("onnxruntime") is None
    ):
        return "torch"
    return "onnxruntime"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checkpoint_on_ort_if_same(
    path: Path,
    device: str,
    clip_denoise: bool | None,
    cache_dir: Path | None,
    on_step: Callable[[str], None] | None,
    sha256: str | None = None,
) -> LoadedModel:
    """`--backend auto`'s pick for a checkpoint on the CPU: ONNX Runtime where it restores the
    same pictures as PyTorch and runs the network faster (agreement.py; measured once per
    export and recorded beside it), else PyTorch, with a note saying why."""
    from ..models.checkpoint import read_meta
    from .export import cached_onnx
    from .onnx_backend import load_onnx_model
    from .start_export import with_onnx_start

    read_meta(path)  # a file that is no checkpoint fails here, before any step is announced
    if on_step is not None:
        on_step(f"preparing {path.name} for ONNX Runtime (its export and a check: once, cached)")
    onnx_path, exported = cached_onnx(path, fp16=False, cache_dir=cache_dir, sha256=sha256)
    made = (exported,) if exported else ()
    record = onnx_path.with_suffix(".agreement.json")
    check = read_check(record)
    candidate = reference = None
    if check is None:
        if on_step is not None:
            on_step(
                "checking once that ONNX Runtime restores the same pictures as PyTorch, and faster"
            )
        candidate = load_onnx_model(onnx_path, device, clip_denoise=clip_denoise)
        reference = load_torch_model(path, resolve_device(device), clip_denoise=clip_denoise)
        check = measure_check(record, reference, candidate)
    if check.use_onnxruntime:
        if candidate is None:
            candidate = load_onnx_model(onnx_path, device, clip_denoise=clip_denoise)
        candidate = dataclasses.replace(candidate, notes=(*made, *candidate.notes))
        return with_onnx_start(candidate, device, cache_dir, on_step)
    fallback = reference
    if fallback is None:
        fallback = load_torch_model(path, resolve_device(device), clip_denoise=clip_denoise)
    agreement = check.agreement
    if agreement.ok:
        note = (
            f"running PyTorch fp32: faster than ONNX Runtime for {path.name} "
            f"({check.torch_ms:.0f} against {check.onnxruntime_ms:.0f} ms a network call)"
        )
    else:
        note = (
            f"ONNX Runtime and PyTorch disagree on {path.name} ({100 * agreement.share:.2f}% of "
            f"pixels within {LEVELS} levels at {agreement.settings}, under {100 * SHARE:g}%): "
            "running PyTorch fp32"
        )
    return dataclasses.replace(fallback, notes=(*made, *fallback.notes, note))


def _checkpoint_on_ort(
    path: Path,
    device: str,
    precision: str | None,
    compile: bool,
    clip_denoise: bool | None,
    cache_dir: Path | None,
    sha256: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> LoadedModel:
    """The checkpoint's cached ONNX export in ONNX Runtime, with its start network there too."""
    if compile:
        raise UsageError("--compile is torch.compile: it applies to --backend torch only")
    if precision not in (None, "fp32", "fp16"):
        raise UsageError(f"--precision {precision}: ONNX Runtime runs fp32 or fp16 exports")
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if precision == "fp16" and not on_cuda:
        raise UsageError("--precision fp16 needs a CUDA GPU: add --device cuda, or use fp32")
    from .export import cached_onnx
    from .onnx_backend import load_onnx_model
    from .start_export import with_onnx_start

    onnx_path, note = cached_onnx(
        path, fp16=precision == "fp16", cache_dir=cache_dir, sha256=sha256
    )
    model = load_onnx_model(onnx_path, device, clip_denoise=clip_denoise)
    notes = (note, *model.notes) if note else model.notes
    return with_onnx_start(dataclasses.replace(model, notes=notes), device, cache_dir, on_step)
