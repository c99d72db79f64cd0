"""Hostile configuration files: alias bombs, deep nesting, keys that are not text, and a
fuzz over mutated profiles. Each ends in bounded time with ``where: message`` lines."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, load_data, load_file, parse_yaml
from exporter.fields import ConfigError
from exporter.redact import MAX_REASON

PROFILES = sorted((Path(__file__).parents[2] / "profiles").glob("*.yml"))
# "checks[2].url: ..." or "file.yml:3:7: invalid YAML: ..." or "file.yml: larger than...".
PROBLEM = re.compile(r"[^\s:][^:\n]*(?::\d+:\d+)?: \S.*")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"checks:\n  - {{name: x, kind: tcp, address: 'h:1', labels: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def validate(text: str, tmp_path: Path) -> list[str]:
    """The problems ``validate`` reports for ``text``, checked to be in bounded form."""
    path = tmp_path / "config.yml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_file(path, env={})
    # Before: > 30 s and 1.2 GB for the alias bomb. The bound proves "not stalled".
    assert time.monotonic() - started < 5.0
    for problem in caught.value.problems:
        assert PROBLEM.fullmatch(problem), problem
        assert len(problem) < MAX_REASON + 60
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            billion_laughs(),
            "config.yml:6:5: invalid YAML: more than 200000 values here (an alias counts all "
            "it repeats)",
        ),
        (
            "checks: " + "[" * 10_000 + "]" * 10_000,
            "config.yml:1:40: invalid YAML: nested more than 32 levels deep",
        ),
        (
            "checks:\n  - name: x\n    kind: tcp\n    address: " + "{a: " * 500 + "1" + "}" * 500,
            "config.yml:4:127: invalid YAML: nested more than 32 levels deep",
        ),
        (
            "checks:\n  - ? [a, b]\n    : 1\n",
            "config.yml:2:7: invalid YAML: keys must be text, got a list or mapping "
            '(quote it: "...")',
        ),
        (
            "checks:\n  - {name: x, kind: http, url: 'http://h/', headers: {123: x}}\n",
            'config.yml:2:55: invalid YAML: keys must be text, got 123 (quote it: "...")',
        ),
        (
            "a: &a [*a]\nchecks: []\n",
            "config.yml:1:4: invalid YAML: an alias refers to a value that contains it",
        ),
        (
            "checks:\n  - {name: x, kind: " + "k" * 100_000 + "}\n",
            'checks[0].kind: unknown kind "' + "k" * 57 + '..." (known: ',
        ),
    ],
    ids=[
        "billion-laughs",
        "deep-flow",
        "deep-values",
        "complex-key",
        "int-key",
        "alias-cycle",
        "100k-kind",
    ],
)
def test_hostile_yaml_is_refused_with_a_located_message(
    text: str, expected: str, tmp_path: Path
) -> None:
    problems = validate(text, tmp_path)
    assert len(problems) == 1
    assert problems[0].removeprefix(f"{tmp_path}/").startswith(expected), problems[0]


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    text = "checks: []\n# " + "x" * (5 * 1024 * 1024) + "\n"
    assert validate(text, tmp_path) == [f"{tmp_path}/config.yml: larger than 4 MiB"]


def test_deep_python_data_is_refused_too() -> None:
    value: object = "leaf"
    for _ in range(2000):
        value = [value]
    with pytest.raises(ConfigError) as caught:
        load_data(
            {"checks": [{"name": "x", "kind": "tcp", "address": "h:1", "labels": {"deep": value}}]},
            "<test>",
            {},
        )
    assert "checks[0].labels.deep" in caught.value.problems[0]
    assert "nested more than 32 levels deep" in caught.value.problems[0]


# Fragments an attacker (or a bad merge) puts into a profile.
HOSTILE = [
    "&a [x, x, x]",
    "*a",
    "*undefined",
    "[" * 200,
    "{" * 200,
    "? [a, b]\n  : 1",
    "{123: x}",
    "9" * 5000,
    "1e999",
    "~",
    "!!binary aGk=",
    "!!python/object/apply:os.system [id]",
    "'unterminated",
    '"\\x',
    "\t",
    "x" * 50_000,
    "<<: *a",
    "- -",
    ": :",
    "{a: 1, a: 2}",
    "${UNSET}",
    "${X:-" + "}" * 50,
    "-1s",
    "99999999999999999999d",
    "[]",
    "{}",
    "true",
    "@",
    "%YAML 1.1",
    "--- !!map",
    "\x00",
    "\ufeff",
    "\u2028",
]


Mutation = tuple[str, float, int, float]  # (action, where, fragment, cut): a small repr

MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["value", "insert", "delete", "duplicate", "truncate"]),
        st.floats(0, 1),
        st.integers(0, len(HOSTILE) - 1),
        st.floats(0, 1),
    ),
    min_size=1,
    max_size=6,
)


def mutate(profile: Path, mutations: list[Mutation]) -> str:
    lines = profile.read_text().splitlines()
    for action, where, fragment_index, cut in mutations:
        if not lines:
            break
        index = min(int(where * len(lines)), len(lines) - 1)
        fragment = HOSTILE[fragment_index]
        line = lines[index]
        if action == "value":
            key, sep, _ = line.partition(": ")
            lines[index] = f"{key}: {fragment}" if sep else f"{line} {fragment}"
        elif action == "insert":
            indent = line[: len(line) - len(line.lstrip())]
            lines.insert(index, f"{indent}{fragment}")
        elif action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, line)
        else:
            lines[index] = line[: int(cut * len(line))]
    return "\n".join(lines) + "\n"


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.sampled_from(PROFILES), MUTATIONS)
def test_mutated_profiles_validate_in_bounded_time_without_tracebacks(
    profile: Path, mutations: list[Mutation]
) -> None:
    text = mutate(profile, mutations)
    started = time.monotonic()
    try:
        data = parse_yaml(text, "profile.yml")
        config = load_data(data, "profile.yml", {})
    except ConfigError as exc:
        problems = exc.problems
    else:
        assert isinstance(config, Config)
        config.redacted()
        problems = ["validated: fine"]
    assert problems
    for problem in problems:
        assert PROBLEM.fullmatch(problem), problem
        assert len(problem) < MAX_REASON + 60
    assert time.monotonic() - started < 5.0


def test_validate_command_reports_an_alias_bomb_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(billion_laughs())
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "validate", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "invalid configuration:",
        f"  {path}:6:5: invalid YAML: more than 200000 values here (an alias counts all it "
        "repeats)",
    ]


def test_too_many_values_stop_composing_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value limit is checked while composing (PyYAML reads ~40,000 values a second):
    a 4 MiB file is refused after MAX_NODES values, not after all of them."""
    monkeypatch.setattr("exporter.config.MAX_NODES", 1000)
    text = "checks:\n" + "".join(
        f"  - {{name: c{i}, kind: tcp, address: 'h:1'}}\n" for i in range(1000)
    )
    (problem,) = validate(text, tmp_path)
    assert (
        problem == f"{tmp_path}/config.yml:144:18: invalid YAML: more than 1000 values in the file"
    )
