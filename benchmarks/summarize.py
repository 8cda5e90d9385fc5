"""Turn `i2sb benchmark` JSON reports into one Markdown table (for README and benchmarks/*.md).

    python benchmarks/summarize.py benchmarks/cpu-*.json > benchmarks/cpu.md

Each report's rows are listed in order, with the machine line of the first report and any
--compare ratios at the end.
"""

import argparse
import json
import sys
from pathlib import Path

COLUMNS = (
    "config",
    "device",
    "size",
    "batch",
    "NFE",
    "ms/NFE median",
    "ms/NFE p90",
    "s/image median",
    "s/image p90",
    "images/s",
    "outside network",
    "peak RSS MiB",
    "CUDA peak MiB",
)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def row(result: dict) -> list[str]:
    return [
        result["config"],
        result["device"],
        f"{result['height']}x{result['width']}",
        str(result["batch"]),
        str(result["nfe"]),
        f"{result['ms_per_nfe_median']:.1f}",
        f"{result['ms_per_nfe_p90']:.1f}",
        f"{result['s_per_image_median']:.3f}",
        f"{result['s_per_image_p90']:.3f}",
        f"{result['images_per_s']:.3g}",
        f"{100 * result['outside_network_fraction']:.2f}%",
        _mib(result["peak_rss_bytes"]),
        _mib(result["cuda_peak_bytes"]),
    ]


def machine_line(machine: dict) -> str:
    gpu = f", {machine['gpu']} (CUDA {machine['cuda']})" if machine.get("gpu") else ""
    ort = f", onnxruntime {machine['onnxruntime']}" if machine.get("onnxruntime") else ""
    return (
        f"{machine['cpu']}, {machine['cpu_count']} cores, {machine['torch_threads']} torch "
        f"threads{gpu}; torch {machine['torch']}{ort}; i2sb {machine['i2sb']}; {machine['when']}"
    )


def summarize(reports: list[tuple[Path, dict]]) -> str:
    lines = [f"Machine: {machine_line(reports[0][1]['machine'])}", ""]
    lines.append("| model | " + " | ".join(COLUMNS) + " |")
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    ratios = []
    for _, report in reports:
        for result in report["results"]:
            lines.append(f"| {report['model']} | " + " | ".join(row(result)) + " |")
        ratios += report.get("comparison") or []
    for ratio in ratios:
        lines.append("")
        lines.append(
            f"{ratio['case']}: {ratio['b']} at {ratio['b_over_a']:.2f}x the throughput of "
            f"{ratio['a']} (alternating runs)"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON files from i2sb benchmark")
    args = parser.parse_args()
    reports = [(path, json.loads(path.read_text())) for path in args.reports if path.is_file()]
    if not reports:
        sys.exit("no report found")
    sys.stdout.write(summarize(reports))


if __name__ == "__main__":
    main()
