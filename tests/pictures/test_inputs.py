"""Which files a command works on, and where their results go."""

import os
from pathlib import Path

import pytest

from i2sb_cli.errors import UsageError
from i2sb_cli.pictures.inputs import STDIO, InputFile, collect_inputs, plan_outputs


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not really a picture")


def _rel(items: list[InputFile]) -> list[str]:
    return [item.relative.as_posix() for item in items]


@pytest.fixture
def album(tmp_path: Path) -> Path:
    _touch(
        tmp_path,
        "b.png",
        "a.JPG",
        "c.tiff",
        "notes.txt",
        ".hidden.png",
        ".b.png.1a2b.tmp",
        "sub/d.webp",
        "sub/deeper/e.bmp",
        ".cache/f.png",
    )
    return tmp_path


def test_folder_gives_its_pictures_sorted_without_hidden_ones(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=False)
    assert _rel(items) == ["a.JPG", "b.png", "c.tiff"]
    assert [item.path for item in items] == [album / "a.JPG", album / "b.png", album / "c.tiff"]


def test_recursive_folder_keeps_relative_paths(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=True)
    assert _rel(items) == ["a.JPG", "b.png", "c.tiff", "sub/d.webp", "sub/deeper/e.bmp"]


def test_explicit_file_is_taken_whatever_its_extension(album: Path) -> None:
    items = collect_inputs([str(album / "notes.txt"), str(album / "sub/d.webp")], recursive=False)
    assert items == [
        InputFile(album / "notes.txt", Path("notes.txt")),
        InputFile(album / "sub/d.webp", Path("d.webp")),
    ]


def test_duplicates_are_kept_once_in_first_place(album: Path) -> None:
    specs = [str(album / "b.png"), str(album), str(album / "." / "b.png")]
    assert _rel(collect_inputs(specs, recursive=False)) == ["b.png", "a.JPG", "c.tiff"]


def test_glob_is_expanded_and_filtered_to_pictures(album: Path) -> None:
    # Like the shell's expansion: a matched folder counts as if it had been named.
    assert _rel(collect_inputs([str(album / "*")], recursive=False)) == [
        "a.JPG",
        "b.png",
        "c.tiff",
        "sub/d.webp",
    ]
    assert _rel(collect_inputs([str(album / "[ab].*")], recursive=False)) == ["a.JPG", "b.png"]
    assert _rel(collect_inputs([str(album / "?.png")], recursive=False)) == ["b.png"]


def test_recursive_glob_mirrors_sub_folders(album: Path) -> None:
    items = collect_inputs([str(album / "**" / "*.*")], recursive=True)
    assert _rel(items) == ["a.JPG", "b.png", "c.tiff", "sub/d.webp", "sub/deeper/e.bmp"]


def test_glob_matching_a_folder_expands_it(album: Path) -> None:
    items = collect_inputs([str(album / "su*")], recursive=False)
    assert _rel(items) == ["sub/d.webp"]


def test_relative_glob_from_the_working_folder(album: Path, monkeypatch) -> None:
    monkeypatch.chdir(album)
    assert collect_inputs(["sub/*.webp"], recursive=False) == [
        InputFile(Path("sub/d.webp"), Path("d.webp"))
    ]


def test_missing_spec_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no such file or folder: .*nothing\.png"):
        collect_inputs([str(tmp_path / "nothing.png")], recursive=False)
    with pytest.raises(UsageError, match="no such file or folder"):
        collect_inputs([str(tmp_path / "*.png")], recursive=False)


def test_folder_without_pictures_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no pictures in folder .*empty"):
        collect_inputs([str(tmp_path / "empty")], recursive=True)
    _touch(tmp_path, "nested/inner/x.png")
    with pytest.raises(UsageError, match="--recursive"):
        collect_inputs([str(tmp_path / "nested")], recursive=False)
    assert _rel(collect_inputs([str(tmp_path / "nested")], recursive=True)) == ["inner/x.png"]


def test_glob_matching_no_pictures_is_a_usage_error(album: Path) -> None:
    with pytest.raises(UsageError, match="no pictures match"):
        collect_inputs([str(album / "*.txt")], recursive=False)


# --- plan_outputs ---------------------------------------------------------------------------


def test_outputs_next_to_inputs_get_the_suffix(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=True)
    outputs = plan_outputs(items, None, suffix="_restored", default_ext=None)
    assert outputs == [
        album / "a_restored.JPG",
        album / "b_restored.png",
        album / "c_restored.tiff",
        album / "sub" / "d_restored.webp",
        album / "sub" / "deeper" / "e_restored.bmp",
    ]


def test_output_folder_mirrors_sub_folders_and_changes_extension(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=True)
    outputs = plan_outputs(items, album / "out", suffix="_restored", default_ext="PNG")
    assert [p.relative_to(album / "out").as_posix() for p in outputs] == [
        "a.png",
        "b.png",
        "c.png",
        "sub/d.png",
        "sub/deeper/e.png",
    ]


def test_single_output_file_for_a_single_input(album: Path) -> None:
    items = collect_inputs([str(album / "b.png")], recursive=False)
    assert plan_outputs(items, album / "x.jpg", suffix="_r", default_ext="png") == [album / "x.jpg"]


def test_output_file_name_for_many_inputs_is_a_usage_error(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=False)
    with pytest.raises(UsageError, match="give a folder"):
        plan_outputs(items, album / "x.png", suffix="_r", default_ext=None)


def test_existing_folder_with_a_picture_name_is_a_folder(album: Path) -> None:
    (album / "out.png").mkdir()
    items = collect_inputs([str(album)], recursive=False)
    outputs = plan_outputs(items, album / "out.png", suffix="_r", default_ext=None)
    assert outputs[0] == album / "out.png" / "a.JPG"


def test_output_that_is_an_existing_file_is_a_usage_error(album: Path) -> None:
    items = collect_inputs([str(album)], recursive=False)
    with pytest.raises(UsageError, match="not a folder"):
        plan_outputs(items, album / "notes.txt", suffix="_r", default_ext=None)


def test_two_inputs_on_one_output_is_a_usage_error(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png", "a.jpg")
    items = collect_inputs([str(tmp_path)], recursive=False)
    with pytest.raises(UsageError, match="would both be written to"):
        plan_outputs(items, tmp_path / "out", suffix="", default_ext="png")
    with pytest.raises(UsageError, match="would both be written to"):
        plan_outputs(items, None, suffix="_r", default_ext="webp")


def test_output_never_overwrites_an_input(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png", "a_restored.png")
    items = collect_inputs([str(tmp_path)], recursive=False)
    # a.png -> a_restored.png, which is itself an input.
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_outputs(items, None, suffix="_restored", default_ext=None)
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_outputs(items, tmp_path, suffix="_restored", default_ext=None)
    single = collect_inputs([str(tmp_path / "a.png")], recursive=False)
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_outputs(single, tmp_path / "a.png", suffix="_r", default_ext=None)


def test_output_reaching_an_input_through_a_link_is_refused(tmp_path: Path) -> None:
    _touch(tmp_path, "src/a.png")
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "src" / "a.png", tmp_path / "out" / "a.png")
    items = collect_inputs([str(tmp_path / "src")], recursive=False)
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_outputs(items, tmp_path / "out", suffix="", default_ext=None)


def test_unknown_extension_and_bad_suffix_are_usage_errors(album: Path) -> None:
    items = collect_inputs([str(album / "b.png")], recursive=False)
    with pytest.raises(UsageError, match=r"cannot write \.gif"):
        plan_outputs(items, None, suffix="_r", default_ext="gif")
    with pytest.raises(UsageError, match="--suffix"):
        plan_outputs(items, None, suffix="/r", default_ext=None)


def test_non_picture_input_is_written_as_png(album: Path) -> None:
    items = collect_inputs([str(album / "notes.txt")], recursive=False)
    assert plan_outputs(items, None, suffix="_r", default_ext=None) == [album / "notes_r.png"]


def test_files_that_are_not_pictures_are_not_inputs(tmp_path: Path) -> None:
    _touch(tmp_path, "x.png", ".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt", "._x.png")
    _touch(tmp_path, "x.png.xmp", "sub/.DS_Store", "sub/y.JPEG")
    assert _rel(collect_inputs([str(tmp_path)], recursive=True)) == ["sub/y.JPEG", "x.png"]


# --- stdin and stdout -----------------------------------------------------------------------


def test_dash_reads_stdin_and_writes_stdout(tmp_path: Path) -> None:
    items = collect_inputs(["-", "-"], recursive=False)
    assert items == [InputFile(STDIO, Path("stdin"))]
    assert plan_outputs(items, None, suffix="_r", default_ext=None) == [STDIO]
    assert plan_outputs(items, STDIO, suffix="_r", default_ext="jpg") == [STDIO]
    folder = plan_outputs(items, tmp_path / "out", suffix="_r", default_ext=None)
    assert folder == [tmp_path / "out" / "stdin.png"]


def test_stdout_takes_one_picture(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png", "b.png")
    items = collect_inputs([str(tmp_path)], recursive=False)
    assert plan_outputs(items[:1], STDIO, suffix="_r", default_ext=None) == [STDIO]
    with pytest.raises(UsageError, match="-o - writes one picture to stdout, but 2 were given"):
        plan_outputs(items, STDIO, suffix="_r", default_ext=None)


def test_a_file_named_dash_is_a_file(tmp_path: Path, monkeypatch) -> None:
    _touch(tmp_path, "-")
    monkeypatch.chdir(tmp_path)
    assert collect_inputs(["./-"], recursive=False) == [InputFile(tmp_path / "-", Path("-"))]
