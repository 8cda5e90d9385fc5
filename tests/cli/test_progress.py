"""Progress of commands over pictures (cli/progress.py), driven by a fake clock, and --quiet."""

import io
import json
import sys
from pathlib import Path

import pytest
from helpers import make_checkpoint, write_picture
from rich.console import Console
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.cli.progress import Calls, Eta, PictureProgress, format_seconds, works
from i2sb_cli.pictures.files import picture_pixels


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


def test_time_left_is_the_work_left_at_the_rate_and_counts_down() -> None:
    clock = Clock()
    eta = Eta(1000.0, clock=clock)
    assert eta.seconds_left() is None  # nothing measured yet
    clock.wait(20)
    eta.done(100)
    assert eta.rate == pytest.approx(0.2)
    assert eta.seconds_left() == pytest.approx(900 * 0.2)
    # Between pictures the estimate counts down with the clock, never below zero.
    clock.wait(5)
    assert eta.seconds_left() == pytest.approx(900 * 0.2 - 5)
    clock.wait(1000)
    assert eta.seconds_left() == 0
    eta.done(900)
    assert eta.left == 0 and eta.seconds_left() == 0


def test_rate_is_per_unit_of_work_so_picture_sizes_count() -> None:
    clock = Clock()
    eta = Eta(5 * 100 + 400, clock=clock)
    for _ in range(5):  # five small pictures, a second each
        clock.wait(1)
        eta.done(100)
    # The big picture left has four times the pixels: four times the time.
    assert eta.seconds_left() == pytest.approx(4.0)


def test_one_slow_picture_moves_the_estimate_without_making_it_jump() -> None:
    clock = Clock()
    eta = Eta(100_000.0, clock=clock)
    for _ in range(5):
        clock.wait(10)
        eta.done(100)
    steady = eta.rate
    clock.wait(30)  # one picture three times slower than the others
    eta.done(100)
    assert steady == pytest.approx(0.1)
    assert steady < eta.rate < 0.3 * 0.75
    for _ in range(10):  # back to normal: the outlier fades
        clock.wait(10)
        eta.done(100)
    assert eta.rate == pytest.approx(0.1, rel=0.02)


def test_a_slow_first_picture_fades_as_the_run_goes_on() -> None:
    clock = Clock()
    eta = Eta(10_000.0, clock=clock)
    clock.wait(60)  # warm-up: the first call of a network is slow
    eta.done(100)
    rates = []
    for _ in range(8):
        clock.wait(5)
        eta.done(100)
        rates.append(eta.rate)
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] < 0.07


def test_a_batch_counts_as_one_stretch_of_time() -> None:
    """Pictures sampled together finish together: the first carries the batch's time, the
    others none; the rate is that of the same pictures finished one by one."""
    one_by_one, batched = Clock(), Clock()
    single, pairs = Eta(10_000.0, clock=one_by_one), Eta(10_000.0, clock=batched)
    for _ in range(6):
        one_by_one.wait(3)
        single.done(100)
        one_by_one.wait(3)
        single.done(100)
        batched.wait(6)
        pairs.done(100)
        pairs.done(100)
        assert pairs.rate == pytest.approx(single.rate) == pytest.approx(0.03)


def test_skipped_pictures_leave_the_work_but_not_the_rate() -> None:
    clock = Clock()
    eta = Eta(300.0, clock=clock)
    clock.wait(10)
    eta.done(100)
    clock.wait(50)  # e.g. a picture that failed after a long read
    eta.skip(100)
    assert eta.rate == pytest.approx(0.1)
    assert eta.seconds_left() == pytest.approx(10)


def test_pictures_are_weighed_by_their_header(tmp_path: Path) -> None:
    picture = write_picture(tmp_path / "a.png", (30, 20))
    assert picture_pixels(picture) == 600
    assert picture_pixels(Path("stdin"), data=picture.read_bytes()) == 600
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    assert picture_pixels(tmp_path / "broken.png") is None
    assert picture_pixels(tmp_path / "missing.png") is None


def test_unknown_sizes_count_as_the_mean_and_times_are_formatted() -> None:
    assert works([100, None, 300]) == [100.0, 200.0, 300.0]
    assert works([None, None]) == [1.0, 1.0]
    assert format_seconds(None) == "-:--:--"
    assert format_seconds(59.2) == "0:01:00"
    assert format_seconds(3723) == "1:02:03"


def test_calls_are_known_once_the_first_step_is_done() -> None:
    calls = Calls()
    calls.call()
    assert not calls.tiled and calls.total is None
    calls.call()  # a second call in the first step: the picture runs in tiles
    assert calls.tiled and calls.total is None
    calls.call()
    calls.step(1, 10)
    assert calls.total == 30 and calls.made == 3
    calls.reset()
    calls.call()
    calls.step(1, 4)
    assert not calls.tiled and calls.total == 4


def _shown(progress: PictureProgress) -> str:
    out = Console(file=io.StringIO(), width=120)
    out.print(progress)
    return out.file.getvalue()


def test_the_bar_counts_pictures_and_shows_calls_for_tiled_pictures_only() -> None:
    clock = Clock()
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    stdout = sys.stdout
    with PictureProgress(terminal, "restoring", 3, 300.0, clock=clock) as progress:
        # stdout stays stdout: --json lines and pictures on stdout must not reach the bar.
        assert sys.stdout is stdout
        assert "0/3" in _shown(progress) and "-:--:-- left" in _shown(progress)
        denoise = progress.counting(lambda x_t, n, cond: x_t)
        denoise(1, 0, None)
        progress.step(1, 2)
        assert "network calls" not in _shown(progress)
        clock.wait(20)
        progress.finished(100)
        assert "1/3" in _shown(progress) and "0:00:40 left" in _shown(progress)
        for _ in range(3):  # three tiles a step
            denoise(1, 0, None)
        progress.step(1, 2)
        assert "network calls" in _shown(progress) and "3/6" in _shown(progress)
        progress.finished(100, timed=False)
        assert "network calls" not in _shown(progress) and "2/3" in _shown(progress)


# --- restore --quiet ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("models") / "tiny-sr4x.safetensors")


def test_quiet_restore_prints_only_errors_and_json(model: Path, tmp_path: Path) -> None:
    write_picture(tmp_path / "in" / "a.png", 8)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a picture")
    command = ["restore", str(tmp_path / "in"), "--model", str(model), "--backend", "torch"]
    command += ["-o", str(tmp_path / "out"), "--nfe", "1"]
    talkative = CliRunner().invoke(app, command)
    assert talkative.exit_code == 1
    assert "restored" in talkative.stderr and "done:" in talkative.stderr

    quiet = CliRunner().invoke(app, [*command, "--overwrite", "-q", "--json"])
    assert quiet.exit_code == 1
    (line,) = quiet.stderr.splitlines()
    assert line.startswith("failed") and "broken.png" in line
    records = [json.loads(line) for line in quiet.stdout.splitlines()]
    assert [r["status"] for r in records] == ["restored", "failed"]
    # A usage error still says what was wrong.
    bad = CliRunner().invoke(app, [*command, "--quiet", "--mask", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:")
    # --quiet is the command's alone: the next command talks again.
    again = CliRunner().invoke(app, [*command, "--overwrite"])
    assert "done:" in again.stderr


def test_quiet_degrade_and_evaluate_print_only_data(tmp_path: Path) -> None:
    write_picture(tmp_path / "clean" / "a.png", 16)
    pairs = tmp_path / "pairs"
    command = ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", "jpeg-10"]
    degraded = CliRunner().invoke(app, [*command, "-q", "--json"])
    assert degraded.exit_code == 0 and degraded.stderr == ""
    assert json.loads(degraded.stdout)["name"] == "a.png"
    scored = CliRunner().invoke(app, ["evaluate", str(pairs), str(pairs / "degraded"), "-q"])
    assert scored.exit_code == 0 and scored.stderr == "" and scored.stdout == ""
    talkative = CliRunner().invoke(app, ["evaluate", str(pairs), str(pairs / "degraded")])
    assert "1 scored" in talkative.stderr
