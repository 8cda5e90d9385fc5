"""What a benchmark reads about the process and the machine: peak memory and a description.

Peak RSS is the kernel's high-water mark, which Linux lets a process reset (write 5 to
/proc/self/clear_refs) so that each measured case gets its own peak; elsewhere it is the
process's lifetime peak, and the window says so. CUDA peaks are torch's allocator's, so they
do not see memory that ONNX Runtime allocates on the GPU itself.
"""

import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .. import __version__


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """The peak resident set in bytes, or None where the platform does not say."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


@contextmanager
def memory_window(device: torch.device) -> Iterator[dict]:
    """Peak RSS (and torch's CUDA peak) over the block, in the dict it yields: rss, scoped
    (whether the peak is the block's own) and cuda."""
    window: dict = {}
    scoped = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield window
    window["rss"] = peak_rss_bytes()
    window["scoped"] = scoped
    if device.type == "cuda":
        window["cuda"] = torch.cuda.max_memory_allocated(device)


def machine_info() -> dict:
    """What the figures depend on: CPU, threads, GPU and library versions."""
    info = {
        "i2sb": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "memory_bytes": _total_memory(),
        # Other work on the machine skews the figures; the load says whether there was any.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "onnxruntime": None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
