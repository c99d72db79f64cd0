"""tests/bundle/promtool_split.py: the split suites give promtool's verdict on the whole
suite (they run the shipped and the every-kind config's tests), with fewer rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_binary

from . import promtool_split
from .promtool_split import split, write_split

RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "g",
            "interval": "1m",
            "rules": [
                {"alert": "High", "expr": 'a{system="x"} > 5', "for": "2m"},
                {"alert": "Other", "expr": 'b{system="x"} > 5'},
                {"record": "a:doubled", "expr": '2 * a{system="x"}'},
                {"alert": "Doubled", "expr": "a:doubled > 5"},
                {"alert": "AnyA", "expr": "max(a) > 100"},  # a of any system
                {"record": "threshold", "expr": "vector(5)"},
            ],
        },
        {"name": "h", "rules": [{"alert": "OtherSystem", "expr": 'a{system="y"} > 5'}]},
    ]
}


def _test(name: str, alert: str, fires: bool, *series: str) -> dict[str, Any]:
    fired = [{"exp_labels": {"system": "x"}}] if fires else []
    return {
        "name": name,
        "interval": "1m",
        "input_series": [{"series": s, "values": "9+0x5"} for s in series],
        "alert_rule_test": [{"eval_time": "3m", "alertname": alert, "exp_alerts": fired}],
    }


SUITE: dict[str, Any] = {
    "rule_files": ["r.yml"],
    "evaluation_interval": "1m",
    "tests": [
        _test("high fires", "High", True, 'a{system="x"}'),
        _test("other fires", "Other", True, 'b{system="x"}'),
    ],
}


def _names(rules: dict[str, Any]) -> list[str]:
    return [r.get("alert") or r["record"] for g in rules["groups"] for r in g["rules"]]


def _promtool(directory: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool", "prometheus"), "test", "rules", *files],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


def test_each_test_gets_the_rules_that_read_its_series() -> None:
    parts = split(SUITE, RULES)
    assert [[t["name"] for t in tests["tests"]] for _, tests in parts[:-1]] == [
        ["high fires"],
        ["other fires"],
    ]
    # a{system="x"} is read by High, AnyA and a:doubled; Doubled reads what a rule
    # writes, so it is in every part, and so is a:doubled, which it reads.
    assert [_names(rules) for rules, _ in parts] == [
        ["High", "a:doubled", "Doubled", "AnyA"],
        ["Other", "a:doubled", "Doubled"],
        ["High", "Other", "a:doubled", "Doubled", "AnyA", "threshold", "OtherSystem"],
    ]
    assert [g["name"] for g in parts[0][0]["groups"]] == ["g"]  # groups kept whole
    assert parts[0][0]["groups"][0]["interval"] == "1m"
    assert parts[-1][1]["tests"][0]["input_series"] == []


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        # An error only another test's series cause: two `a` series match on nothing.
        ({"alert": "Clash", "expr": 'a{system="x"} * on () a{system="x"}'}, "many-to-many"),
        # An error with no series at all (promtool check rules passes it).
        (
            {"alert": "Bad", "expr": 'label_replace(vector(1), "a", "$1", "b", "(") > 0'},
            "invalid regular expression",
        ),
    ],
)
def test_a_rule_failing_the_whole_suite_fails_its_split(
    tmp_path: Path, rule: dict[str, Any], why: str
) -> None:
    rules = {"groups": [{**RULES["groups"][0], "rules": [*RULES["groups"][0]["rules"], rule]}]}
    suite = {
        **SUITE,
        "tests": [
            *SUITE["tests"],
            _test("two a series", "High", True, 'a{system="x",k="1"}', 'a{system="x",k="2"}'),
        ],
    }
    suite["tests"][2]["alert_rule_test"][0]["exp_alerts"] = [
        {"exp_labels": {"system": "x", "k": k}} for k in "12"
    ]
    (tmp_path / "r.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "s.test.yml").write_text(yaml.safe_dump(suite))
    whole = _promtool(tmp_path, "s.test.yml")
    assert whole.returncode == 1
    assert why in whole.stderr
    parts = write_split(tmp_path / "s.test.yml", tmp_path)
    result = _promtool(tmp_path, *(p.name for p in parts))
    assert result.returncode == 1
    assert why in result.stderr
    # and without the rule, both pass
    (tmp_path / "r.yml").write_text(yaml.safe_dump(RULES))
    assert _promtool(tmp_path, "s.test.yml").returncode == 0
    parts = write_split(tmp_path / "s.test.yml", tmp_path)
    assert _promtool(tmp_path, *(p.name for p in parts)).returncode == 0


def test_a_selector_the_walk_cannot_see_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Braces in a string argument are no selector: counted as such.
    text = {"alert": "S", "expr": 'label_replace(a, "m", "x{}", "", "") > 0'}
    split(SUITE, {"groups": [{"name": "g", "rules": [text]}]})
    # A node the walk does not go into hides its selectors: an error, not a smaller part.
    monkeypatch.setattr(promtool_split, "walk", lambda node: [node])
    with pytest.raises(AssertionError, match="selectors missed"):
        split(SUITE, RULES)
