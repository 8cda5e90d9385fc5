"""Peak resident memory of `i2sb restore` on a 4096x4096 output, per bundled model.

Each family restores one synthetic picture whose output is 4096x4096 (sr4x: from a 1024x1024
input) at NFE 1, in its own process; the figure is that process's peak RSS as the kernel counts
it (`os.wait4`), model, picture, classical start, tiles and output encoding included.

    python benchmarks/peak_memory.py [--side 4096] [--backend default --backend torch]
        [--model NAME ...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from restore_512 import picture, selected_models  # benchmarks/ is first on sys.path


def peak_rss(args: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of `i2sb ARGS` in a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "i2sb_cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"i2sb {' '.join(args)} failed:\n{child.stderr.read().decode().strip()}")
    return usage.ru_maxrss * 1024, seconds  # Linux reports kilobytes


def restore_args(source: Path, extra: list[str], model: str, backend: str) -> list[str]:
    command = ["restore", str(source), "-o", str(source.with_name("out.png")), "--overwrite"]
    command += ["--model", model, "--nfe", "1", *extra]
    return command if backend == "default" else [*command, "--backend", backend]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--backend", action="append", choices=["default", "torch", "onnxruntime"])
    parser.add_argument("--model", action="append", help="bundled models to measure (default: all)")
    args = parser.parse_args()
    entries = selected_models(args.model)
    print("| model | backend | output | NFE | peak RSS GB | wall s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        folder, small_folder = Path(workdir), Path(workdir) / "small"
        small_folder.mkdir()
        for entry in entries:
            source, extra = picture(folder, entry.family, args.side)
            for backend in args.backend or ["default"]:
                if backend != "torch":
                    # ONNX Runtime's export and agreement check, made once and cached, are not
                    # what this measures: a small picture makes them first.
                    small, small_extra = picture(small_folder, entry.family, 256)
                    peak_rss(restore_args(small, small_extra, entry.name, backend))
                rss, seconds = peak_rss(restore_args(source, extra, entry.name, backend))
                print(
                    f"| {entry.name} | {backend} | {args.side}x{args.side} | 1 | "
                    f"{rss / 1e9:.2f} | {seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
