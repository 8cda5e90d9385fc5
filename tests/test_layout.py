"""The package layering the README states: each package imports only from those before it."""

import ast
from pathlib import Path

import i2sb_cli

ROOT = Path(i2sb_cli.__file__).parent
# Lowest first; "" is the top-level package itself (its version; it offers the Python API by
# importlib at first use, which no import statement shows), "errors" the one loose module every
# layer may raise from, "api" the Python API over restoring.
LAYERS = ("", "errors", "bridge", "degrade", "nets", "pictures", "models", "runtime",
          "evaluation", "restoring", "training", "api", "cli", "__main__")  # fmt: skip


def _unit(module: list[str]) -> str:
    """The layer of a dotted module path inside i2sb_cli ("" for i2sb_cli itself)."""
    return module[1] if len(module) > 1 else ""


def _imports(path: Path) -> list[tuple[str, int]]:
    """(layer imported, line) for every import of i2sb_cli in the file."""
    parts = ["i2sb_cli", *path.relative_to(ROOT).with_suffix("").parts]
    package = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "i2sb_cli":
                module = node.module.split(".")
            else:
                continue
            found.append((_unit(module), node.lineno))
        elif isinstance(node, ast.Import):
            found += [(_unit(a.name.split(".")), node.lineno) for a in node.names
                      if a.name.split(".")[0] == "i2sb_cli"]  # fmt: skip
    return found


def test_every_module_is_in_a_layer() -> None:
    units = {_unit(["i2sb_cli", *p.relative_to(ROOT).with_suffix("").parts]) for p in
             ROOT.rglob("*.py") if "weights" not in p.relative_to(ROOT).parts}  # fmt: skip
    units.discard("__init__")
    assert units <= set(LAYERS), units - set(LAYERS)


def test_imports_run_one_way() -> None:
    upward = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "weights":
            continue
        own = relative.with_suffix("").parts[0] if len(relative.parts) > 1 else relative.stem
        own = "" if own == "__init__" else own
        for imported, line in _imports(path):
            if LAYERS.index(imported) > LAYERS.index(own):
                upward.append(f"{relative}:{line} imports {imported or 'i2sb_cli'}")
    assert not upward, "\n".join(upward)
