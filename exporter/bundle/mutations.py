"""Mutation test of the generated promtool tests: do they hold every threshold in place?

For every alert of a profile these mutants of its rule: the threshold moved 5 % toward
the quiet side, and ``for`` one evaluation interval longer (what issue 15 asks), plus the
threshold moved 1 % toward the quiet side and 1 % toward the firing side, which fail only
when the quiet and the firing inputs sit within 1 % of the threshold. A move is at least
the signal's smallest step, 1, for counts and booleans, where a smaller move changes
nothing. And every label matcher dropped (from every selector that has it: one side of
``a{check="x"} / b{check="x"}`` alone selects the same series, so dropping it there is no
change any test could see), run against the isolation tests only
(:func:`exporter.bundle.promtests.decoy_tests`); the other mutants against the rest. A
missing-data guard gets the ``for`` and the matcher mutants (its ``> 0`` over series that
are there or not is no threshold).
Each mutant is written as a rule file with that one rule, next to a test file with those
of the alert's tests (:func:`exporter.bundle.promtests.tests_of`), and promtool runs all
of them in one call. A mutant whose tests still pass *survives*: the tests do not pin
that number or matcher.
Annotations are not mutated (they print the threshold, and a test that fails only on the
text would prove nothing about the value).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.bundle.guards import guards
from exporter.bundle.profile import Alert, Profile, number
from exporter.bundle.promql import label_matchers, without_matcher
from exporter.bundle.promtests import STEP, is_isolation, promtool_in_parallel, tests_of
from exporter.bundle.rules import all_alerts, rules_file
from exporter.fields import format_duration

# Units whose values are whole numbers: a move smaller than 1 cannot change the outcome.
INTEGER_UNITS = ("count", "bool")
FOR_LONGER = "for one evaluation longer"
MATCHER_DROPPED = "label matcher dropped"
# (name, share of the threshold, toward the quiet side?) of each threshold mutant
THRESHOLD_MOVES = (
    ("threshold 5% toward quiet", 0.05, True),
    ("threshold 1% toward quiet", 0.01, True),
    ("threshold 1% toward firing", 0.01, False),
)


@dataclass(frozen=True)
class Mutation:
    """One mutant: ``what`` changed in ``alert``'s rule, and the files that test it."""

    profile: str
    alert: str
    kind: str  # a name of THRESHOLD_MOVES, FOR_LONGER or MATCHER_DROPPED
    what: str  # "> 0.01 -> > 0.0095", "5m -> 5m15s", 'check="redis" (2 selectors)'
    rules: dict[str, Any]  # a rule file holding the mutated rule only
    tests: list[dict[str, Any]]  # the alert's promtool tests


def moved_threshold(alert: Alert, share: float, quiet_side: bool) -> float | None:
    """The threshold moved by ``share`` of itself (at least one step of an integer
    signal) toward the quiet or the firing side. ``==`` and ``!=`` have no sides: the
    inputs sit at the threshold, so any move breaks the test of that side, and the move
    is upward; None for the firing side of ``!=`` (every other value fires)."""
    delta = abs(alert.threshold) * share
    if alert.unit in INTEGER_UNITS:
        delta = max(delta, 1.0)
    elif delta == 0:
        delta = share
    if alert.op in ("==", "!="):
        return None if alert.op == "!=" and not quiet_side else alert.threshold + delta
    down = (alert.op in (">", ">=")) == quiet_side
    return alert.threshold - delta if down else alert.threshold + delta


def _rules(profile: Profile) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each alert's group (without rules) and rule as the generated rule file has them,
    by alert name: the file rendered and read once per profile, not once per alert."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for group in yaml.safe_load(rules_file(profile))["groups"]:
        head = {k: v for k, v in group.items() if k != "rules"}
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], (head, rule))
    return out


def _rule(
    rules: dict[str, tuple[dict[str, Any], dict[str, Any]]], profile: Profile, alert: Alert
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The alert's group (without rules) and rule (the first of that name, as before)."""
    if alert.name not in rules:
        raise LookupError(f"{alert.name} is not in the rule file of {profile.slug}")
    return rules[alert.name]


def _is_guard(profile: Profile, alert: Alert) -> bool:
    """A generated missing-data or absent alert: ``== 1`` over series that are there or
    not is no threshold either."""
    return alert.name in profile.guard_names


def profile_mutations(profile: Profile) -> list[Mutation]:
    """The mutants of every alert of a profile, and the ``for`` and matcher mutants of
    every missing-data guard (a guard's ``> 0`` over series that are there or not is no
    threshold: moving it changes nothing)."""
    out: list[Mutation] = []
    rules = _rules(profile)
    for alert in all_alerts(profile):
        group, rule = _rule(rules, profile, alert)
        if rule["expr"] != alert.expr():  # the mutation would not hit the real rule
            raise AssertionError(f"{alert.name}: the rule's expr is not {alert.expr()!r}")
        changes: list[tuple[str, str, dict[str, Any]]] = []
        tests = tests_of(profile, alert)
        guard = alert.guarded is not None or _is_guard(profile, alert)
        if not guard:
            for kind, share, quiet_side in THRESHOLD_MOVES:
                moved = moved_threshold(alert, share, quiet_side)
                if moved is not None:
                    what = f"{alert.op} {number(alert.threshold)} -> {alert.op} {number(moved)}"
                    changes.append((kind, what, {**rule, "expr": alert.expr(moved)}))
        changes.extend(_matchers_dropped(rule))
        longer = alert.for_ + profile.evaluation_interval
        what = f"{format_duration(alert.for_)} -> {format_duration(longer)}"
        changes.append((FOR_LONGER, what, {**rule, "for": format_duration(longer)}))
        # Each mutant of an alert against the tests written to kill it: a dropped matcher
        # against the isolation tests, a moved number against the others (half the
        # promtool work of every mutant against every test, and a stronger claim). A
        # guard's few tests are all about which series are there: all of them.
        isolation = [t for t in tests if guard or is_isolation(t)]
        others = [t for t in tests if guard or not is_isolation(t)]
        out.extend(
            Mutation(
                profile=profile.slug,
                alert=alert.name,
                kind=kind,
                what=what,
                rules={"groups": [{**group, "rules": [changed]}]},
                tests=isolation if kind == MATCHER_DROPPED else others,
            )
            for kind, what, changed in changes
        )
    return out


def _matchers_dropped(rule: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """One mutant per distinct label matcher of the rule, dropped wherever it appears."""
    by_text: dict[str, list[int]] = {}
    matchers = label_matchers(rule["expr"])
    for index, matcher in enumerate(matchers):
        by_text.setdefault(rule["expr"][matcher.start : matcher.end], []).append(index)
    out = []
    for text, indexes in by_text.items():
        expr = rule["expr"]
        for index in reversed(indexes):  # from the end: earlier positions stay valid
            expr = without_matcher(expr, matchers[index])
        where = f" ({len(indexes)} selectors)" if len(indexes) > 1 else ""
        out.append((MATCHER_DROPPED, f"{text}{where}", {**rule, "expr": expr}))
    return out


def counts(profiles: Sequence[Profile]) -> tuple[int, int]:
    """(alerts with a threshold, missing-data guards) over ``profiles``: the guards are
    guards.py's and the generated NoData/Absent alerts, which get the ``for`` mutant only."""
    alerts = guarded = 0
    for profile in profiles:
        own = sum(_is_guard(profile, a) for a in profile.alerts)
        alerts += len(profile.alerts) - own
        guarded += own + len(guards(profile))
    return alerts, guarded


def mutations(profiles: Sequence[Profile]) -> list[Mutation]:
    """Every mutant of every alert of every profile."""
    return [m for p in profiles for m in profile_mutations(p)]


_OUTCOME = re.compile(r"^Unit Testing:\s+(\S+)\s*\n\s*(SUCCESS|FAILED)", re.M)


def survivors(promtool: str, mutants: Sequence[Mutation], directory: Path) -> list[Mutation]:
    """Run every mutant's tests with promtool in ``directory``; return the mutants
    whose tests passed. Raises RuntimeError when promtool's output misses a file."""
    names = []
    for index, mutant in enumerate(mutants):
        rules, tests = f"m{index}.rules.yml", f"m{index}.test.yml"
        (directory / rules).write_text(yaml.safe_dump(mutant.rules), encoding="utf-8")
        data = {
            "rule_files": [rules],
            "evaluation_interval": format_duration(STEP),
            "tests": mutant.tests,
        }
        (directory / tests).write_text(yaml.safe_dump(data), encoding="utf-8")
        names.append(tests)
    if not names:
        return []
    # One group of files per CPU (promtool is single-threaded); FAILED goes to stderr:
    # merged into stdout, each process's lines stay in order.
    _, output, _ = promtool_in_parallel(
        promtool, [Path(n) for n in names], cwd=directory, merged=True
    )
    outcome = dict(_OUTCOME.findall(output))
    missing = [n for n in names if n not in outcome]
    if missing:
        raise RuntimeError(
            f"promtool reported nothing for {len(missing)} mutants ({missing[0]} first):\n"
            + output[-2000:]
        )
    return [m for m, n in zip(mutants, names, strict=True) if outcome[n] == "SUCCESS"]
