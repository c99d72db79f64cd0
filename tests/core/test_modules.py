"""Where code lives: a kind's module holds that kind; what kinds share lives in a helper module."""

from __future__ import annotations

import ast
from pathlib import Path

import exporter.checks

CHECKS = Path(exporter.checks.__file__).parent


def _kind_modules() -> list[Path]:
    return sorted(
        path
        for path in CHECKS.glob("*.py")
        if not path.stem.startswith("_") and path.stem != "base"
    )


def test_no_kind_imports_another_kind() -> None:
    """Shared helpers (TLS, reasons, budgets) used to live in the tcp kind, so http,
    postgres and redis imported a kind; they live in ``checks/_net.py`` and ``base.py``."""
    kinds = {path.stem for path in _kind_modules()}
    assert {"tcp", "http", "postgres", "redis"} <= kinds
    crossings = []
    for path in _kind_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["exporter", "checks"] and len(parts) > 2 and parts[2] in kinds:
                    crossings.append(f"{path.stem} imports {node.module}")
    assert crossings == []
