"""The label matchers the mutation test drops and the isolation tests dodge, read with
promql_parser (a PromQL parser we did not write) as the oracle."""

from __future__ import annotations

import promql_parser
import pytest

from exporter.bundle.profile import Profile
from exporter.bundle.promql import Matcher, label_matchers, unquoted, without_matcher
from exporter.bundle.rules import all_alerts
from tests.bundle.promtool_split import walk

# promql_parser's MatchOp is not hashable: keyed by its name
OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def parsed_matchers(expr: str) -> list[tuple[str, str, str]]:
    """(label, op, unescaped value) of every matcher promql_parser finds, metric names
    (``__name__``) left out, sorted: the parser does not keep the text's order."""
    out = []
    for node in walk(promql_parser.parse(expr)):
        if isinstance(node, promql_parser.VectorSelector):
            out += [
                (m.name, OPS[str(m.op)], m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            ]
    return sorted(out)


def ours(matchers: list[Matcher]) -> list[tuple[str, str, str]]:
    return sorted((m.label, m.op, unquoted(m.value)) for m in matchers)


def test_label_matchers_are_the_parsers(profiles: list[Profile]) -> None:
    """Every rule of every profile (string arguments with braces in them included: the
    NoData guards' label_replace)."""
    exprs = [a.expr() for p in profiles for a in all_alerts(p)]
    assert any('\\"' in e for e in exprs)  # a string literal holding a selector
    for expr in exprs:
        assert ours(label_matchers(expr)) == parsed_matchers(expr), expr


def test_without_matcher_drops_that_one_only(profiles: list[Profile]) -> None:
    for expr in {a.expr() for p in profiles for a in all_alerts(p)}:
        matchers = label_matchers(expr)
        for index, matcher in enumerate(matchers):
            dropped = without_matcher(expr, matcher)
            rest = matchers[:index] + matchers[index + 1 :]
            assert parsed_matchers(dropped) == ours(rest), (expr, matcher)


@pytest.mark.parametrize(
    ("selector", "rejected"),
    [
        ('x{check="redis"}', "decoy"),
        ('x{check="decoy"}', "decoy-0"),
        ('x{fstype!~"tmpfs|overlay|squashfs"}', "tmpfs"),
        ('x{name!=""}', ""),  # the label absent
        ('x{name=~"cctv-.*"}', "decoy"),
        ('x{item=~"redlightcameralist|atlas\\\\-of-surveillance"}', "decoy"),
        ('x{state!~"client_.*"}', "client_.*"),
        ('x{version=~"[0-5]\\\\..*"}', "decoy"),
        ('x{status!="200"}', "200"),
        ('x{queue!="a|b"}', "a|b"),  # one value, not alternatives
        ('x{a=~".*"}', None),  # selects every value
    ],
)
def test_rejected_value_is_not_selected(selector: str, rejected: str | None) -> None:
    (matcher,) = label_matchers(selector)
    assert matcher.rejected_value() == rejected
    if rejected is not None:
        assert not matcher.matches(rejected)


def test_regex_matchers_read_promql_escapes() -> None:
    (matcher,) = label_matchers('x{item=~"redlightcameralist|atlas\\\\-of-surveillance"}')
    assert matcher.matches("atlas-of-surveillance")
    assert matcher.matches("redlightcameralist")
    assert not matcher.matches("atlas-of-surveillance-2")  # anchored, as Prometheus is
    (version,) = label_matchers('x{version=~"[0-5]\\\\..*"}')
    assert version.matches("5.0.7")
    assert not version.matches("7.2.4")
    assert not version.matches("50")
