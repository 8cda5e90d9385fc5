"""Score restoration models on held-out photos, the way a user would: `i2sb degrade`, then
`i2sb restore`, then `i2sb evaluate`, for each degradation, and print one table.

    python benchmarks/evaluate_models.py data/val -o eval                # the bundled models
    python benchmarks/evaluate_models.py data/val -o eval --task jpeg-10 --task jpeg-real-10 \
        --model runs/jpeg-tiny.safetensors --nfe 1 2 5                   # a candidate, by NFE
    python benchmarks/evaluate_models.py data/val -o eval --task jpeg-10 --model M --nfe 10 \
        --detail 1 0.6 0.4                                             # and by restore --detail
    python benchmarks/evaluate_models.py data/val -o eval --task sr4x-bicubic --model M \
        --nfe 1 2 5 10 --sampler stochastic ot-ode                     # and by sampler
    python benchmarks/evaluate_models.py data/val -o eval --task blur-blind --ensemble 1 2 4
                                                                       # and by restore --ensemble

Each degradation restores with the task `degrade` records for it (jpeg-real-10 as `--task jpeg`,
blur-gauss-plain as `--task deblur`), so the bundled model of its family answers unless --model
names one. The perceptual column needs the `perceptual` extra (see README). Scores go to
OUT/scores.json as well; degraded folders are reused when they exist (same seed, same pictures).
"""

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

# The paper's operators and the real-world variants that the bundled models must restore.
DEFAULT_TASKS = (
    "sr4x-bicubic",
    "blur-gauss",
    "blur-gauss-plain",
    "jpeg-10",
    "jpeg-real-10",
    "inpaint-freeform1020",
)
METRICS = ("psnr", "ssim", "stlpips")


def i2sb(*args: str) -> str:
    """Run the CLI of this Python environment; its stdout, or exit with its error."""
    command = [sys.executable, "-m", "i2sb_cli", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


def evaluate(folder: Path, restored: Path) -> list[dict]:
    """`i2sb evaluate FOLDER RESTORED --json`'s lines, the means last. A partial failure (exit
    1: some pictures could not be scored) keeps the others' scores, and its lines naming the
    pictures go to stderr with evaluate's notes (a metric a picture is too small for)."""
    command = [sys.executable, "-m", "i2sb_cli", "evaluate", str(folder), str(restored), "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    if done.returncode not in (0, 1) or not lines or lines[-1]["kind"] != "mean":
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    for line in done.stderr.splitlines():
        if line.startswith(("failed ", "note: ")):
            print(f"{folder.name}: {line}", file=sys.stderr)
    return lines


def degraded_folder(photos: Path, out: Path, task: str, seed: int) -> Path:
    folder = out / task
    if not (folder / "manifest.jsonl").is_file():
        i2sb("degrade", str(photos), "-o", str(folder), "--task", task, "--seed", str(seed))
    return folder


def score(
    folder: Path,
    model: str | None,
    nfe: int | None,
    detail: float | None,
    sampler: str | None,
    seed: int,
    ensemble: int | None = None,
) -> dict:
    """Restore `folder`/degraded and return evaluate's means for it."""
    first = json.loads((folder / "manifest.jsonl").read_text().splitlines()[0])
    label = f"{Path(model).stem if model else 'bundled'}-nfe{nfe or 'default'}"
    if detail is not None:
        label += f"-detail{detail:g}"
    if sampler is not None:
        label += f"-{sampler}"
    if ensemble is not None:
        label += f"-ensemble{ensemble}"
    restored = folder.parent / f"{folder.name}-{label}"
    args = ["restore", str(folder / "degraded"), "-o", str(restored), "--overwrite"]
    args += ["--task", first["restore_task"], "--seed", str(seed)]
    if first.get("mask"):
        args += ["--mask", str(folder / "masks")]
    if model:
        args += ["--model", model]
    if nfe:
        args += ["--nfe", str(nfe)]
    if detail is not None:
        args += ["--detail", str(detail)]
    if sampler is not None:
        args += [f"--{sampler}"]
    if ensemble is not None:
        args += ["--ensemble", str(ensemble)]
    i2sb(*args)
    records = evaluate(folder, restored)
    # records[0] is the means where no picture could be scored.
    baseline = records[0].get("baseline", "baseline")
    return {"restored": str(restored), "baseline_name": baseline, **records[-1]}


def table(rows: list[dict]) -> str:
    columns = ("task", "NFE", "sampler", "detail", "ensemble", "method", "PSNR", "SSIM")
    columns += ("ST-LPIPS",)
    header = f"| {' | '.join(columns)} |\n" + "|---" * len(columns) + "|"
    lines = [header]
    for row in rows:
        means = row["scores"]
        for method in ("restored", "baseline", "degraded"):
            cells = [
                f"{means[m][method]:.{2 if m == 'psnr' else 4}f}"
                if means.get(m, {}).get(method) is not None
                else "-"
                for m in METRICS
            ]
            name = means["baseline_name"] if method == "baseline" else method
            setting = f"| {row['task']} | {row['nfe']} | {row['sampler']} | {row['detail']} |"
            setting += f" {row.get('ensemble', 'default')} |"
            lines.append(f"{setting} {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="held-out clean photos (data/val)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval"))
    parser.add_argument("--task", action="append", help="degradations (default: all six)")
    parser.add_argument("--model", help="checkpoint to score instead of the bundled model")
    parser.add_argument("--nfe", type=int, nargs="*", default=[0], help="0: the model's own")
    parser.add_argument(
        "--detail", type=float, nargs="*", default=[None], help="restore --detail values"
    )
    parser.add_argument(
        "--sampler", nargs="*", choices=["stochastic", "ot-ode"], default=[None],
        help="restore --stochastic / --ot-ode (default: the model's)",
    )  # fmt: skip
    parser.add_argument(
        "--ensemble", type=int, nargs="*", default=[None], help="restore --ensemble values"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for task in args.task or DEFAULT_TASKS:
        folder = degraded_folder(args.photos, args.output, task, args.seed)
        settings = itertools.product(args.nfe, args.detail, args.sampler, args.ensemble)
        for nfe, detail, sampler, ensemble in settings:
            scores = score(folder, args.model, nfe or None, detail, sampler, args.seed, ensemble)
            shown = "default" if detail is None else detail
            setting = {"nfe": nfe or "default", "detail": shown, "sampler": sampler or "default"}
            setting["ensemble"] = ensemble or "default"
            rows.append({"task": task, **setting, "scores": scores})
            print("\n".join(table(rows[-1:]).splitlines()[-3:]), file=sys.stderr, flush=True)
    (args.output / "scores.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))
    for row in rows:  # a capped PSNR of 100 dB outweighs the rest of a mean: say where
        for method, count in row["scores"].get("identical", {}).items():
            print(
                f"note: {row['task']}: {count} of {row['scores']['count']} {method} pictures "
                "are identical to their originals (PSNR 100 dB in the mean)"
            )
        # A metric some pictures are too small for: its means count only the others.
        for metric, count in row["scores"].get("counts", {}).items():
            if count < row["scores"]["count"]:
                print(
                    f"note: {row['task']}: the {metric} means count {count} of "
                    f"{row['scores']['count']} pictures"
                )
        if row["scores"]["failed"]:
            print(f"note: {row['task']}: {row['scores']['failed']} pictures failed to score")


if __name__ == "__main__":
    main()
