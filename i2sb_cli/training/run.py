"""Running `i2sb train`: a `TrainJob` in; a trained checkpoint, a state and a log out.

    OUTPUT                     the model: EMA weights (float16) and checkpoint metadata,
                               written every --checkpoint-every steps and at the end
    OUTPUT.state.safetensors   the resumable state (state.py), written at the same moments
    --log FILE                 JSON lines: {"event": "start" | "train" | "val" | "checkpoint", ...}

Ctrl-C or SIGTERM ends the current step, saves both files and exits 130; the same command with
--resume continues from the last save. Under torchrun every process trains and only rank 0
writes files and prints (distributed.py).
"""

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..bridge import make_schedule
from ..errors import UsageError
from ..models.checkpoint import CheckpointMeta, save_checkpoint
from ..nets.adm import ADMUNet, count_parameters
from . import distributed
from .setup import Data, Model, TrainJob, paired_crops, resolve_network, training_data
from .state import load_state, read_header, save_state, state_path_for
from .step import Hooks, TrainLog, TrainSettings, TrainState, new_state, train
from .validate import ValItem, pair_items, photo_items, validate

EXIT_INTERRUPTED = 130
Say = Callable[[str], None]


@contextlib.contextmanager
def graceful_stop(say: Say) -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM, so that training stops between steps and
    saves; a second Ctrl-C interrupts at once. Outside the main thread nothing is installed."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum: int, frame: object) -> None:
        stop.set()
        say("stopping after this step and saving (Ctrl-C again to abort at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _precision(spec: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: `auto` means on a CUDA GPU that supports it."""
    if spec not in ("auto", "fp32", "bf16"):
        raise UsageError(f"--precision {spec!r}: choose auto, fp32 or bf16")
    if spec == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return spec == "bf16"


class TrainingRun:
    """One run of `i2sb train`: the network, data and state set up (or resumed) from a job;
    `go` trains, validates and saves until done or stopped."""

    def __init__(self, job: TrainJob, cluster: distributed.Cluster, say: Say) -> None:
        self.job, self.cluster = job, cluster
        self.say: Say = say if cluster.is_main else lambda text: None
        self.state_path = job.state or state_path_for(job.output)
        self.model: Model = resolve_network(job)
        if self.state_path.exists() and not job.resume:
            # Checked before the photos are read: that takes a while.
            raise UsageError(
                f"{self.state_path} holds an earlier run: pass --resume to continue it, "
                "or delete it to start afresh"
            )
        device = cluster.device
        self.settings = TrainSettings(
            steps=job.steps,
            lr=job.lr,
            weight_decay=job.weight_decay,
            warmup_steps=job.warmup_steps,
            ema_decay=job.ema_decay,
            grad_clip=job.grad_clip,
            ot_ode_share=self.model.ot_ode_share,
            bf16=_precision(job.precision, device),
            loss_weight=job.loss_weight,
        )
        self.schedule = make_schedule(self.model.beta_max)
        self.data: Data = training_data(job, self.model, device)
        torch.manual_seed(job.seed)  # the initial weights, equal in every process
        net = ADMUNet(self.model.config)
        if self.model.init_weights is not None:
            net.load_state_dict(self.model.init_weights)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            net = net.to(device, memory_format=torch.channels_last)
        self.state: TrainState = new_state(net.to(device), self.settings)
        self.wall_offset, self.resumes, self.last_val = 0.0, 0, None
        self.started = time.monotonic()
        self.saved_step = self.first_step = self._resume_or_start()
        self.val_items = self._validation_items() if cluster.is_main else []
        self.val_net: ADMUNet | None = None

    def run_info(self) -> dict[str, Any]:
        """What must not change between a state and a resumed run."""
        m = self.model
        return {
            "config": m.config.to_dict(),
            "cond_x1": m.cond_x1,
            "condition": m.condition,
            "task": m.task,
            "tasks": list(self.job.tasks),
            "beta_max": m.beta_max,
            "ot_ode": m.ot_ode,
            "ot_ode_share": m.ot_ode_share,
            "start": m.start,
        }

    def _resume_or_start(self) -> int:
        # --resume without a state starts afresh, so that one command line serves the first
        # run and every restart (torchrun --max-restarts relaunches the same command).
        if not self.job.resume or not self.state_path.exists():
            if self.job.resume:
                self.say(f"no saved state at {self.state_path}: starting afresh")
            return 0
        saved = read_header(self.state_path)
        # States written before "start" existed trained on the paper's x1, those before
        # "ot_ode_share" for their one sampler, those before "condition" with none.
        before = {
            "start": "degraded",
            "ot_ode_share": float(saved["run"].get("ot_ode", False)),
            "condition": "",
        }
        changed = [k for k, v in self.run_info().items() if saved["run"].get(k, before.get(k)) != v]
        if changed:
            raise UsageError(
                f"{self.state_path} was trained with other {', '.join(changed)}; resume it with "
                "the options it was started with"
            )
        load_state(self.state_path, self.state)
        # Options that may change on resuming take effect now; the learning rate is set per step.
        self.state.ema.decay = self.settings.ema_decay
        for group in self.state.optimizer.param_groups:
            group["weight_decay"] = self.settings.weight_decay
        extra = saved.get("extra", {})
        self.wall_offset = float(extra.get("wall_seconds", 0.0))
        self.resumes = int(extra.get("resumes", 0)) + 1
        self.last_val = extra.get("validation")
        self.say(f"resumed {self.state_path} at step {self.state.step}")
        return self.state.step

    def _validation_items(self) -> list[ValItem]:
        job, multiple = self.job, self.model.config.size_multiple
        if job.val_pairs is not None:
            crop = job.val_crop // multiple * multiple
            pairs = paired_crops(*job.val_pairs, self.model, crop)
            return pair_items(pairs, task=self.model.task, seed=job.seed)
        if job.val is None:
            return []
        if self.data.degrader is None:
            raise UsageError("training on --pairs validates on --val-pairs, not --val")
        return photo_items(
            job.val, self.data.degrader, crop=job.val_crop, multiple=multiple, seed=job.seed
        )

    def wall_seconds(self) -> float:
        return self.wall_offset + time.monotonic() - self.started

    def recipe(self) -> dict[str, Any]:
        job = self.job
        data = str(job.photos) if job.pairs is None else [str(p) for p in job.pairs]
        return {
            "data": data,
            "photos": self.data.size,
            "tasks": list(job.tasks),
            "ot_ode_share": self.model.ot_ode_share,
            "loss_weight": job.loss_weight,
            "preset": self.model.source,
            "steps": job.steps,
            "batch_size": job.batch_size,
            "crop": job.crop,
            "degrade_size": job.degrade_size or job.crop,
            "lr": job.lr,
            "weight_decay": job.weight_decay,
            "warmup_steps": job.warmup_steps,
            "ema_decay": job.ema_decay,
            "grad_clip": job.grad_clip,
            "precision": "bf16" if self.settings.bf16 else "fp32",
            "seed": job.seed,
            "device": str(self.cluster.device),
            "world_size": self.cluster.world_size,
            "torch": torch.__version__,
        }

    def log(self, event: str, **fields: Any) -> None:
        if self.cluster.is_main and self.job.log is not None:
            with self.job.log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"event": event, **fields}) + "\n")

    def save(self, state: TrainState) -> None:
        """Write the model and the resumable state (rank 0)."""
        self.saved_step = state.step
        if not self.cluster.is_main:
            return
        job, m, wall = self.job, self.model, round(self.wall_seconds())
        meta = CheckpointMeta(
            name=job.name or job.output.name.removesuffix(".safetensors"),
            config=m.config,
            task=m.task,
            beta_max=m.beta_max,
            ot_ode=m.ot_ode,
            cond_x1=m.cond_x1,
            condition=m.condition,
            default_nfe=job.default_nfe,
            start=m.start,
            degradation=m.degradation,
            licence="MIT",
            provenance="`i2sb train` (Algorithm 1 of I2SB) on the pictures in training.data",
            training={
                **self.recipe(),
                "steps_done": state.step,
                "wall_seconds": wall,
                "validation": self.last_val,
            },
        )
        save_checkpoint(job.output, state.ema.state_dict(), meta, dtype=torch.float16)
        extra = {
            "recipe": self.recipe(),
            "wall_seconds": wall,
            "resumes": self.resumes,
            "validation": self.last_val,
        }
        save_state(self.state_path, state, self.run_info(), extra)
        self.log("checkpoint", step=state.step, model=str(job.output), state=str(self.state_path))

    def run_validation(self, state: TrainState) -> None:
        if not self.cluster.is_main or not self.val_items:
            return
        if self.val_net is None:
            self.val_net = ADMUNet(self.model.config).to(self.cluster.device).eval()
        self.val_net.load_state_dict(state.ema.shadow)
        started = time.monotonic()
        self.last_val = {
            "step": state.step,
            "nfe": self.job.val_nfe or self.job.default_nfe,
            **validate(
                self.val_net,
                self.schedule,
                self.val_items,
                nfe=self.job.val_nfe or self.job.default_nfe,
                ot_ode=self.model.ot_ode,
                cond_x1=self.model.cond_x1,
                condition=self.model.condition,
                seed=self.job.seed,
                classical_start=self.model.start == "classical",
            ),
        }
        # psnr_input is x1's: with --start classical that is the classical restoration.
        start = {"classical": "classical start", "degraded": "input"}.get(
            self.model.start, f"{self.model.start} start"
        )
        self.say(
            f"validation at step {state.step}: PSNR {self.last_val['psnr']:.2f} dB "
            f"({start} {self.last_val['psnr_input']:.2f} dB) on {self.last_val['pictures']} "
            f"pictures at NFE {self.last_val['nfe']}, {time.monotonic() - started:.0f} s"
        )
        self.log("val", **self.last_val)

    def report(self, entry: TrainLog) -> None:
        loss = distributed.mean(self.cluster, entry.loss)
        grad_norm = distributed.mean(self.cluster, entry.grad_norm)
        done = entry.step - self.first_step
        rate = done / entry.seconds if entry.seconds > 0 else 0.0
        eta = (self.job.steps - entry.step) / rate if rate > 0 else 0.0
        self.say(
            f"step {entry.step:>6}/{self.job.steps}  loss {loss:.5f}  lr {entry.lr:.2e}  "
            f"grad {grad_norm:.3f}  {rate:.2f} step/s  {self.wall_seconds():.0f} s  "
            f"eta {eta / 60:.0f} min"
        )
        self.log(
            "train",
            step=entry.step,
            loss=loss,
            lr=entry.lr,
            grad_norm=grad_norm,
            seconds=round(self.wall_seconds(), 3),
        )

    def go(self, stop: threading.Event) -> int:
        job, m, net = self.job, self.model, self.state.net
        self.say(
            f"training {m.source} ({count_parameters(net):,} parameters) for {m.task} on "
            f"{self.data.description}: {job.steps} steps of {job.batch_size} crops of "
            f"{job.crop}x{job.crop} on {self.cluster.device}"
            + (f" x {self.cluster.world_size} processes" if self.cluster.enabled else "")
        )
        self.log("start", step=self.state.step, **self.recipe())
        hooks = Hooks(
            on_log=self.report,
            log_every=job.log_every,
            # Validation first, so that a checkpoint written at the same step records it.
            periodic=((job.val_every, self.run_validation), (job.checkpoint_every, self.save)),
            should_stop=lambda: distributed.anyone(self.cluster, stop.is_set()),
        )
        finished = train(
            self.state,
            self.schedule,
            self.data.batches,
            self.settings,
            seed=job.seed,
            rank=self.cluster.rank,
            model=distributed.wrap(net, self.cluster),
            hooks=hooks,
        )
        stale = self.state.step != self.saved_step or not job.output.exists()
        if finished and self.val_items and (self.last_val or {}).get("step") != self.state.step:
            self.run_validation(self.state)  # the final checkpoint records its own score
            stale = True
        if stale:
            self.save(self.state)
        distributed.barrier(self.cluster)
        if not finished:
            self.say(
                f"stopped at step {self.state.step}; {job.output} and {self.state_path} are "
                "saved: run the same command with --resume to continue"
            )
            return EXIT_INTERRUPTED
        self.say(f"wrote {job.output} ({self.state.step} steps)")
        return 0


def run(job: TrainJob, say: Say) -> int:
    """Train as `job` says; returns the exit code (0, or 130 when stopped early)."""
    cluster = distributed.join(job.device)
    try:
        with graceful_stop(say if cluster.is_main else lambda text: None) as stop:
            return TrainingRun(job, cluster, say).go(stop)
    finally:
        distributed.leave(cluster)
