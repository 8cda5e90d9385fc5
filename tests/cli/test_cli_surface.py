"""What a newcomer meets first: --help of every command, -V, shell completion, NO_COLOR, the
width of `models list`, and family names in `degrade`."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from helpers import REPO_ROOT, write_picture
from typer.core import TyperGroup
from typer.testing import CliRunner

from i2sb_cli import __version__
from i2sb_cli.cli.app import app
from i2sb_cli.cli.common import fit_paragraphs
from i2sb_cli.cli.examples import EXAMPLES
from i2sb_cli.cli.help_topics import TOPICS
from i2sb_cli.models import registry

# Typer's own placeholders, which say nothing to a user: `<bool>` beside a flag, `<list[str]>`,
# `<int range>`, `{inputs}` in the usage line.
TYPE_PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|dir|file|list\[)")
ARGUMENT_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
ESCAPE = "\x1b"


def _command_paths(command: typer.core.TyperCommand, path: tuple[str, ...] = ()) -> list:
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*path, name))
    return paths


ROOT = typer.main.get_command(app)
COMMAND_PATHS = _command_paths(ROOT)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "i2sb")
def test_every_help_has_examples_and_no_type_placeholders(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Examples" in result.stdout
    assert TYPE_PLACEHOLDER.search(result.stdout) is None, TYPE_PLACEHOLDER.search(result.stdout)
    # An argument shown as {name} in the usage line (restore's -o template fields, {stem} and
    # the like, are braces in help text, not placeholders).
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert ARGUMENT_PLACEHOLDER.search(usage) is None, usage


def test_every_command_has_examples():
    assert {" ".join(p) or "i2sb" for p in COMMAND_PATHS} == set(EXAMPLES)


def test_help_shows_flags_bare_and_arguments_by_name():
    text = CliRunner().invoke(app, ["benchmark", "--help"], env={"COLUMNS": "100"}).stdout
    assert re.search(r"--compare +A B ", text)  # two values, not <str,str>
    usage = CliRunner().invoke(app, ["restore", "--help"], env={"COLUMNS": "100"}).stdout
    assert "restore [OPTIONS] INPUTS..." in usage
    assert re.search(r"--batch-size +INTEGER \[x>=1\]", usage)
    assert re.search(r"--json +Print one JSON", usage)  # a flag takes no value


def _i2sb_words(line: str) -> list[str]:
    """The arguments of the i2sb command in an example line (which may pipe or redirect)."""
    words = shlex.split(line)
    words = words[words.index("i2sb") + 1 :]
    ends = [i for i, word in enumerate(words) if word in ("|", ">", "&&")]
    return words[: ends[0]] if ends else words


EXAMPLE_LINES = [line for examples in EXAMPLES.values() for _, line in examples]


@pytest.mark.parametrize("line", EXAMPLE_LINES)
def test_every_example_parses(line, tmp_path, monkeypatch):
    words = _i2sb_words(line)
    if "--install-completion" in words:
        pytest.skip("parsing it would install the completion; its presence is tested below")
    monkeypatch.chdir(tmp_path)
    for word in words:
        if word.endswith("/"):  # folders that commands want to exist
            Path(word).mkdir(parents=True, exist_ok=True)
    command, name = ROOT, "i2sb"
    while isinstance(command, TyperGroup) and words and not words[0].startswith("-"):
        name, words = words[0], words[1:]
        command = command.get_command(None, name)
        assert command is not None, f"no command {name!r}"
    try:
        command.make_context(name, list(words))  # parses and checks every option and argument
    except typer.Exit:
        assert words == ["--help"]


def test_dash_capital_v_prints_the_version():
    for flag in ("-V", "--version"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0
        assert result.stdout.strip() == f"i2sb {__version__}"


def test_shell_completion_is_offered(monkeypatch):
    text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"}).stdout
    assert "--install-completion" in text and "--show-completion" in text
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="i2sb")
    assert script.exit_code == 0
    assert "_I2SB_COMPLETE=complete_bash" in script.stdout


def test_models_list_fits_80_columns_with_every_size(worktree_weights):
    env = {"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"}  # a terminal 80 wide
    result = CliRunner().invoke(app, ["models", "list"], env=env)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for entry in registry.known_models():
        (row,) = [line for line in lines if line.split()[0] == entry.name]
        if entry.size is not None:
            assert f"{entry.size / 1e6:.1f} MB" in row
    good_for = [line.strip() for line in lines if line.startswith("  good for")]
    assert "good for blur-gauss-plain: PSNR 34.37 dB (Wiener deconvolution: 32.76)" in good_for
    assert "good for real-blur: PSNR 32.78 dB (the degraded input: 32.09)" in good_for
    assert "good for sr4x-pool (not measured here)" in good_for


def test_models_list_writes_no_style_under_no_color(worktree_weights):
    styled = CliRunner().invoke(app, ["models", "list"], env={"FORCE_COLOR": "1"})
    assert ESCAPE in styled.stdout  # a terminal gets bold and dim...
    plain = CliRunner().invoke(app, ["models", "list"], env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.exit_code == 0 and ESCAPE not in plain.stdout  # ...unless NO_COLOR says no


def test_no_color_removes_every_style_from_help_and_errors(tmp_path):
    # Typer's help and error consoles are set up when the app is imported: a fresh process.
    script = (
        "from typer.testing import CliRunner\n"
        "from i2sb_cli.cli.app import app\n"
        "for args in (['restore', '--help'], ['restore', '--nfe', '0', 'x.png'],"
        " ['models', 'info', 'no-such-model']):\n"
        "    print(repr(CliRunner().invoke(app, args).output))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FORCE_COLOR": "1", "NO_COLOR": "1"}
    env["I2SB_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    outputs = done.stdout.splitlines()
    assert len(outputs) == 3
    assert "Usage:" in outputs[0] and "--nfe" in outputs[1] and "no-such-model" in outputs[2]
    assert "\\x1b" not in done.stdout


def test_degrade_takes_a_family_as_its_bundled_models_degradation(tmp_path, worktree_weights):
    write_picture(tmp_path / "a.png", (24, 20))
    # deblur: the blind default model lists no paper task; its pairs are its training's first
    for family, task in (("sr4x", "sr4x-bicubic"), ("deblur", "real-blur")):
        out = tmp_path / family
        args = ["degrade", str(tmp_path / "a.png"), "-o", str(out), "--task", family]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"--task {family} -> {task}" in result.stderr
        (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert record["task"] == task


def test_version_answers_without_importing_torch() -> None:
    code = (
        "import sys; sys.argv = ['i2sb', '-V']; from i2sb_cli.cli import main; main(); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["i2sb", __version__, "False"]


# --- help at 80 columns ------------------------------------------------------------------------

NARROW = {"COLUMNS": "80"}  # a terminal 80 wide


def test_restore_help_reads_at_80_columns():
    result = CliRunner().invoke(app, ["restore", "--help"], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 150, f"{len(lines)} lines"
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout  # rich's mark of a word cut to fit its column
    assert "i2sb help tasks" in result.stdout  # the longer story is one command away


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "i2sb")
def test_no_help_cuts_a_word_at_80_columns(path):
    result = CliRunner().invoke(app, [*path, "--help"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, [line for line in result.stdout.splitlines() if "…" in line]


def test_restore_options_that_hide_their_default_state_it():
    # To fit 80 columns, these say "(default: 0)" in their text instead of a line of their own.
    restore_command = ROOT.commands["restore"]
    stated = 0
    for param in restore_command.params:
        default = param.default
        if param.show_default is not False or isinstance(default, bool) or default is None:
            continue
        assert f"default: {default})" in param.help or f"{default} (default)" in param.help, (
            param.name
        )
        stated += 1
    assert stated >= 6


@pytest.mark.parametrize("topic", [*TOPICS, None])
def test_help_topics_read_at_80_columns(topic):
    result = CliRunner().invoke(app, ["help", *([topic] if topic else [])], env=NARROW)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    if topic is None:
        assert all(name in result.stdout for name in TOPICS)


def test_help_refuses_an_unknown_topic():
    result = CliRunner().invoke(app, ["help", "colours"])
    assert result.exit_code == 2
    assert "not a topic" in result.output and "tasks" in result.output


def test_help_text_flows_only_where_its_line_breaks_cannot_hold():
    text = "one two three four five\nsix seven\n\nshort\nlist"
    assert fit_paragraphs(text, 40) == text  # it fits: as written
    # Too wide: the wrapped line joins the next; the list, whose breaks are deliberate, stays.
    assert fit_paragraphs(text, 12) == "one two three four five six seven\n\nshort\nlist"
