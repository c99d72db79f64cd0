"""A promtool suite split so that each test evaluates only the rules that can change its
outcome, for the suite's speed: promtool's verdict on every test stays the same.

promtool evaluates every rule of the rule files at every step of every test, and a test
fails on the alerts it names or on any rule's evaluation error. The rules one test needs:
the alerts of the names it checks; every rule with a selector that can match one of its
input series or a series some rule writes (recording rules their ``record``, alerting
rules ALERTS and ALERTS_FOR_STATE); and the rules whose output those read. Any other rule
selects no series during that test, none of the needed rules reads it, and the test does
not check it: it evaluates as with no series at all, which the last part runs for every
rule over the suite's longest window. Only equality matchers rule a series out (regexes,
``!=`` and ``or`` count as matching; a label a series lacks is "", as in Prometheus), and
a rule whose selectors the walk cannot all find is an error, not a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import promql_parser
import yaml

from exporter.fields import format_duration, parse_duration

RULES_WRITE = ("ALERTS", "ALERTS_FOR_STATE")  # what an alerting rule writes


def walk(node: object) -> list[object]:
    """Every node of a parsed PromQL expression (tests/bundle reads selectors with it)."""
    if isinstance(node, promql_parser.MatrixSelector):
        return [node, *walk(node.vector_selector)]
    children: list[object] = []
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            children.append(child)
    children.extend(getattr(node, "args", None) or [])
    return [node, *(n for child in children for n in walk(child))]


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """The vector selectors of ``expr``, checked against its text: each selector prints
    one ``{``, and so do the braces inside string arguments and label values; a node the
    walk does not know would leave a selector out and fail here."""
    parsed = promql_parser.parse(expr)
    nodes = walk(parsed)
    found = [n for n in nodes if isinstance(n, promql_parser.VectorSelector)]
    strings = [n.val for n in nodes if isinstance(n, promql_parser.StringLiteral)]
    values = [m.value for s in found for m in s.matchers.matchers]
    braces = len(found) + sum(text.count("{") for text in [*strings, *values])
    assert str(parsed).count("{") == braces, f"selectors missed in {expr!r}"
    return found


def _equalities(selector: promql_parser.VectorSelector) -> dict[str, str]:
    """The selector's equality matchers, its metric name as ``__name__``; {} (matches
    anything) when it has ``or`` matchers."""
    if selector.matchers.or_matchers:
        return {}
    out = {
        m.name: m.value for m in selector.matchers.matchers if m.op == promql_parser.MatchOp.Equal
    }
    if selector.name:
        out["__name__"] = selector.name
    return out


def _series(series: str) -> dict[str, str]:
    """The labels of a promtool input series (``name{a="b"}``)."""
    selector = promql_parser.parse(series)
    assert isinstance(selector, promql_parser.VectorSelector), series
    labels = _equalities(selector)
    assert len(labels) == len(selector.matchers.matchers) + bool(selector.name), series
    return labels


class _Rule:
    def __init__(self, group: int, rule: dict[str, Any]) -> None:
        self.group = group
        self.rule = rule
        self.alert: str | None = rule.get("alert")
        self.selectors = [_equalities(s) for s in _selectors(rule["expr"])]
        self.writes = RULES_WRITE if self.alert is not None else (str(rule["record"]),)

    def reads_series(self, series: dict[str, str]) -> bool:
        return any(
            all(series.get(name, "") == value for name, value in s.items()) for s in self.selectors
        )

    def reads_name(self, name: str) -> bool:
        return any(s.get("__name__", name) == name for s in self.selectors)


def needed(test: dict[str, Any], rules: list[_Rule]) -> frozenset[int]:
    """Indices of the rules that can change this test's outcome (see the module)."""
    if test.get("promql_expr_test"):  # a query may read anything: every rule
        return frozenset(range(len(rules)))
    names = {check["alertname"] for check in test.get("alert_rule_test") or []}
    inputs = [_series(s["series"]) for s in test.get("input_series") or []]
    written = {name for rule in rules for name in rule.writes}
    chosen = {
        index
        for index, rule in enumerate(rules)
        if rule.alert in names
        or any(rule.reads_series(series) for series in inputs)
        or any(rule.reads_name(name) for name in written)
    }
    while True:  # and the rules whose output a chosen rule reads
        more = {
            index
            for index, rule in enumerate(rules)
            if index not in chosen
            and any(rules[c].reads_name(name) for c in chosen for name in rule.writes)
        }
        if not more:
            return frozenset(chosen)
        chosen |= more


def split(
    suite: dict[str, Any], rule_file: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(rule file, test file without rule_files) pairs: every test of ``suite`` in exactly
    one part, with the rules of ``rule_file`` it needs (tests that need the same rules
    share a part, in their order in the suite); then every rule with no input series at
    all over the suite's longest window."""
    groups = rule_file["groups"]
    rules = [_Rule(g, rule) for g, group in enumerate(groups) for rule in group["rules"]]
    parts: dict[frozenset[int], list[dict[str, Any]]] = {}
    for test in suite["tests"]:
        parts.setdefault(needed(test, rules), []).append(test)
    longest = max(
        parse_duration(str(check["eval_time"])) or 0.0
        for test in suite["tests"]
        for check in test.get("alert_rule_test") or []
    )

    def subset(indices: frozenset[int]) -> dict[str, Any]:
        kept = []
        for g, group in enumerate(groups):
            chosen = [r.rule for i, r in enumerate(rules) if r.group == g and i in indices]
            if chosen:
                kept.append({**group, "rules": chosen})
        return {**rule_file, "groups": kept}

    head = {k: v for k, v in suite.items() if k not in ("rule_files", "tests")}
    out = [(subset(need), {**head, "tests": tests}) for need, tests in parts.items()]
    empty = {
        "name": "every rule, no input series: no evaluation error",
        "interval": suite["tests"][0].get("interval", "1m"),
        "input_series": [],
        "promql_expr_test": [
            {
                "expr": "vector(1)",
                "eval_time": format_duration(longest),
                "exp_samples": [{"labels": "{}", "value": 1}],
            }
        ],
    }
    out.append((subset(frozenset(range(len(rules)))), {**head, "tests": [empty]}))
    return out


def write_split(test_file: Path, directory: Path) -> list[Path]:
    """The parts of ``test_file`` (its one rule file resolved against its directory, as
    promtool does) written to ``directory`` as ``<stem>.<n>.test.yml`` next to
    ``<stem>.<n>.rules.yml``; returns the test files."""
    suite = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    (rules_name,) = suite["rule_files"]
    rule_file = yaml.safe_load((test_file.parent / rules_name).read_text(encoding="utf-8"))
    stem = test_file.name.removesuffix(".test.yml")
    written = []
    for index, (rules, tests) in enumerate(split(suite, rule_file)):
        rules_path = directory / f"{stem}.{index}.rules.yml"
        rules_path.write_text(yaml.safe_dump(rules), encoding="utf-8")
        test_path = directory / f"{stem}.{index}.test.yml"
        data = {"rule_files": [rules_path.name], **tests}
        test_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        written.append(test_path)
    return written
