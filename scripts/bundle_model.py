"""Ship a trained checkpoint as a bundled model: copy it into weights/ under its model name,
with the default NFE and detail chosen by measurement, in float16, and pin it in models.json.

    python scripts/bundle_model.py runs/jpeg-wide768.safetensors --name jpeg-wide \
        --default-nfe 10 --default-detail 0.4 --task jpeg-10 --summary "JPEG artefact removal, ..."

The entry replaces one of the same name (its place kept) or goes after the last bundled entry,
so a family's first bundled model stays its default. Write the model card in weights/README.md.
"""

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from i2sb_cli.models.checkpoint import load_checkpoint, save_checkpoint
from i2sb_cli.nets.adm import PRESET_NAMES, preset
from i2sb_cli.tasks import TASKS, family_of

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
    parser.add_argument("--task", action="append", required=True, help="paper tasks it does")
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()

    net, meta = load_checkpoint(args.checkpoint)
    family = family_of(meta.task)
    if any(TASKS[t].family != family for t in args.task):
        raise SystemExit(f"--task must be paper tasks of the {family} family")
    meta = dataclasses.replace(
        meta, name=args.name, default_nfe=args.default_nfe, default_detail=args.default_detail
    )
    target = WEIGHTS / f"{args.name}.safetensors"
    save_checkpoint(target, net.state_dict(), meta, dtype=torch.float16)
    data = target.read_bytes()
    if len(data) > LIMIT:
        target.unlink()
        raise SystemExit(f"{target.name} is {len(data)} bytes, over the 16 MiB limit")

    training = meta.training
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
        "provenance": f"i2sb train, {training.get('steps_done')} steps on the photos of "
        "scripts/fetch_photos.py; see the model card in weights/README.md",
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    manifest_path = WEIGHTS / "models.json"
    manifest = json.loads(manifest_path.read_text())
    models = manifest["models"]
    names = [m["name"] for m in models]
    if args.name in names:
        models[names.index(args.name)] = entry
    else:
        last_bundled = max((i for i, m in enumerate(models) if "file" in m), default=-1)
        models.insert(last_bundled + 1, entry)
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"{target} ({len(data):,} bytes, sha256 {entry['sha256']}); models.json updated")


if __name__ == "__main__":
    main()
