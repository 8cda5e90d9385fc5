"""Which files a command works on, and where each result goes.

Inputs are files, folders or glob patterns (expanded here, so that quoted patterns work in
scripts and on shells that do not expand them), or `-` for one picture on stdin. Each input
remembers its path relative to the folder or pattern it came from, so that an output folder
can mirror the input's sub-folders. Inside folders and patterns only files with a picture
extension count; anything else (`.DS_Store`, `Thumbs.db`, notes, sidecar files) is skipped
quietly, while a file named explicitly is always taken, so that reading it decides.
"""

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .meta import has_text_key

PICTURE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
"""Extensions (lower case) that make a file in a folder or a glob match count as a picture."""

STDIO = Path("-")
"""`-`: as an input, the picture on stdin; as an output, stdout."""

_STDIN_NAME = Path("stdin")  # its relative name: seeds the noise, names a file in an -o folder
_GLOB_CHARS = frozenset("*?[")

TEMPLATE_FIELDS = {
    "stem": "the input's name without its extension",
    "ext": "the output's extension without the dot (the input's, or --format's)",
    "name": "the input's file name",
    "parent": "the input's folder relative to the folder or pattern it came from",
}
"""The fields of an output-name template (`-o 'out/{parent}/{stem}_x4.{ext}'`)."""


@dataclass(frozen=True)
class InputFile:
    """One picture to process: where it is, and where it sits relative to what was asked for."""

    path: Path
    relative: Path
    named: bool = field(default=False, compare=False)
    """Named on the command line (or stdin), not found in a folder or by a pattern."""


def is_picture_name(path: Path) -> bool:
    """Whether the file name has a picture extension (in any letter case)."""
    return path.suffix.lower() in PICTURE_EXTENSIONS


def collect_inputs(specs: list[str], *, recursive: bool) -> list[InputFile]:
    """Expand files, folders and glob patterns into the pictures to process.

    `-` stands for the picture on stdin (path `STDIO`, relative name `stdin`). A file named
    explicitly is taken whatever its extension (reading it decides). A folder gives its
    pictures, and with `recursive` those of its sub-folders. A pattern may use `*`,
    `?`, `[...]`, and `**` for any depth with `recursive`; folders it matches are expanded like
    folders. Hidden files and folders (including our own `.*.tmp` files) are skipped inside
    folders and patterns. Each spec's pictures are sorted; specs keep the order given, and a
    file reached twice is kept once, at its first place.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    for spec in specs:
        items = (
            [InputFile(STDIO, _STDIN_NAME, named=True)]
            if spec == "-"
            else _expand(spec, recursive=recursive)
        )
        for item in items:
            key = "-" if item.path == STDIO else os.path.normcase(os.path.realpath(item.path))
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found


def output_kind(output: Path | None) -> str:
    """How `plan_outputs` reads an output: "beside" (None: next to each input), "stdout",
    "template" (it has a {field}), "file" (a picture name that is no folder) or "folder"."""
    if output is None:
        return "beside"
    if output == STDIO:
        return "stdout"
    if "{" in str(output):
        return "template"
    return "file" if is_picture_name(output) and not output.is_dir() else "folder"


def plan_outputs(
    inputs: list[InputFile],
    output: Path | None,
    *,
    suffix: str,
    default_ext: str | None,
    folder_suffix: str = "",
) -> list[Path]:
    """Where to write the result of each input, in the same order (`output_kind`).

    - `output` None: next to each input, named stem + `suffix` + extension; stdout (`STDIO`)
      for the picture from stdin.
    - `output` `STDIO`: stdout, for exactly one input.
    - `output` with a {field} (`TEMPLATE_FIELDS`): a template, formatted for each input.
    - `output` with a picture extension (and not an existing folder): that file, for exactly
      one input.
    - otherwise `output` is a folder (created later if needed) mirroring each input's
      `relative` path, with the input's own name + `folder_suffix`.

    The extension is `default_ext` when given, else the input's own when it is a picture
    extension, else `.png`. Two inputs landing on one output, or an output that is one of the
    inputs, are usage errors: a source is never overwritten.
    """
    for text in (suffix, folder_suffix):
        if os.sep in text or "/" in text:
            raise UsageError(f"--suffix must be a plain name ending, not a path: {text!r}")
    ext = _normalise_ext(default_ext)
    kind = output_kind(output)
    if kind == "stdout":
        if len(inputs) != 1:
            raise UsageError(f"-o - writes one picture to stdout, but {len(inputs)} were given")
        return [STDIO]
    if kind == "template":
        targets = [_from_template(str(output), item, ext) for item in inputs]
    elif kind == "file":
        if len(inputs) != 1:
            raise UsageError(
                f"--output {output} is a file name but {len(inputs)} pictures were given; "
                "give a folder instead"
            )
        targets = [output]
    elif output is not None:
        if output.exists() and not output.is_dir():
            raise UsageError(f"--output {output} is an existing file, not a folder")
        targets = [output / _renamed(item.relative, folder_suffix, ext) for item in inputs]
    else:
        targets = [
            STDIO
            if item.path == STDIO
            else item.path.parent / _renamed(item.path, suffix, ext).name
            for item in inputs
        ]
    check_written(inputs, [[target] for target in targets])
    return targets


def leave_out_outputs(
    inputs: list[InputFile], *, suffix: str, folder: Path | None, mark: str
) -> tuple[list[InputFile], list[InputFile]]:
    """(the inputs to process, the earlier results left out): among the pictures found in
    folders and by patterns, those named like a result next to another input of the same
    folder (stem + `suffix`, possibly + `_s<k>` or `_spread`), those inside the output
    `folder`, and those whose metadata holds the key `mark`. A picture named on the command
    line is always processed."""
    stems = {(item.path.parent, item.path.stem) for item in inputs}
    named_like = re.compile(rf"(.+){re.escape(suffix)}(?:_s\d+|_spread)?") if suffix else None
    inside = os.path.realpath(folder) if folder is not None else None

    def earlier(path: Path) -> bool:
        match = named_like.fullmatch(path.stem) if named_like else None
        if match and (path.parent, match.group(1)) in stems:
            return True
        if inside is not None and os.path.realpath(path).startswith(inside + os.sep):
            return True
        return has_text_key(path, mark)

    found_earlier = [not item.named and earlier(item.path) for item in inputs]
    kept = [item for item, left in zip(inputs, found_earlier, strict=True) if not left]
    return kept, [item for item, left in zip(inputs, found_earlier, strict=True) if left]


def _expand(spec: str, *, recursive: bool) -> list[InputFile]:
    path = Path(spec).expanduser()
    if path == STDIO:  # "./-" names a file called "-", which Path shortens to "-"
        path = Path.cwd() / path
    if path.is_dir():
        pictures = _folder_pictures(path, recursive=recursive)
        if not pictures:
            hint = "" if recursive else " (add --recursive to include sub-folders)"
            raise UsageError(f"no pictures in folder {spec}{hint}")
        return [InputFile(path / rel, rel) for rel in pictures]
    if path.exists():
        return [InputFile(path, Path(path.name), named=True)]
    if not _GLOB_CHARS & set(spec):
        raise UsageError(f"no such file or folder: {spec}")
    return _expand_glob(spec, recursive=recursive)


def _expand_glob(spec: str, *, recursive: bool) -> list[InputFile]:
    pattern = os.path.expanduser(spec)
    matches = sorted(glob.glob(pattern, recursive=recursive))
    if not matches:
        raise UsageError(f"no such file or folder: {spec}")
    # Relative paths start below the pattern's fixed leading folders, so that "photos/**/*.jpg"
    # keeps the sub-folders under photos/.
    base = _glob_base(pattern)
    found: list[InputFile] = []
    for match in map(Path, matches):
        relative = Path(os.path.relpath(match, base))
        if match.is_dir():
            found += [
                InputFile(match / rel, relative / rel)
                for rel in _folder_pictures(match, recursive=recursive)
            ]
        elif is_picture_name(match):
            found.append(InputFile(match, relative))
    if not found:
        raise UsageError(f"no pictures match {spec}")
    return found


def _glob_base(pattern: str) -> str:
    """The leading folders of a pattern that contain no glob characters."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return os.path.join(*fixed) if fixed else os.curdir


def _folder_pictures(folder: Path, *, recursive: bool) -> list[Path]:
    """Picture files in a folder as sorted paths relative to it, skipping hidden entries."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        dirs[:] = [] if not recursive else [d for d in dirs if not d.startswith(".")]
        found += [
            rel_root / name
            for name in files
            if not name.startswith(".") and is_picture_name(Path(name))
        ]
    return sorted(found)


def _normalise_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in PICTURE_EXTENSIONS:
        supported = ", ".join(sorted(PICTURE_EXTENSIONS))
        raise UsageError(f"cannot write {ext} pictures; use one of {supported}")
    return ext


def _from_template(template: str, item: InputFile, ext: str | None) -> Path:
    source = item.relative
    ext = ext or (source.suffix if is_picture_name(source) else ".png")
    fields = {
        "stem": source.stem,
        "ext": ext.removeprefix("."),
        "name": source.name,
        "parent": source.parent.as_posix(),
    }
    try:
        target = Path(template.format_map(fields))
    except KeyError as err:
        raise UsageError(
            f"-o {template}: no field {{{err.args[0]}}}; the fields are "
            + ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
        ) from None
    except (ValueError, IndexError, AttributeError) as err:
        message = f"-o {template}: not a template ({err}); write fields as {{stem}}"
        raise UsageError(message) from None
    if not is_picture_name(target):
        raise UsageError(f"-o {template} must end in a picture extension or .{{ext}}")
    return target


def _renamed(path: Path, suffix: str, ext: str | None) -> Path:
    if ext is None:
        ext = path.suffix if is_picture_name(path) else ".png"
    return path.with_name(path.stem + suffix + ext)


def check_written(inputs: list[InputFile], written: list[Sequence[Path]]) -> None:
    """Refuse a plan in which an input would be overwritten, or two files written to one path;
    `written[i]` are the files input i gets (`STDIO` for stdout)."""
    files = [item.path for item in inputs if item.path != STDIO]
    sources = {_file_id(path): path for path in files if path.exists()}
    claimed: dict[str, Path] = {}
    for item, targets in zip(inputs, written, strict=True):
        for target in targets:
            if target == STDIO:
                continue
            if target.exists() and _file_id(target) in sources:
                raise UsageError(
                    f"output {target} would overwrite the input {sources[_file_id(target)]}; "
                    "choose another --output or --suffix"
                )
            key = os.path.normcase(os.path.abspath(target))
            if key in claimed:
                raise UsageError(
                    f"{claimed[key]} and {item.path} would both be written to {target}; "
                    "rename one or process them separately"
                )
            claimed[key] = item.path


def _file_id(path: Path) -> tuple[int, int]:
    """Identity of an existing file that sees through links and letter-case aliases."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino
