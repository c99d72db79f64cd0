"""Missing-data guards: an alert over data series must not go quiet when the data goes.

An alert such as ``time() - freshness_timestamp_seconds{check="db-backup"} > 25h`` is
silent when its series does not exist: a glob that matches nothing writes only
``file_matches 0``, an item that leaves a JSON list loses its series, a failing check
writes only ``runbook_exporter_check_success 0``. For every profile alert over this
exporter's data series, ``<Alert>NoData`` fires while the exporter *is* scraped
(``up == 1``, so a dead exporter stays one page: ExporterDown) and a series the alert
reads is missing on that exporter instance. Which series: each selector of the alert's
query with its equality matchers; an ``=~"a|b"`` of plain alternatives is one series per
alternative (each item of a list must be there); other matchers are left out. Its
``missing`` label names the series, its summary says the data is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from exporter.bundle.profile import (
    EXPORTER_JOB,
    SYSTEM_LABEL,
    Alert,
    AlertTest,
    Profile,
)
from exporter.bundle.promql import MATCHER
from exporter.bundle.render import op_text, threshold_text

# Series present whenever the exporter is scraped (or Prometheus' own): a "down" alert
# over them fires on a failing check instead of going quiet.
ALWAYS_PRESENT = {"runbook_exporter_check_success", "http_probe_up", "up"}
GUARD_SUFFIX = "NoData"
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^{}]*)\}")
_ALTERNATIVES = re.compile(r"[A-Za-z0-9_.:/-]+(?:\|[A-Za-z0-9_.:/-]+)*")


@dataclass(frozen=True)
class Required:
    """One series an alert needs: a metric and its equality labels (without system)."""

    metric: str
    labels: tuple[tuple[str, str], ...]

    def selector(self, **extra: str) -> str:
        pairs = [*self.labels, *extra.items()]
        return f"{self.metric}{{{','.join(f'{k}={_quote(v)}' for k, v in pairs)}}}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def required_series(alert: Alert) -> list[Required]:
    """The data series ``alert`` reads, one per list item; empty for alerts over other
    exporters or over series that exist whenever the exporter is scraped."""
    if alert.exporter != EXPORTER_JOB:
        return []
    out: list[Required] = []
    for metric, body in _SELECTOR.findall(alert.query):
        if metric in ALWAYS_PRESENT:
            continue
        for combo in _label_combinations(body):
            required = Required(metric, tuple(sorted(combo)))
            if required not in out:
                out.append(required)
    return out


def _label_combinations(matchers: str) -> list[list[tuple[str, str]]]:
    """The label sets one selector's ``matchers`` require: its equality matchers, times
    each alternative of an ``=~"a|b"``; the system label and other matchers left out."""
    fixed: list[tuple[str, str]] = []
    choices: list[tuple[str, list[str]]] = []
    for name, op, value in MATCHER.findall(matchers):
        if name == SYSTEM_LABEL:
            continue
        if op == "=":
            fixed.append((name, value))
        elif op == "=~" and _ALTERNATIVES.fullmatch(value):
            choices.append((name, value.split("|")))
    combos: list[list[tuple[str, str]]] = [fixed]
    for name, values in choices:
        combos = [[*combo, (name, v)] for combo in combos for v in values]
    return combos


def _guard_query(system: str, required: list[Required]) -> str:
    system_matcher = f"{SYSTEM_LABEL}={_quote(system)}"
    branches = []
    for series in required:
        labelled = f'up{{job="{EXPORTER_JOB}",{system_matcher}}} == 1'
        for name, value in [("missing", series.selector()), *series.labels]:
            labelled = f'label_replace({labelled}, "{name}", {_quote(value)}, "", "")'
        present = series.selector(**{SYSTEM_LABEL: system})
        branches.append(f"({labelled} unless on (instance, {SYSTEM_LABEL}) {present})")
    return "(" + " or ".join(branches) + ")"


def guard(profile: Profile, alert: Alert) -> Alert | None:
    """``<Alert>NoData`` for ``alert``, or None when nothing it reads can vanish."""
    required = required_series(alert)
    if not required:
        return None
    checks = sorted({v for r in required for k, v in r.labels if k == "check"})
    check_text = ", ".join(f"`{c}`" for c in checks) or "its check"
    return replace(
        alert,
        short=alert.short + GUARD_SUFFIX,
        name=alert.name + GUARD_SUFFIX,
        query=_guard_query(profile.system, required),
        op=">",
        threshold=0.0,
        threshold_text="0",
        window_threshold=False,
        unit="bool",
        summary=f"No data for {alert.name}: {{{{ $labels.missing }}}} is missing on "
        "{{ $labels.instance }}",
        description=(
            f"{alert.name} (fires when its value is {op_text(alert.op)} "
            f"{threshold_text(alert)}) cannot fire while this series is missing: the value "
            "is unknown, not fine. The check failed, or what it reads is gone: a glob that "
            "matches no file (file_matches 0), an item that left its JSON list, a query "
            "that returns no row."
        ),
        steps=(
            (
                f"`curl -s http://<exporter>:9711/metrics | grep -F 'check=\"{checks[0]}\"'`"
                if checks
                else "`curl -s http://<exporter>:9711/metrics`"
            )
            + f": is `runbook_exporter_check_success` of {check_text} 0? Then the exporter's "
            "log names the check's error (permission, timeout, connection).",
            "If the check succeeds, the series itself is gone: the file glob matches "
            "nothing, the item left the list the check reads, or the query returns no row; "
            "fix the source (or the profile, if the name changed on purpose).",
            f"Once the series is back, {alert.name} judges the value again; follow its "
            "steps if it fires.",
        ),
        test=AlertTest((), (), None, 0.0),
        guarded=alert.short,
    )


def guards(profile: Profile) -> list[Alert]:
    """Every missing-data guard of a profile, in the order of its alerts."""
    return [g for a in profile.alerts if (g := guard(profile, a)) is not None]


def required_of(profile: Profile, guard_alert: Alert) -> list[Required]:
    """The series a guard watches (those of the alert it guards)."""
    return required_series(profile.alert(guard_alert.guarded or ""))
