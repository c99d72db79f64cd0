"""Where code lives: a kind's module holds that kind; what kinds share lives in a helper module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import exporter.checks
from exporter.checks.base import driver_timeout, own_budget

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


def _timeout_shares_written_inline(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div):
            sides = (node.left, node.right)
            if any(isinstance(s, ast.Attribute) and s.attr == "timeout" for s in sides) and any(
                isinstance(s, ast.Constant) and isinstance(s.value, int | float) for s in sides
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_timeout_shares_are_named_in_one_place() -> None:
    """The share of a check timeout a step may use was 0.8 in four kinds (three names and
    one bare literal), 0.9 in tcp and 1/2 in sqlite; now ``checks/base.py`` names them."""
    inline = {
        path.stem: found
        for path in _kind_modules()
        if (found := _timeout_shares_written_inline(ast.parse(path.read_text())))
    }
    assert inline == {}


@pytest.mark.parametrize(
    ("timeout", "own", "driver"),
    [(1.0, 0.9, 0.8), (5.0, 4.5, 4.0), (10.0, 9.5, 8.0), (30.0, 29.5, 24.0)],
)
def test_budgets_leave_the_probe_time_to_name_the_slow_step(
    timeout: float, own: float, driver: float
) -> None:
    assert own_budget(timeout) == pytest.approx(own)
    assert driver_timeout(timeout) == pytest.approx(driver)
    assert driver_timeout(timeout) < own_budget(timeout) < timeout
