"""promtool unit tests for every alert, built from each alert's ``test:`` block.

For each alert two tests that pin it: the inputs just on the quiet side of the threshold
(within 1 % of it, or one step of an integer signal) stay silent at the moment the alert
could first fire and after its rate windows have filled; the inputs just past it stay
silent one evaluation before ``for`` has elapsed and fire exactly when it has, with the
expected labels and annotations (runbook_url included). So moving a threshold 5 % toward
the quiet side or lengthening ``for`` by one evaluation fails them
(:mod:`exporter.bundle.mutations` proves it for every alert). Inputs are written in
terms of the threshold, so the numbers in the tests come from the same place as the
numbers in the rules. And one isolation test per label matcher of the rule
(:func:`decoy_tests`): the firing inputs with that label set to a value the matcher
rejects (another system, ``check="decoy"``) stay silent, so dropping any matcher fails
a test too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from exporter.bundle.guards import guards, required_of
from exporter.bundle.profile import (
    EXPORTER_JOB,
    LABEL_REF,
    SYSTEM_LABEL,
    Alert,
    Profile,
    evaluate,
    fill,
    number,
)
from exporter.bundle.promql import DECOYS, MATCHER, Matcher, label_matchers, unquoted
from exporter.bundle.render import GENERATED, dump_yaml, threshold_text, value_text
from exporter.bundle.rules import alert_annotations, alert_labels, runbook_url
from exporter.fields import format_duration, parse_duration

STEP = 60.0  # seconds between input samples and between rule evaluations
# A range (`[5m]`, a subquery's `[1h:5m]`) or an offset: how far back the rule looks.
_DURATION = r"[0-9]+[smhdwy][0-9smhdwy]*"
LOOKS_BACK = re.compile(rf"\[({_DURATION})(?::(?:{_DURATION})?)?\]|\boffset\s+({_DURATION})")
# The system label the isolation tests give the inputs of a system that is not this one.
OTHER_SYSTEM = "another-system"
# In the name of every isolation test (decoy_tests, absent_tests) and no other: the
# mutation test runs a dropped-matcher mutant against these, the others against the rest.
ISOLATION = (" while only ", " stands for ")
# The selector of an ``absent(...)``: group 1 is the selector's text.
_ABSENT = re.compile(r"\babsent\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*\{[^{}]*\})\s*\)")


def with_labels(series: str, labels: dict[str, str]) -> str:
    """A promtool series string (``name{a="b"}``) with these labels added."""
    extra = ",".join(f'{name}="{value}"' for name, value in labels.items())
    if series.endswith("}"):
        inner = series[series.index("{") + 1 : -1].strip()
        return f"{series[:-1]}{',' if inner else ''}{extra}}}"
    return f"{series}{{{extra}}}"


def _values(shape: str, value: float, steps: int) -> str:
    if shape == "gauge":
        return f"{number(value)}+0x{steps}"
    if shape == "rate":  # a counter growing by `value` per second
        return f"0+{number(value * STEP)}x{steps}"
    # age: a timestamp `value` seconds behind the evaluation time at every step
    return f"{number(-value)}+{number(STEP)}x{steps}"


def _inputs(alert: Alert, side: str, steps: int, system: str) -> list[dict[str, str]]:
    """The test's input series on one side of the threshold, as series of ``system``."""
    names = {"threshold": alert.threshold}
    out = []
    for entry in alert.test.series:
        given = entry.quiet if side == "quiet" else entry.fire
        series = with_labels(fill(entry.series, threshold=alert.threshold), {SYSTEM_LABEL: system})
        if entry.shape == "values":
            values = fill(given, threshold=alert.threshold, steps=steps)
        else:
            values = _values(entry.shape, evaluate(given, names), steps)
        out.append({"series": series, "values": values})
    return out


def expected_value(alert: Alert) -> float:
    if not alert.test.series:  # a guard: its value is 1, and no text shows it
        return 1.0
    names = {"threshold": alert.threshold}
    first = alert.test.series[0]
    if first.shape == "values":  # the profile gives the value (checked when loading)
        return evaluate(alert.test.value or "threshold", names)
    fire = evaluate(first.fire, names)
    quiet = evaluate(first.quiet, names)
    if alert.test.value is None:
        return fire
    return evaluate(alert.test.value, {**names, "fire": fire, "quiet": quiet})


def crossing(alert: Alert) -> float:
    """Seconds from the first sample to the first evaluation with the firing inputs
    past the threshold: the test's ``settle``, else 0 for gauges and ages and one step
    for rates (two samples)."""
    if alert.test.settle is not None:
        return alert.test.settle
    return STEP if any(e.shape == "rate" for e in alert.test.series) else 0.0


def longest_range(alert: Alert) -> float:
    """How far back the rule looks (the longest ``[range]`` plus the longest ``offset``;
    0 without either): a quiet input is held that long past ``for``, so a window that
    fills slowly cannot hide a firing."""
    ranges, offsets = [0.0], [0.0]
    for window, offset in LOOKS_BACK.findall(alert.expr()):
        ranges.append(parse_duration(window) or 0.0 if window else 0.0)
        offsets.append(parse_duration(offset) or 0.0 if offset else 0.0)
    return max(ranges) + max(offsets)


def expected_annotations(
    profile: Profile, alert: Alert, alert_labels: dict[str, str]
) -> dict[str, str]:
    """The annotations as Prometheus renders them for the firing test alert."""
    rendered = value_text(alert.unit, expected_value(alert))
    values = {"threshold": threshold_text(alert), "value": rendered}

    def render(template: str) -> str:
        text = fill(template, **values)
        return LABEL_REF.sub(lambda m: alert_labels.get(m[1], ""), text)

    out = alert_annotations(profile, alert)
    out["summary"] = render(alert.summary)
    out["description"] = render(alert.description)
    out["runbook_url"] = runbook_url(profile, alert)
    return out


def alert_tests(profile: Profile, alert: Alert) -> list[dict[str, Any]]:
    """The tests of one alert (see the module docstring), plus isolation: another
    system's series never fire it, and, for an alert that fires on absent series, no
    series at all fire it as well."""
    start = crossing(alert)
    fires_at = start + alert.for_
    # Quiet: silent when a firing input would first fire, and still silent once every
    # window of the rule has filled and `for` has elapsed again.
    late = max(start, longest_range(alert)) + alert.for_ + STEP
    steps = int(late // STEP) + 2
    exp_labels = {
        **dict(alert.test.labels),
        SYSTEM_LABEL: profile.system,
        **alert_labels(profile, alert),
    }
    silent = [
        {"eval_time": format_duration(at), "alertname": alert.name, "exp_alerts": []}
        for at in sorted({fires_at, late})
    ]
    quiet_inputs = _inputs(alert, "quiet", steps, profile.system)
    fire_inputs = _inputs(alert, "fire", steps, profile.system)
    # Another system's healthy series alongside: they must not change the outcome.
    beside = fire_inputs + _inputs(alert, "quiet", steps, OTHER_SYSTEM)
    tests: list[dict[str, Any]] = [
        {
            "name": f"{alert.name}: quiet just short of {threshold_text(alert)}",
            "interval": format_duration(STEP),
            "input_series": quiet_inputs,
            "alert_rule_test": silent,
        },
        {
            "name": f"{alert.name}: fires past {threshold_text(alert)} once for elapses",
            "interval": format_duration(STEP),
            "input_series": beside,
            "alert_rule_test": _fires_at(profile, alert, fires_at, [exp_labels]),
        },
        *decoy_tests(alert, quiet_inputs, fire_inputs, silent),
    ]
    if _ABSENT.search(alert.expr()) and alert.test.absent_labels is None:
        tests += absent_tests(profile, alert, beside, fires_at, exp_labels, silent)
    if alert.test.absent_labels is not None:
        # No series of this system at all (the target is gone): it fires all the same.
        labels = {
            **dict(alert.test.absent_labels),
            SYSTEM_LABEL: profile.system,
            **alert_labels(profile, alert),
        }
        tests.append(
            {
                "name": f"{alert.name}: fires when its series are absent",
                "interval": format_duration(STEP),
                "input_series": _inputs(alert, "quiet", steps, OTHER_SYSTEM),
                "alert_rule_test": _fires_at(profile, alert, alert.for_, [labels]),
            }
        )
    return tests


def _labels(series: str) -> dict[str, str]:
    """An input series' labels, as written."""
    return {m[1]: m[3] for m in MATCHER.finditer(series, series.find("{") + 1)}


def _relabelled(series: str, matcher: Matcher, value: str) -> str | None:
    """An input series (``name{a="b"}``) with ``matcher``'s label set to ``value`` (left
    out when ""); None when the series lacks the label or the matcher does not select it."""
    if not series.endswith("}"):
        return None
    labels = _labels(series)
    if matcher.label not in labels or not matcher.matches(labels[matcher.label]):
        return None
    labels[matcher.label] = value
    if not value:
        del labels[matcher.label]
    body = ",".join(f'{name}="{text}"' for name, text in labels.items())
    return f"{series[: series.index('{')]}{{{body}}}"


def decoy_tests(
    alert: Alert,
    quiet: list[dict[str, str]],
    fire: list[dict[str, str]],
    silent: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Isolation, one test per label matcher of the rule: the firing inputs with that
    label set to a value the matcher rejects stay silent (exp_alerts lists every alert
    of that name: none). Firing inputs without the label stay as they are; when there
    are none the quiet inputs go beside (an absent() in the rule sees its series). The
    system label's value is another system's ("decoy" for a system called that); any
    other label's is one its matcher rejects (``check="decoy"``, ``fstype="tmpfs"`` for
    ``fstype!~"tmpfs|..."``). The rule without that matcher fires on them: the mutation
    test's dropped-matcher mutants prove each one fails."""
    shown = threshold_text(alert)
    tests: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    matchers = label_matchers(alert.expr())
    # the system's test first, as it was before the other labels had one
    matchers.sort(key=lambda m: m.label != SYSTEM_LABEL)
    for matcher in matchers:
        value = matcher.rejected_value()
        if matcher.label == SYSTEM_LABEL and not matcher.matches(OTHER_SYSTEM):
            value = OTHER_SYSTEM  # else this system is called that: "decoy" then
        if value is None:
            continue
        moved = [
            {**each, "series": series}
            for each in fire
            if (series := _relabelled(each["series"], matcher, value)) is not None
        ]
        key = tuple(each["series"] for each in moved)
        if not moved or key in seen:
            continue
        seen.add(key)
        # Firing series without the label (NoWorkers' bullmq_queue_workers 0 beside the
        # relabelled jobs) stay as they fire, and the quiet ones stay out: their quiet
        # twins would silence the rule whatever the matcher.
        kept = [each for each in fire if matcher.label not in _labels(each["series"])]
        beside = kept if kept else quiet
        if matcher.label == SYSTEM_LABEL:
            where = "another system"
        else:
            where = f'{matcher.label}="{value}"' if value else f"a series without {matcher.label}"
        tests.append(
            {
                "name": f"{alert.name}: quiet{ISOLATION[0]}{where} is past {shown}",
                "interval": format_duration(STEP),
                "input_series": moved + beside,
                "alert_rule_test": silent,
            }
        )
    return tests


def absent_tests(
    profile: Profile,
    alert: Alert,
    fire: list[dict[str, str]],
    fires_at: float,
    fired: dict[str, str],
    silent: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The isolation tests of a rule that fires on ``absent(...)`` selectors only
    (targets that must exist, while something else holds): another value of a label
    does not stand for the one a matcher selects. The firing inputs with the series a
    matcher selects relabelled: inside an ``absent()`` that target is now missing too
    and fires as well, labelled by the selector's equality matchers (what absent()
    returns); anywhere else the condition no longer holds and nothing fires."""
    expr = alert.expr()
    inside = [(m.start(1), m.end(1)) for m in _ABSENT.finditer(expr)]
    tests: list[dict[str, Any]] = []
    for matcher in label_matchers(expr):
        value = matcher.rejected_value()
        if matcher.label == SYSTEM_LABEL or value is None:
            continue
        moved = [
            {**each, "series": _relabelled(each["series"], matcher, value) or each["series"]}
            for each in fire
        ]
        if moved == fire:
            continue
        where = f'{matcher.label}="{value}"{ISOLATION[1]}{expr[matcher.start : matcher.end]}'
        span = next(((a, b) for a, b in inside if a <= matcher.start < b), None)
        if span is None:
            checks, outcome = silent, "quiet"
        else:
            target = {m.label: unquoted(m.value) for m in label_matchers(expr[span[0] : span[1]])}
            labels = {**target, **alert_labels(profile, alert)}
            if labels == fired:  # the target the firing inputs already lack
                continue
            checks, outcome = _fires_at(profile, alert, fires_at, [fired, labels]), "fires"
        tests.append(
            {
                "name": f"{alert.name}: {outcome} when {where}",
                "interval": format_duration(STEP),
                "input_series": moved,
                "alert_rule_test": checks,
            }
        )
    return tests


def is_isolation(test: dict[str, Any]) -> bool:
    """Whether a promtool test is one of decoy_tests' or absent_tests'."""
    return any(part in test["name"] for part in ISOLATION)


def _fires_at(
    profile: Profile, alert: Alert, fires_at: float, labels: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """Silent one evaluation before ``fires_at`` (the crossing plus ``for``), then
    firing with these labels."""
    checks: list[dict[str, Any]] = []
    if fires_at >= STEP:
        before = format_duration(fires_at - STEP)
        checks.append({"eval_time": before, "alertname": alert.name, "exp_alerts": []})
    checks.append(
        {
            "eval_time": format_duration(fires_at),
            "alertname": alert.name,
            "exp_alerts": [
                {"exp_labels": each, "exp_annotations": expected_annotations(profile, alert, each)}
                for each in labels
            ],
        }
    )
    return checks


# The exporter instance the guard tests scrape, and another job's target beside it.
EXPORTER_TARGET = {"instance": "exporter:9711", "job": EXPORTER_JOB}
OTHER_TARGET = {"instance": "node:9100", "job": "node-exporter"}
OTHER_JOB_UP = f"quiet{ISOLATION[0]}another job's target is up (ExporterDown pages)"


def guard_tests(profile: Profile, guard_alert: Alert) -> list[dict[str, Any]]:
    """promtool tests of a missing-data guard: quiet while every series it needs is
    there; firing (one alert per missing series, ``missing`` naming it) when the check
    fails and the series are gone; quiet when the exporter itself is down (ExporterDown
    pages) and when only another system's series are missing. Isolation (each label
    matcher of the guard needed): quiet while only another job's target is up, and
    firing while only series with another value of a label it requires are there."""
    required = required_of(profile, guard_alert)
    end = guard_alert.for_ + 2 * STEP
    steps = int(end // STEP) + 2
    at_end = format_duration(end)
    checks = sorted({v for r in required for k, v in r.labels if k == "check"})

    def up(value: int, system: str, target: dict[str, str] = EXPORTER_TARGET) -> dict[str, str]:
        labels = {**target, SYSTEM_LABEL: system}
        return {"series": with_labels("up", labels), "values": f"{value}+0x{steps}"}

    def data(system: str) -> list[dict[str, str]]:
        target = {**EXPORTER_TARGET, SYSTEM_LABEL: system}
        return [{"series": r.selector(**target), "values": f"1+0x{steps}"} for r in required]

    def failing(system: str) -> list[dict[str, str]]:
        target = {**EXPORTER_TARGET, SYSTEM_LABEL: system}
        return [
            {
                "series": with_labels(f'runbook_exporter_check_success{{check="{c}"}}', target),
                "values": f"0+0x{steps}",
            }
            for c in checks
        ]

    def silent(name: str, inputs: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "name": f"{guard_alert.name}: {name}",
            "interval": format_duration(STEP),
            "input_series": inputs,
            "alert_rule_test": [
                {"eval_time": at_end, "alertname": guard_alert.name, "exp_alerts": []}
            ],
        }

    fired = [
        {
            **EXPORTER_TARGET,
            SYSTEM_LABEL: profile.system,
            "missing": r.selector(),
            **dict(r.labels),
            **alert_labels(profile, guard_alert),
        }
        for r in required
    ]
    relabelled = []
    for label in dict.fromkeys(k for r in required for k, _ in r.labels):
        decoy = [
            replace(
                r,
                labels=tuple(
                    (k, next(d for d in DECOYS if d != v) if k == label else v) for k, v in r.labels
                ),
            )
            for r in required
        ]
        target = {**EXPORTER_TARGET, SYSTEM_LABEL: profile.system}
        inputs = {d.selector(**target): f"1+0x{steps}" for d in decoy}  # one per series
        relabelled.append(
            {
                "name": f"{guard_alert.name}: fires{ISOLATION[0]}another {label}'s series exist",
                "interval": format_duration(STEP),
                "input_series": [
                    up(1, profile.system),
                    *({"series": k, "values": v} for k, v in inputs.items()),
                ],
                "alert_rule_test": _fires_at(
                    profile,
                    guard_alert,
                    guard_alert.for_,
                    [f for f, r in zip(fired, required, strict=True) if label in dict(r.labels)],
                ),
            }
        )
    return [
        silent("quiet while its series are there", [up(1, profile.system), *data(profile.system)]),
        {
            "name": f"{guard_alert.name}: fires when the check fails and its series vanish",
            "interval": format_duration(STEP),
            "input_series": [
                up(1, profile.system),
                *failing(profile.system),
                up(1, OTHER_SYSTEM),
                *data(OTHER_SYSTEM),
            ],
            # Missing from the first sample on: pending at once, firing at `for`.
            "alert_rule_test": _fires_at(profile, guard_alert, guard_alert.for_, fired),
        },
        silent("quiet while the exporter is down (ExporterDown pages)", [up(0, profile.system)]),
        silent(
            "quiet while another system's series alone are missing",
            [up(1, profile.system), *data(profile.system), up(1, OTHER_SYSTEM)],
        ),
        silent(OTHER_JOB_UP, [up(0, profile.system), up(1, profile.system, OTHER_TARGET)]),
        *relabelled,
    ]


def tests_of(profile: Profile, alert: Alert) -> list[dict[str, Any]]:
    """The promtool tests of any alert of the profile: a generated one's come from its
    kind default (exporter/bundle/defaults.py), a missing-data guard's from its alert,
    the others' from their ``test:`` block."""
    from exporter.bundle.defaults import generated_tests

    for item in profile.generated:
        if item.alert.name == alert.name:
            return generated_tests(profile, item)
    if alert.guarded is not None:
        return guard_tests(profile, alert)
    return alert_tests(profile, alert)


def promtool_tests(profile: Profile, rules_path: str) -> str:
    data = {
        "rule_files": [rules_path],
        "evaluation_interval": format_duration(STEP),
        "tests": [
            *(t for alert in profile.alerts for t in tests_of(profile, alert)),
            *(t for g in guards(profile) for t in guard_tests(profile, g)),
        ],
    }
    return dump_yaml(data, GENERATED.format(source=f"profiles/{profile.slug}.yml"))


TESTS_DIR = "rules/tests"


def test_files(profiles: list[Profile]) -> dict[str, str]:
    """``rules/tests/<slug>.test.yml`` per profile, reading ``../<slug>.rules.yml`` (promtool
    resolves rule files against the test file's directory): ``bundle test`` runs them."""
    return {
        f"{TESTS_DIR}/{p.slug}.test.yml": promtool_tests(p, f"../{p.slug}.rules.yml")
        for p in profiles
    }


def promtool_in_parallel(
    promtool: str, files: list[Path], cwd: Path | None = None, merged: bool = False
) -> tuple[bool, str, str]:
    """``promtool test rules`` over ``files``, one process per CPU: promtool evaluates a
    file's tests on one core, so the five profiles (or a suite split in parts) take the
    time of the largest share, not of all. Returns (any failed, stdout, stderr), each
    process's output whole, in the order of the shares; ``merged``: stderr into stdout,
    in the order promtool wrote them (its FAILED lines go to stderr)."""
    import os
    import subprocess

    workers = max(1, min(len(files), os.cpu_count() or 1))
    # Largest first, each to the least loaded worker: a file's size tracks its cost.
    shares: list[list[Path]] = [[] for _ in range(workers)]
    loads = [0] * workers
    sizes = {f: (cwd / f if cwd else f).stat().st_size for f in files}
    for path in sorted(files, key=sizes.__getitem__, reverse=True):
        index = loads.index(min(loads))
        shares[index].append(path)
        loads[index] += sizes[path]
    running = [
        subprocess.Popen(
            [promtool, "test", "rules", *map(str, sorted(share))],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
        )
        for share in shares
        if share
    ]
    failed, outs, errs = False, [], []
    for process in running:
        out, err = process.communicate()
        outs.append(out)
        errs.append(err or "")
        failed = failed or process.returncode != 0
    return failed, "".join(outs), "".join(errs)
