"""`i2sb restore` split over processes: torchrun ranks (gloo on the CPU) and `--shard I/N`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, make_checkpoint, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.pictures.inputs import collect_inputs
from i2sb_cli.restoring.split import plan_split
from i2sb_cli.runtime.cluster import Cluster

SIZES = [24, 32, (40, 24), 48, (24, 48), 36, 28]
"""Seven small pictures of mixed sizes (width, height)."""

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="gloo and /proc as on Linux"
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """A tiny JPEG-family model (outputs as large as inputs), seven pictures, and what one
    process makes of them: the reference every split must match byte for byte."""
    root = tmp_path_factory.mktemp("split")
    model = make_checkpoint(root / "tiny-jpeg.safetensors", name="tiny-jpeg", task="jpeg-10")
    for i, size in enumerate(SIZES):
        write_picture(root / "in" / f"p{i}.png", size, seed=i)
    result = _restore(root / "in", "-o", root / "one", "--model", model)
    assert result.exit_code == 0, result.output
    return {"root": root, "model": model, "in": root / "in", "one": root / "one"}


def _restore(*args: str | Path):
    """`i2sb restore ARGS` in this process (one torch thread, as conftest sets)."""
    return CliRunner().invoke(app, ["restore", "--backend", "torch", *map(str, args)])


def _torchrun(processes: int, *args: str | Path, **popen) -> subprocess.Popen:
    """`torchrun -m i2sb_cli restore ARGS` with one thread per process, as the reference."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(processes), "-m", "i2sb_cli", "restore", "--backend", "torch",
        *map(str, args),
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.Popen(command, env=env, text=True, **popen)


def _run_torchrun(processes: int, *args: str | Path) -> tuple[int, str, str]:
    job = _torchrun(processes, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = job.communicate(timeout=180)
    return job.returncode, stdout, stderr


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _same_pictures(folder: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("*.png"))
    assert sorted(p.name for p in folder.glob("*.png")) == names
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
@linux_only
def test_two_torchrun_processes_write_what_one_process_writes(work, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = _run_torchrun(
        2, work["in"], "-o", out, "--model", work["model"], "--json"
    )
    assert code == 0, stderr
    _same_pictures(out, work["one"])
    # One report, in input order, from the main process; one header, one summary.
    records = _records(stdout)
    assert [Path(r["input"]).name for r in records] == [f"p{i}.png" for i in range(7)]
    assert {r["status"] for r in records} == {"restored"}
    assert stderr.count("7 picture(s) over 2 processes") == 1
    assert stderr.count("done: 7 restored") == 1
    assert not list(out.glob(".*"))


@pytest.mark.slow
@linux_only
def test_three_torchrun_processes_go_on_past_a_broken_picture(work, tmp_path):
    pictures, out = tmp_path / "in", tmp_path / "out"
    pictures.mkdir()
    for picture in work["in"].iterdir():
        (pictures / picture.name).write_bytes(picture.read_bytes())
    (pictures / "broken.png").write_text("not a picture\n")
    code, stdout, stderr = _run_torchrun(3, pictures, "-o", out, "--model", work["model"], "--json")
    # The job's exit code is the failed picture's, whichever process drew it.
    assert code == 1, stderr
    _same_pictures(out, work["one"])
    records = _records(stdout)
    assert [Path(r["input"]).name for r in records] == ["broken.png"] + [
        f"p{i}.png" for i in range(7)
    ]
    assert [r["status"] for r in records] == ["failed"] + ["restored"] * 7
    assert stderr.count("done: 7 restored, 1 failed") == 1


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The process of `rank` among the workers torchrun (`launcher`) started, once it is up."""
    children = []
    for task in Path(f"/proc/{launcher}/task").iterdir():
        children += (task / "children").read_text().split()
    for child in children:
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


@pytest.mark.slow
@linux_only
def test_a_job_whose_rank_was_killed_finishes_when_run_again(work, tmp_path):
    out = tmp_path / "out"
    args = (work["in"], "-o", out, "--model", work["model"], "--json")
    job = _torchrun(2, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.png")) and job.poll() is None:
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.01)
        victim = _rank_pid(job.pid, 1)
        assert victim is not None, "rank 1 was not found"
        os.kill(victim, signal.SIGKILL)
        # The other rank does not wait for the dead one: torchrun stops the job.
        _, stderr = job.communicate(timeout=90)
    finally:
        job.kill()
    assert job.returncode != 0, stderr
    done_before = {p.name for p in out.glob("*.png")}
    assert 0 < len(done_before) < 7

    code, stdout, stderr = _run_torchrun(2, *args)
    assert code == 0, stderr
    _same_pictures(out, work["one"])
    records = _records(stdout)
    assert sorted(Path(r["input"]).name for r in records) == [f"p{i}.png" for i in range(7)]
    skipped = {Path(r["input"]).name for r in records if r["status"] == "skipped"}
    assert skipped == done_before


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shards_cover_the_folder_exactly_once(work, tmp_path, count):
    out = tmp_path / "out"
    seen = []
    for index in range(count):
        result = _restore(
            work["in"], "-o", out, "--model", work["model"], "--json", "--shard", f"{index}/{count}"
        )
        assert result.exit_code == 0, result.output
        assert f"share {index}/{count}: " in result.stderr
        records = _records(result.stdout)
        assert {r["status"] for r in records} <= {"restored"}
        seen += [Path(r["input"]).name for r in records]
    assert sorted(seen) == [f"p{i}.png" for i in range(7)]
    _same_pictures(out, work["one"])


def test_shards_of_a_torchrun_job_compose(work):
    # --shard I/N and WORLD_SIZE processes: every (I, rank) pair takes its own pictures.
    sources = collect_inputs([str(work["in"])], recursive=False)
    taken = []
    for index in range(3):
        for rank in range(2):
            cluster = Cluster(torch.device("cpu"), rank=rank, world_size=2)
            split = plan_split(sources, (index, 3), cluster)
            assert (split.processes, split.total) == (2, 7)
            taken += split.mine
    assert sorted(taken) == list(range(7))


def test_shares_balance_pixels_not_counts(work):
    # By count, 2 processes would take p0 p2 p4 p6 and p1 p3 p5: 3472 and 4624 pixels.
    sources = collect_inputs([str(work["in"])], recursive=False)
    pixels = [w * h for w, h in ((s, s) if isinstance(s, int) else s for s in SIZES)]
    loads = [
        sum(pixels[i] for i in plan_split(sources, (index, 2), Cluster(torch.device("cpu"))).mine)
        for index in range(2)
    ]
    assert abs(loads[0] - loads[1]) < min(pixels)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-", "--shard", "0/2"], "--shard splits a list of files"),
        (["{in}/p0.png", "-o", "-", "--shard", "1/2"], "-o - (stdout)"),
        (["{in}", "-o", "{tmp}", "--shard", "2/2"], "--shard 2/2"),
    ],
)
def test_shards_refuse_what_cannot_be_split(work, tmp_path, args, message):
    args = [a.format(**{"in": work["in"], "tmp": tmp_path}) for a in args]
    result = _restore(*args, "--model", work["model"])
    assert result.exit_code == 2
    assert message in result.stderr


def test_torchrun_refuses_stdin(work, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = _restore("-", "--model", work["model"])
    assert result.exit_code == 2
    assert "torchrun splits a list of files" in result.stderr
