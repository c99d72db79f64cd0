"""The strict tooling the project promises: ruff on everything, mypy --strict on the package,
its tests and its bench (pyproject.toml [tool.mypy] packages)."""

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import get_overloads

from exporter.fields import Reader

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docstrings_are_required_on_the_kind_author_api() -> None:
    """pyproject.toml scopes pydocstyle's D1 rules to the modules a kind author calls:
    an undocumented public class fails there, and only there."""
    undocumented = "class Public:\n    pass\n"
    for module, required in (
        ("exporter/fields.py", True),
        ("exporter/checks/base.py", True),
        ("exporter/samples.py", True),
        ("exporter/cli.py", False),
        ("exporter/checks/tcp.py", False),
    ):
        proc = run("ruff", "check", "--no-cache", "--stdin-filename", module, stdin=undocumented)
        assert ("D101" in proc.stdout) is required, (module, proc.stdout)


def test_ruff_format_is_enforced() -> None:
    proc = run("ruff", "format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# The configuration boundary: the Reader and every function that parses options through
# one. These modules are where a config bug lives; an ``Any`` there switches mypy off.
CONFIG_MODULES = (
    "exporter/fields.py",
    "exporter/config.py",
    "exporter/webconfig.py",
    "exporter/alerting.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "exporter" / "checks").glob("*.py")),
)
_ANY_EXPR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*Any.*)$")


def _takes_a_reader(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    return any(
        isinstance(name, ast.Name) and name.id == "Reader"
        for argument in arguments
        if argument.annotation is not None
        for name in ast.walk(argument.annotation)
    )


def _config_parsing_spans(path: str) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of the Reader class and of each function taking one."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        is_reader = isinstance(node, ast.ClassDef) and node.name == "Reader"
        is_parser = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _takes_a_reader(
            node
        )
        if is_reader or is_parser:
            assert isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            spans.append((node.name, node.lineno, node.end_lineno or node.lineno))
    return spans


def test_config_parsing_has_no_any() -> None:
    """mypy --disallow-any-expr finds no expression typed Any where options are parsed.

    A Reader accessor that returned Any (or a caller that cast) would make every option
    read through it unchecked; this is the gate that keeps the boundary typed.
    """
    # Its own cache: the flag changes every module's options, and sharing the default
    # cache would make the plain strict run above start cold every time.
    proc = run("mypy", "--disallow-any-expr", "--cache-dir", ".mypy_cache/any-expr")
    spans = {path: _config_parsing_spans(path) for path in CONFIG_MODULES}
    assert sum(len(found) for found in spans.values()) > 20, spans  # the walk finds them
    found = []
    for line in proc.stdout.splitlines():
        match = _ANY_EXPR.match(line)
        if match is None or match["path"] not in spans:
            continue
        number = int(match["line"])
        for name, first, last in spans[match["path"]]:
            if first <= number <= last:
                found.append(f"{match['path']}:{number} ({name}): {match['message']}")
                break
    assert not found, "\n".join(found)


def test_no_casts_in_the_package() -> None:
    """``typing.cast`` silences the checker; the package needs none."""
    casts = []
    for path in sorted((ROOT / "exporter").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id == "cast")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "cast")
            ):
                casts.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not casts, casts


def test_reader_accessors_declare_their_types() -> None:
    """Every public Reader method (and each of its overloads) names its parameter and
    return types, none of them Any."""
    checked = 0
    for name, method in vars(Reader).items():
        if name.startswith("_") or not callable(method):
            continue
        for signature in [*get_overloads(method), method]:
            annotations = signature.__annotations__
            assert "return" in annotations, f"Reader.{name} declares no return type"
            for parameter, annotation in annotations.items():
                assert "Any" not in str(annotation), f"Reader.{name}: {parameter}: {annotation}"
            checked += 1
    assert checked > 25, checked
