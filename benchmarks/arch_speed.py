"""Cost of candidate UNets for the bundled models on this machine, before any is trained:
training throughput (crops per second, forward + backward + AdamW step under the chosen
precision) and the time of one network call on a 512x512 picture (eager fp32, batch 1), which
times the NFE is the restore time. Prints a Markdown table and, with --json, one object per
architecture.

    python benchmarks/arch_speed.py [--crop 128] [--batch 16] [--precision bf16] [--steps 6]
    python benchmarks/arch_speed.py --arch '{"patch_size": 4, "model_channels": 128}'

Each --arch is a JSON object of UNet fields over the `tiny` preset (conditioned on x1); without
--arch the built-in candidates run. Medians of --steps timed steps after one warm-up.
"""

import argparse
import json
import statistics
import time

import torch

from i2sb_cli.nets.adm import ADMUNet, UNetConfig, count_parameters, preset

CANDIDATES = {
    "tiny (sr4x-tiny, deblur-tiny, inpaint-tiny)": {},
    "jpeg-wide": {"channel_mult": [1, 2, 3, 4], "num_head_channels": 64},
    "p2 c64 (1,2,2,2)": {"patch_size": 2, "model_channels": 64},
    "p2 c96 (1,2,2,2) r2": {"patch_size": 2, "model_channels": 96, "num_res_blocks": 2},
    "p4 c128 (1,2,2,2) r2": {"patch_size": 4, "model_channels": 128, "num_res_blocks": 2},
    "p4 c128 (1,1,2,2) r2": {
        "patch_size": 4,
        "model_channels": 128,
        "num_res_blocks": 2,
        "channel_mult": [1, 1, 2, 2],
    },
    "p4 c192 (1,1,2,2) r2": {
        "patch_size": 4,
        "model_channels": 192,
        "num_res_blocks": 2,
        "channel_mult": [1, 1, 2, 2],
        "num_head_channels": 64,
    },
}


def build(fields: dict) -> ADMUNet:
    base = preset("tiny", conditioned=True).to_dict()
    return ADMUNet(UNetConfig.from_dict({**base, **fields}))


def median_seconds(run, steps: int) -> float:
    run()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def training_step(net: ADMUNet, batch: int, crop: int, precision: str):
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, crop, crop)
    cond = torch.randn(batch, 3, crop, crop)
    t = torch.rand(batch)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=precision == "bf16"):
            loss = net(x, t, cond).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def network_call(net: ADMUNet, side: int):
    x = torch.randn(1, 3, side, side)
    t = torch.rand(1)

    def call() -> None:
        with torch.inference_mode():
            net(x, t, x)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", help="UNet fields over tiny, as JSON")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    archs = {a: json.loads(a) for a in args.arch} if args.arch else CANDIDATES
    print(
        f"| architecture | parameters | train crops/s ({args.batch}x{args.crop}^2, "
        f"{args.precision}) | ms per 512x512 call (fp32) |"
    )
    print("|---|---|---|---|")
    for name, fields in archs.items():
        net = build(fields)
        step = training_step(net, args.batch, args.crop, args.precision)
        train_s = median_seconds(step, args.steps)
        net.eval()
        call_s = median_seconds(network_call(net, 512), max(2, args.steps // 2))
        row = {
            "architecture": name,
            "fields": fields,
            "parameters": count_parameters(net),
            "train_crops_per_s": args.batch / train_s,
            "ms_per_512_call": 1000 * call_s,
        }
        if args.json:
            print(json.dumps(row))
        print(
            f"| {name} | {row['parameters']:,} | {row['train_crops_per_s']:.1f} | "
            f"{row['ms_per_512_call']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
