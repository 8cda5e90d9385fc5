"""i2sb: image restoration with the Image-to-Image Schrödinger Bridge.

`import i2sb_cli as i2sb` stays light (the command line's `i2sb -V` answers without torch): the
Python API (`i2sb.load`, `i2sb.Pipeline`, see api.py) and the research modules (`i2sb.bridge`:
the sampler and schedule) are imported on first use.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("Pipeline", "load")
"""Names of api.py offered here."""
_MODULES = ("api", "bridge")
"""Modules offered as attributes before anything imported them."""


def __getattr__(name: str) -> Any:
    # Imported by name at first use, not at the top: the API imports torch. (tests/test_layout.py
    # reads import statements; this one runs only when asked, so the layers still hold.)
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_MODULES})
