"""The registry of check kinds: every module in this package that defines ``KIND``.

Config validation and the runner both read :data:`KINDS`; there is no second list.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from exporter.checks.base import Kind


def _discover() -> dict[str, Kind[Any]]:
    kinds: dict[str, Kind[Any]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, Kind):
            kinds[kind.name] = kind
    return kinds


KINDS: dict[str, Kind[Any]] = _discover()
