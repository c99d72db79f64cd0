"""promtool unit tests for every alert, built from each alert's ``test:`` block.

For each alert two tests: the inputs just on the quiet side of the threshold stay silent
after the alert's ``for`` has long elapsed; the inputs on the firing side stay silent one
evaluation before ``for`` elapses and then fire with the expected labels and annotations
(runbook_url included). Inputs are written in terms of the threshold, so the numbers in
the tests come from the same place as the numbers in the rules.
"""

from __future__ import annotations

from typing import Any

from exporter.bundle.profile import (
    LABEL_REF,
    SYSTEM_LABEL,
    Alert,
    Profile,
    evaluate,
    fill,
    number,
)
from exporter.bundle.render import GENERATED, dump_yaml, threshold_text, value_text
from exporter.bundle.rules import alert_annotations, alert_labels, runbook_url
from exporter.fields import format_duration

STEP = 60.0  # seconds between input samples and between rule evaluations
# The system label the isolation tests give the inputs of a system that is not this one.
OTHER_SYSTEM = "another-system"


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
        value = evaluate(entry.quiet if side == "quiet" else entry.fire, names)
        series = with_labels(fill(entry.series, threshold=alert.threshold),
                             {SYSTEM_LABEL: system})
        out.append({"series": series, "values": _values(entry.shape, value, steps)})
    return out


def expected_value(alert: Alert) -> float:
    names = {"threshold": alert.threshold}
    first = alert.test.series[0]
    fire = evaluate(first.fire, names)
    quiet = evaluate(first.quiet, names)
    if alert.test.value is None:
        return fire
    return evaluate(alert.test.value, {**names, "fire": fire, "quiet": quiet})


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
    starts_late = any(entry.shape == "rate" for entry in alert.test.series)
    start = STEP if starts_late else 0.0  # a rate needs two samples
    settle = max(alert.test.settle, STEP)
    end = start + alert.for_ + settle
    steps = int(end // STEP) + 2
    at_end = format_duration(end)
    exp_labels = {
        **dict(alert.test.labels),
        SYSTEM_LABEL: profile.system,
        **alert_labels(profile, alert),
    }
    quiet = {
        "name": f"{alert.name}: quiet just short of {threshold_text(alert)}",
        "interval": format_duration(STEP),
        "input_series": _inputs(alert, "quiet", steps, profile.system),
        "alert_rule_test": [{"eval_time": at_end, "alertname": alert.name, "exp_alerts": []}],
    }
    checks: list[dict[str, Any]] = []
    if alert.for_ >= STEP:
        before = start + alert.for_ - STEP
        checks.append(
            {"eval_time": format_duration(before), "alertname": alert.name, "exp_alerts": []}
        )
    checks.append(
        {
            "eval_time": at_end,
            "alertname": alert.name,
            "exp_alerts": [
                {
                    "exp_labels": exp_labels,
                    "exp_annotations": expected_annotations(profile, alert, exp_labels),
                }
            ],
        }
    )
    # Another system's healthy series alongside: they must not change the outcome.
    fire = {
        "name": f"{alert.name}: fires past {threshold_text(alert)} once for elapses",
        "interval": format_duration(STEP),
        "input_series": _inputs(alert, "fire", steps, profile.system)
        + _inputs(alert, "quiet", steps, OTHER_SYSTEM),
        "alert_rule_test": checks,
    }
    # Isolation: the same fault in another system's series never fires this system's
    # alert (exp_alerts lists every alert of that name: none).
    isolated = {
        "name": f"{alert.name}: quiet while only another system is past "
        f"{threshold_text(alert)}",
        "interval": format_duration(STEP),
        "input_series": _inputs(alert, "fire", steps, OTHER_SYSTEM)
        + _inputs(alert, "quiet", steps, profile.system),
        "alert_rule_test": [{"eval_time": at_end, "alertname": alert.name, "exp_alerts": []}],
    }
    return [quiet, fire, isolated]


def promtool_tests(profile: Profile, rules_path: str) -> str:
    data = {
        "rule_files": [rules_path],
        "evaluation_interval": format_duration(STEP),
        "tests": [t for alert in profile.alerts for t in alert_tests(profile, alert)],
    }
    return dump_yaml(data, GENERATED.format(source=f"profiles/{profile.slug}.yml"))
