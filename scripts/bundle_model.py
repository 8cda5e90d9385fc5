"""Ship a trained checkpoint as a bundled model: copy it into weights/ under its model name,
with the default NFE and detail chosen by measurement, in float16 (or 8 bits, --int8), and pin
it in models.json.

    python scripts/bundle_model.py runs/sr4x-p4.safetensors --name sr4x-p4 \
        --default-nfe 10 --default-detail 0.5 --task sr4x-bicubic --summary "4x SR ..."

The entry replaces one of the same name (its place kept) or goes after the last bundled entry,
so a family's first bundled model stays its default; --family-default puts it first instead.
Re-bundling a model (a new default, further training) keeps what was written by hand in its
previous entry (`trained_on`, `scores`, `provenance`) and says so: check them against the new
weights.
A model that does no paper task exactly (a blind deblurrer) takes no --task: its entry lists
none, so a paper task name still picks the model that lists it, and `restore --task FAMILY`
picks it when it is the family's default. Write the model card in weights/README.md.
"""

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from i2sb_cli.degrade.tasks import TASKS, family_of
from i2sb_cli.models.checkpoint import load_checkpoint, save_checkpoint
from i2sb_cli.nets.adm import PRESET_NAMES, preset

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
LIMIT = 16 * 2**20  # the bundled-model size limit


def preset_of(config) -> str | None:
    names = [n for n in PRESET_NAMES if preset(n, conditioned=config.conditioned) == config]
    return names[0] if names else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--default-nfe", type=int, required=True)
    parser.add_argument("--default-detail", type=float, default=1.0, help="see restore --detail")
    parser.add_argument("--default-ensemble", type=int, default=1, help="see restore --ensemble")
    parser.add_argument(
        "--task", action="append", default=[], help="paper tasks it does (none: no paper task)"
    )
    parser.add_argument("--summary", required=True)
    parser.add_argument(
        "--family-default",
        action="store_true",
        help="place it before its family's other bundled models: restore --task FAMILY uses it",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="store the weights in 8 bits, half of float16's size (measure it first: its card "
        "says what it costs)",
    )
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the weights/ folder")
    args = parser.parse_args()

    net, meta = load_checkpoint(args.checkpoint)
    family = family_of(meta.task)
    if any(t not in TASKS or TASKS[t].family != family for t in args.task):
        raise SystemExit(f"--task must be paper tasks of the {family} family")
    meta = dataclasses.replace(
        meta,
        name=args.name,
        default_nfe=args.default_nfe,
        default_detail=args.default_detail,
        default_ensemble=args.default_ensemble,
    )
    target = args.weights / f"{args.name}.safetensors"
    dtype = torch.int8 if args.int8 else torch.float16
    save_checkpoint(target, net.state_dict(), meta, dtype=dtype)
    data = target.read_bytes()
    if len(data) > LIMIT:
        target.unlink()
        raise SystemExit(f"{target.name} is {len(data)} bytes, over the 16 MiB limit")

    entry = {
        "name": args.name,
        "family": family,
        "tasks": args.task,
        "file": target.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "licence": meta.licence,
        "preset": preset_of(meta.config),
        "cond_x1": meta.cond_x1,
        "beta_max": meta.beta_max,
        "ot_ode": meta.ot_ode,
        "default_nfe": args.default_nfe,
        "summary": args.summary,
        "provenance": f"i2sb train, {meta.training.get('steps_done')} steps on the photos of "
        "scripts/fetch_photos.py; see the model card in weights/README.md",
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    kept = pin(args.weights / "models.json", entry, args)
    print(f"{target} ({len(data):,} bytes, sha256 {entry['sha256']}); models.json updated")
    if kept:
        print(f"kept {', '.join(kept)} of the previous entry: check them against these weights")


HAND_WRITTEN = ("provenance", "trained_on", "scores")
"""Entry fields written by hand after measuring: a re-bundled model keeps them."""


def pin(manifest_path: Path, entry: dict, args: argparse.Namespace) -> list[str]:
    """Write `entry` into the manifest: in place of one of the same name, else after the last
    bundled entry, or with --family-default before the family's first bundled entry. Returns
    the hand-written fields taken over from an entry of the same name."""
    manifest = json.loads(manifest_path.read_text())
    previous = next((m for m in manifest["models"] if m["name"] == args.name), {})
    kept = [k for k in HAND_WRITTEN if k in previous]
    entry.update({k: previous[k] for k in kept})
    models = [m for m in manifest["models"] if m["name"] != args.name or not args.family_default]
    names = [m["name"] for m in models]
    if args.name in names:
        models[names.index(args.name)] = entry
    else:
        bundled = [i for i, m in enumerate(models) if "file" in m]
        of_family = [i for i in bundled if models[i]["family"] == entry["family"]]
        if args.family_default and of_family:
            models.insert(of_family[0], entry)
        else:
            models.insert(max(bundled, default=-1) + 1, entry)
    manifest["models"] = models
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return kept


if __name__ == "__main__":
    main()
