"""Pictures too small for a metric, and failures while scoring one picture: `i2sb evaluate`,
its NFE sweep and plot, and the benchmark scripts report them and score the rest (issue 34)."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, write_picture
from typer.testing import CliRunner

from i2sb_cli.cli.app import app
from i2sb_cli.evaluation import score as scoring
from i2sb_cli.evaluation.metrics import (
    PERCEPTUAL_MIN_SIDE,
    SSIM_MIN_SIDE,
    MetricUnavailable,
    load_perceptual,
    psnr,
    ssim,
)
from i2sb_cli.evaluation.score import METHODS, Scores, Summary

BENCHMARKS = REPO_ROOT / "benchmarks"
# (width, height): the sizes the issue names, both ways round for the thin one.
TINY = [(1, 1), (7, 7), (16, 16), (31, 31), (1, 200), (200, 1)]


def _name(size: tuple[int, int]) -> str:
    return f"p{size[0]}x{size[1]}.png"


def _pair(size: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width, height = size
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 3, height, width, generator=generator) * 2 - 1
    return a, (a + 0.2 * torch.randn(a.shape, generator=generator)).clamp(-1, 1)


@pytest.fixture(scope="module")
def real_perceptual():
    """The real ST-LPIPS network; the test skips, saying why, where the extra is missing."""
    distance, reason = load_perceptual()
    if distance is None:
        pytest.skip(f"needs the perceptual extra: {reason}")
    return distance


@pytest.fixture
def fake_perceptual(monkeypatch):
    """A stand-in stlpips package whose network fails, as the real one does, below the size
    its padding needs; counts its calls."""
    calls = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, variant, verbose=True):
            super().__init__()

        def forward(self, a, b):
            calls.append(tuple(a.shape[-2:]))
            if min(a.shape[-2:]) < PERCEPTUAL_MIN_SIDE:
                raise RuntimeError("Padding size should be less than the input dimension")
            return (a - b).abs().mean().reshape(1, 1, 1, 1)

    package = types.ModuleType("stlpips_pytorch")
    package.stlpips = types.SimpleNamespace(LPIPS=FakeLPIPS)
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", package)
    return calls


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory) -> Path:
    """`degrade --task jpeg-10` pairs of every tiny size."""
    root = tmp_path_factory.mktemp("tiny")
    for seed, size in enumerate(TINY):
        write_picture(root / "clean" / _name(size), size, seed=seed)
    made = CliRunner().invoke(
        app, ["degrade", str(root / "clean"), "-o", str(root / "pairs"), "--task", "jpeg-10"]
    )
    assert made.exit_code == 0, made.stderr
    return root / "pairs"


def _evaluate(pairs: Path, *options: str):
    return CliRunner().invoke(app, ["evaluate", str(pairs), str(pairs / "degraded"), *options])


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("size", TINY, ids=_name)
def test_psnr_and_ssim_are_defined_or_say_why(size):
    a, b = _pair(size)
    assert 0 < psnr(a, b) < psnr(a, a)
    if min(size) < SSIM_MIN_SIDE:
        with pytest.raises(MetricUnavailable, match=r"SSIM needs at least 3x3 pixels.*"):
            ssim(a, b)
    else:  # a window that fits (7x7 for 7x7), SSIM's usual properties
        assert ssim(a, a) == pytest.approx(1.0)
        assert -1 < ssim(a, b) < 1
        assert ssim(a, b) == pytest.approx(ssim(b, a))


def test_the_perceptual_size_is_checked_before_the_network_runs(fake_perceptual):
    distance, reason = load_perceptual()
    assert distance is not None, reason
    for size in TINY:
        a, b = _pair(size)
        if min(size) < PERCEPTUAL_MIN_SIDE:
            with pytest.raises(MetricUnavailable, match=f"{size[0]}x{size[1]}"):
                distance(a, b)
        else:
            assert distance(a, b) > 0
    assert fake_perceptual == [(31, 31)]  # only the picture it can take reached the network


def test_the_measured_perceptual_minimum_is_where_the_real_network_works(real_perceptual):
    """PERCEPTUAL_MIN_SIDE is the smallest side the shift-tolerant AlexNet takes, either way
    round, and the check refuses exactly the sizes below it."""
    for size in [(21, 21), (21, 200), (200, 21), (31, 31)]:
        assert real_perceptual(*_pair(size)) > 0
    from stlpips_pytorch import stlpips

    network = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False).eval()
    for size in [(20, 20), (20, 200), (200, 20), (16, 16), (1, 1)]:
        with pytest.raises(RuntimeError), torch.inference_mode():
            network(*_pair(size))
        with pytest.raises(MetricUnavailable):
            real_perceptual(*_pair(size))


def test_evaluate_tiny_pictures_without_the_perceptual_extra(tiny_pairs, monkeypatch):
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", None)  # as if it were not installed
    result = _evaluate(tiny_pairs, "--json")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "no perceptual column" in result.stderr
    *images, mean = _lines(result)
    assert {image["name"] for image in images} == {_name(size) for size in TINY}
    for image in images:
        assert "stlpips" not in image and image["psnr"]["restored"] > 0
        thin = image["name"] in ("p1x1.png", "p1x200.png", "p200x1.png")
        assert (image["ssim"] == dict.fromkeys(METHODS)) == thin
        assert ("ssim" in image["unavailable"]) == thin
    assert mean["count"] == 6 and mean["failed"] == 0
    assert mean["counts"] == {"psnr": 6, "ssim": 3}
    assert "the SSIM means count 3 of 6 pictures" in result.stderr


def test_evaluate_tiny_pictures_with_a_perceptual_metric(tiny_pairs, fake_perceptual):
    result = _evaluate(tiny_pairs, "--json")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    by_name = {line["name"]: line for line in _lines(result) if line["kind"] == "image"}
    mean = _lines(result)[-1]
    assert [
        name for name, image in by_name.items() if image["stlpips"]["restored"] is not None
    ] == ["p31x31.png"]
    assert mean["counts"] == {"psnr": 6, "ssim": 3, "stlpips": 1}
    assert mean["stlpips"]["restored"] == by_name["p31x31.png"]["stlpips"]["restored"]
    assert set(fake_perceptual) == {(31, 31)}  # the others were refused before the network
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: p")]
    # One note per picture and metric it cannot have: SSIM for three, ST-LPIPS for five.
    assert len(notes) == 3 + 5, notes
    assert "note: p16x16.png: ST-LPIPS needs at least 21x21 pixels" in result.stderr
    assert "the ST-LPIPS means count 1 of 6 pictures" in result.stderr
    table = _evaluate(tiny_pairs)
    assert table.exit_code == 0
    (row,) = [line for line in table.stderr.splitlines() if line.startswith("│ p16x16.png")]
    assert [cell.strip() for cell in row.split("│")[-4:-1]] == ["-", "-", "-"]  # ST-LPIPS


def test_the_16_and_40_pixel_pictures_of_the_issue(tmp_path, real_perceptual):
    """The issue's "Done when": PSNR for both, ST-LPIPS for the 40x40 one, one note for the
    16x16 one, exit 0, no traceback."""
    write_picture(tmp_path / "clean" / "small.png", 16, seed=1)
    write_picture(tmp_path / "clean" / "large.png", 40, seed=2)
    pairs = tmp_path / "pairs"
    command = ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", "jpeg-10"]
    assert CliRunner().invoke(app, command).exit_code == 0
    result = _evaluate(pairs, "--json")
    assert result.exit_code == 0 and "Traceback" not in result.output
    *images, mean = _lines(result)
    by_name = {image["name"]: image for image in images}
    assert by_name["small.png"]["psnr"]["restored"] > 0 < by_name["large.png"]["psnr"]["restored"]
    assert by_name["large.png"]["stlpips"]["restored"] > 0
    assert by_name["small.png"]["stlpips"]["restored"] is None
    (note,) = [line for line in result.stderr.splitlines() if line.startswith("note: small")]
    assert note.startswith("note: small.png: ST-LPIPS needs at least 21x21 pixels")
    assert mean["counts"]["stlpips"] == 1


def test_a_failure_scoring_one_picture_is_one_line_and_the_rest_are_scored(tiny_pairs, monkeypatch):
    real_ssim = scoring.ssim

    def failing_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
        if tuple(a.shape[-2:]) == (16, 16):
            raise RuntimeError("a library broke\nwith a long second line")
        return real_ssim(a, b)

    monkeypatch.setattr(scoring, "ssim", failing_ssim)
    result = _evaluate(tiny_pairs, "--json", "--no-perceptual")
    assert result.exit_code == 1  # the documented code of a partial failure
    assert "Traceback" not in result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert failed == ["failed p16x16.png: scoring failed (RuntimeError: a library broke)"]
    mean = _lines(result)[-1]
    assert mean["count"] == 5 and mean["failed"] == 1 and mean["counts"]["ssim"] == 2
    assert "5 scored, 1 failed" in result.stderr


def test_nfe_sweep_and_plot_with_a_picture_too_small_for_a_metric(
    tmp_path, same_size, fake_perceptual
):
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    write_picture(tmp_path / "clean" / "small.png", 16, seed=1)
    write_picture(tmp_path / "clean" / "large.png", 32, seed=2)
    pairs = tmp_path / "pairs"
    command = ["degrade", str(tmp_path / "clean"), "-o", str(pairs), "--task", "jpeg-10"]
    assert CliRunner().invoke(app, command).exit_code == 0
    figure = tmp_path / "nfe.png"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(pairs), "--nfe", "1,2", "--model", str(same_size), "--backend",
         "torch", "--json", "--plot", str(figure)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and figure.stat().st_size > 0
    means = [line for line in _lines(result) if line["kind"] == "mean"]
    assert [m["counts"] for m in means] == [{"psnr": 2, "ssim": 2, "stlpips": 1}] * 2
    assert all(m["stlpips"]["restored"] is not None for m in means)
    # The note on the small picture is said once, not once per NFE.
    assert result.stderr.count("note: small.png: ST-LPIPS needs") == 1
    assert "at NFE 2, the ST-LPIPS means count 1 of 2 pictures" in result.stderr


def test_the_plot_leaves_out_a_metric_no_picture_has(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra (matplotlib)")
    from i2sb_cli.restoring.plot import plot_nfe
    from i2sb_cli.restoring.sweep import NfePoint

    unavailable = {"stlpips": "ST-LPIPS needs at least 21x21 pixels"}
    points = []
    for nfe in (1, 2):
        summary = Summary()
        values = {method: 20.0 + nfe for method in METHODS}
        scores = {"psnr": values, "ssim": dict(values), "stlpips": dict.fromkeys(METHODS)}
        summary.add(Scores("a.png", "jpeg-10", "decoded", scores, unavailable))
        assert summary.means()["stlpips"] == dict.fromkeys(METHODS)
        assert summary.to_json()["counts"] == {"psnr": 1, "ssim": 1, "stlpips": 0}
        points.append(NfePoint(nfe, summary, 0.1))
    plot_nfe(points, tmp_path / "plot.png", title="t", baseline="decoded")
    from PIL import Image

    with Image.open(tmp_path / "plot.png") as image:
        assert image.width < 2.5 * image.height  # two panels (PSNR, SSIM), not three


def _benchmark(name: str) -> types.ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_user_cases_scores_tiny_photos_and_reports_a_failing_one(tmp_path, capsys):
    user_cases = _benchmark("user_cases")
    from PIL import Image

    folder = tmp_path / "jpeg75"
    (folder / "degraded").mkdir(parents=True)
    (folder / "i2sb").mkdir()
    clean = {}
    for seed, size in enumerate([(1, 1), (16, 16), (32, 32), (24, 24)]):
        stem = _name(size)[:-4]
        photo = write_picture(tmp_path / "photos" / f"{stem}.png", size, seed=seed)
        with Image.open(photo) as image:
            clean[stem] = image.convert("RGB")
        clean[stem].save(folder / "degraded" / f"{stem}.jpg", quality=75)
        if stem != "p24x24":  # its restoration is missing: that photo fails, the rest score
            clean[stem].save(folder / "i2sb" / f"{stem}.png")

    def perceptual(a: torch.Tensor, b: torch.Tensor) -> float:
        if min(a.shape[-2:]) < PERCEPTUAL_MIN_SIDE:
            raise MetricUnavailable("ST-LPIPS needs at least 21x21 pixels")
        return float((a - b).abs().mean())

    scored = user_cases.score("jpeg75", folder, clean, perceptual)
    err = capsys.readouterr().err
    assert scored["failed"] == ["p24x24"] and "failed jpeg75 p24x24" in err
    rows = scored["rows"]
    assert len(rows["i2sb"]["psnr"]) == 3 and len(rows["jpeg"]["psnr"]) == 3
    assert len(rows["i2sb"]["ssim"]) == 2 and len(rows["i2sb"]["stlpips"]) == 1
    assert "note: jpeg75 p1x1: SSIM needs" in err and "note: jpeg75 p16x16: ST-LPIPS" in err
    assert user_cases._mean(rows["i2sb"]["stlpips"], 3, 4).endswith("(1 of 3)")
    assert user_cases._mean([], 3, 4) == "-"


def test_evaluate_models_keeps_the_scores_of_a_partial_failure(tiny_pairs, tmp_path, capsys):
    evaluate_models = _benchmark("evaluate_models")
    restored = tmp_path / "restored"
    restored.mkdir()
    for size in TINY[1:]:  # the 1x1 picture's restoration is missing
        (restored / _name(size)).write_bytes((tiny_pairs / "degraded" / _name(size)).read_bytes())
    lines = evaluate_models.evaluate(tiny_pairs, restored)
    assert lines[-1]["count"] == 5 and lines[-1]["failed"] == 1
    err = capsys.readouterr().err
    assert "failed p1x1.png" in err and "note: p1x200.png: SSIM needs" in err
    row = {"task": "jpeg-10", "nfe": 1, "sampler": "-", "detail": "-", "scores": lines[-1]}
    row["scores"]["baseline_name"] = "decoded"
    row["scores"]["stlpips"] = dict.fromkeys(METHODS)  # as where no picture has it
    assert "| - |" in evaluate_models.table([row])
