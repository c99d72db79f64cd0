"""A runbook profile: the exporter checks of one system plus its ``bundle:`` section.

The ``bundle:`` section holds everything the generator needs and the exporter ignores:
each alert (query, comparison, threshold written once, ``for``, severity, the runbook
section and a quote of the line it implements, a small test), and the routing (severity
to receiver, P1-P4 response windows). It is read with the same :class:`Reader` as the
checks, so a bad profile reports every problem with its exact path.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from exporter.alerting import DefaultAlert
from exporter.bundle.known import EXTERNAL_METRICS
from exporter.bundle.promql import scoped
from exporter.checks.base import CheckSpec
from exporter.config import Config, load_data, parse_yaml
from exporter.fields import (
    ConfigError,
    Problems,
    Reader,
    describe,
    format_duration,
    parse_duration,
)

NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
SLUG = re.compile(r"[a-z][a-z0-9-]*")
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
UNITS = ("seconds", "ratio", "percent", "bytes", "count", "bool")
SHAPES = ("gauge", "rate", "age", "values")
RECEIVER_TYPES = ("pagerduty", "slack", "email", "sms", "opsgenie")
PRIORITIES = ("P1", "P2", "P3", "P4")
# What a runbook line writes down: a threshold, a cadence (how often something runs or is
# polled), a severity, a response window, or a channel.
COVERAGE_KINDS = ("threshold", "cadence", "severity", "window", "channel")
# The isolation convention: the scrape config gives every target of one monitored system
# the target label ``system`` (compose/prometheus.yml, the ServiceMonitor), and every
# selector of that system's rules selects it, so two systems' rules never fire on each
# other's series and every alert carries it (aggregations keep it).
SYSTEM_LABEL = "system"
# The severities the kinds' default alerts use; a routing with other names maps them.
DEFAULT_SEVERITIES = ("critical", "warning", "info")
DEFAULT_DOCS_URL = "https://github.com/runbook-exporter/runbook-exporter/blob/main/docs/runbooks"
# ``{threshold}``, ``{window}``, ``{threshold * 2}``: a placeholder never contains the
# ``=``/``"`` of a PromQL label matcher, so both can share one string.
_ARITHMETIC = r"[-+*/(). 0-9A-Za-z_]*[-+*/( ][-+*/(). 0-9A-Za-z_]*"
PLACEHOLDER = re.compile(rf"\{{([A-Za-z_][A-Za-z0-9_]*|{_ARITHMETIC})\}}")
# The only Go template the summaries and descriptions use: the alert's labels.
LABEL_REF = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
CHECK_MATCHER = re.compile(r'\bcheck\s*(=~|=)\s*"([^"]*)"')


@dataclass(frozen=True)
class SeriesInput:
    """One input series of an alert's promtool test, in terms of the threshold.

    ``gauge``: a constant value; ``rate``: a counter growing by this much per second;
    ``age``: a timestamp this many seconds behind the evaluation time; ``values``: an
    explicit series in promtool's expanding notation (``0x30 1x30``: drops, steps,
    counters that reset), its ``{threshold}``/``{steps}`` placeholders filled in.
    """

    series: str
    shape: str
    quiet: str
    fire: str


@dataclass(frozen=True)
class AlertTest:
    series: tuple[SeriesInput, ...]
    labels: tuple[tuple[str, str], ...]  # labels the firing alert carries from its series
    value: str | None  # expected alert value, an expression over threshold/fire/quiet
    # Seconds from the first input sample to the first evaluation at which the firing
    # inputs are past the threshold: the alert is pending from then and fires `for`
    # later. None: 0 for gauges and ages, one step for rates (a rate needs two samples).
    # A rate compared in absolute terms needs its window full; explicit values cross
    # where their author put the change. promtool proves the number: one evaluation
    # earlier the alert is silent.
    settle: float | None
    # When set, the alert also fires with no input series at all (its query guards
    # against a vanished target), carrying these labels.
    absent_labels: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class Dependency:
    """``alert`` firing makes the dependent alert noise, but only where the labels in
    ``equal`` agree (plus ``system`` and ``runbook``, always) and the dependent has the
    labels in ``when``: a dead Redis mutes the component error of component="redis",
    a down service the error rate of that service's job, never another's."""

    alert: str  # short name of the cause
    equal: tuple[str, ...]
    when: tuple[tuple[str, str], ...] = ()


# Labels every inhibition requires equal, besides the dependency's own.
ALWAYS_EQUAL = ("runbook", SYSTEM_LABEL)
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Alert:
    short: str  # name inside the profile, e.g. RedisDown
    name: str  # prefix + short, the Prometheus alertname
    query: str  # PromQL template of the signal; the rule is `query op threshold`
    op: str
    threshold: float
    threshold_text: str  # as written in the profile: 2h, 0.8
    window_threshold: bool  # a duration threshold (freshness window): drills scale it
    for_: float
    severity: str
    unit: str
    section: str
    quote: str
    summary: str
    description: str
    steps: tuple[str, ...]
    signal: str  # alerts of one signal at several severities share it (inhibition)
    depends_on: tuple[Dependency, ...]  # alerts whose firing makes this one noise
    exporter: str  # which exporter produces the metrics: runbook-exporter, node_exporter...
    window: str  # range of rates in rules; dashboards use $__rate_interval
    lookback: float  # seconds of {lookback}: a cadence-sized range (2 runs); drills scale it
    panel_title: str
    test: AlertTest
    guarded: str | None = None  # a missing-data guard: the short name of its alert

    def expr(self, threshold: float | None = None) -> str:
        value = self.threshold if threshold is None else threshold
        query = fill(self.query, window=self.window, lookback=format_duration(self.lookback))
        return f"{query} {self.op} {number(value)}"


@dataclass(frozen=True)
class Generated:
    """One generated alert and where it came from, for its tests and runbook page."""

    alert: Alert
    check: CheckSpec[Any]
    role: str  # "default" | "absent" | "missing"
    default: DefaultAlert | None  # the kind default ("default"), or the one guarded
    guards: tuple[str, ...] = ()  # for "missing": the alertnames that lose their data
    vanished: str = ""  # for "missing": the input series that disappears in its test
    scope: tuple[str, ...] = ()  # values of the default's scope label it watches


@dataclass(frozen=True)
class Coverage:
    """One runbook line that writes down a monitoring number or channel, and what in the
    bundle implements it: alerts (by short name), severities (routing), or a reason why
    metrics cannot watch it. ``threshold``/``for_``/``response``/``channel`` are the values
    the runbook itself gives; loading fails when the alerts or routing disagree."""

    section: str
    quote: str
    kind: str
    alerts: tuple[str, ...]
    severities: tuple[str, ...]
    threshold: str | None  # as the runbook gives it, in the alert's unit: 0.8, 1h
    for_: str | None
    response: str | None
    channel: str | None  # a receiver target (#channel, address) or type (pagerduty, sms)
    evaluation_interval: str | None  # the rule evaluation interval the runbook sets
    note: str  # how the bundle reads the line (a chosen number is said here)
    not_monitored: str  # why metrics cannot watch it; empty when covered


@dataclass(frozen=True)
class Severity:
    name: str
    priority: str
    response: float  # seconds: the runbook's response window, used as repeat_interval
    receivers: tuple[str, ...]
    response_text: str  # as the runbook writes it


@dataclass(frozen=True)
class Receiver:
    name: str
    type: str
    target: str  # slack channel, email address, or empty


@dataclass(frozen=True)
class Exporter:
    job: str  # the Prometheus job label its targets get
    source: str  # which exporter: a key of exporter.bundle.known.EXTERNAL_METRICS
    what: str  # what to run and where, for the docs


@dataclass(frozen=True)
class Profile:
    slug: str  # file stem: surveillance-tracker
    system: str  # value of the `system` target label its targets carry (default: slug)
    title: str
    runbook: str  # file name of the runbook in ../shared/runbooks
    prefix: str
    docs_url: str
    evaluation_interval: float
    group_wait: float
    group_interval: float
    severities: tuple[Severity, ...]
    receivers: tuple[Receiver, ...]
    exporters: tuple[Exporter, ...]
    alerts: tuple[Alert, ...]
    checks: tuple[tuple[str, str], ...]  # (name, kind) of the profile's exporter checks
    routing_notes: str
    coverage: tuple[Coverage, ...] = ()
    # The alerts of the checks' kind defaults (exporter/bundle/defaults.py), which are
    # also in ``alerts``, with where each came from; their tests come from the defaults.
    generated: tuple[Generated, ...] = ()
    # The ``system`` the generated alerts' selectors carry ("" for a config bundle
    # generated without --system).
    selector_system: str = ""
    # What the profile guesses about the watched system (a table name, a label, a
    # mailbox): ``bundle.assumptions``, listed on the runbook page so a wrong guess is
    # found by reading, not only by a query failing.
    assumptions: tuple[str, ...] = ()

    def severity(self, name: str) -> Severity:
        return next(s for s in self.severities if s.name == name)

    @cached_property
    def guard_names(self) -> frozenset[str]:
        """The names of the generated missing-data guards (NoData, Absent): ``== 1`` over
        series that are there or not, no threshold and no signal of their own."""
        return frozenset(g.alert.name for g in self.generated if g.role != "default")

    def alert(self, short: str) -> Alert:
        return next(a for a in self.alerts if a.short == short)


def number(value: float) -> str:
    """A threshold as PromQL and YAML write it: 80 not 80.0, 0.5, 536870912."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_OPS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def evaluate(text: str, names: Mapping[str, float]) -> float:  # noqa: C901 - a small PromQL evaluator: one branch per operator
    """Arithmetic over named numbers (``threshold * 2 + 60``); raises ValueError."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            if isinstance(node.value, bool):
                raise ValueError("booleans are not numbers here")
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"unknown name {node.id} (known: {', '.join(sorted(names))})")
            return float(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        raise ValueError("only numbers, names and + - * / are allowed")

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {text!r}") from None
    try:
        return walk(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None


def fill(template: str, **values: str | float) -> str:
    """Replace ``{name}`` and ``{arithmetic}`` placeholders; leave PromQL matchers alone."""
    numbers = {k: v for k, v in values.items() if isinstance(v, int | float)}

    def substitute(match: re.Match[str]) -> str:
        inner = match[1].strip()
        if inner in values:
            value = values[inner]
            return value if isinstance(value, str) else number(value)
        return number(evaluate(inner, numbers))

    return PLACEHOLDER.sub(substitute, template)


def placeholders(template: str) -> list[str]:
    return [m[1].strip() for m in PLACEHOLDER.finditer(template)]


def system_scoped(query: str, system: str) -> str:
    """``query`` reading only the series of one system, keeping its label."""
    return scoped(query, f'{SYSTEM_LABEL}="{system}"', SYSTEM_LABEL)


def check_names(query: str) -> list[str]:
    """Check names a query selects with ``check="x"`` or ``check=~"a|b"``."""
    names: list[str] = []
    for match in CHECK_MATCHER.finditer(query):
        names.extend(match[2].split("|") if match[1] == "=~" else [match[2]])
    return names


# --- reading -------------------------------------------------------------------------


def _threshold(reader: Reader, key: str) -> tuple[float, str, bool]:
    raw = reader.raw(key)
    if isinstance(raw, bool) or raw is None:
        if raw is not None:
            reader.error(key, f"expected a number or a duration such as 2h, got {describe(raw)}")
        return 0.0, "0", False
    if isinstance(raw, int | float):
        return float(raw), number(float(raw)), False
    if isinstance(raw, str):
        seconds = parse_duration(raw)
        if seconds is not None:
            return seconds, raw, True
    reader.error(key, f"expected a number or a duration such as 2h, got {describe(raw)}")
    return 0.0, "0", False


def _expression(reader: Reader, key: str, names: Mapping[str, float]) -> str:
    raw = reader.raw(key)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return number(float(raw))
    if not isinstance(raw, str) or not raw:
        if raw is not None:
            reader.error(
                key,
                f"expected a number or an expression such as threshold + 1, got {describe(raw)}",
            )
        return "0"
    try:
        evaluate(raw, names)
    except ValueError as exc:
        reader.error(key, str(exc))
    return raw


def _template(reader: Reader, key: str, allowed: tuple[str, ...], default: Any = None) -> str:
    value = reader.str(key) if default is None else reader.str(key, default)
    if not isinstance(value, str):
        return ""
    if "{{" in LABEL_REF.sub("", value):
        reader.error(
            key,
            "the only template allowed is {{ $labels.NAME }}; "
            "write {value} and {threshold} for the numbers",
        )
    for name in placeholders(value):
        try:
            evaluate(name, dict.fromkeys(allowed, 1.0))
        except ValueError as exc:
            reader.error(key, f"placeholder {{{name}}}: {exc}")
    return value


def _read_test(reader: Reader, threshold: float, shows_value: bool) -> AlertTest:
    names = {"threshold": threshold}
    series: list[SeriesInput] = []
    for entry in reader.mappings("series", required=True):
        template = _template(entry, "series", ("threshold",))
        shape = ""
        quiet = fire = "0"
        for candidate in SHAPES:
            values = entry.mapping(candidate)
            if values is None:
                continue
            if shape:
                entry.error(
                    candidate, f"give one of {', '.join(SHAPES)}, not both {shape} and {candidate}"
                )
                continue
            shape = candidate
            if candidate == "values":
                allowed = ("threshold", "steps")
                quiet = _template(values, "quiet", allowed)
                fire = _template(values, "fire", allowed)
            else:
                quiet = _expression(values, "quiet", names)
                fire = _expression(values, "fire", names)
            values.done()
        if not shape:
            entry.error(None, f"needs one of {', '.join(SHAPES)} with quiet and fire values")
        entry.done()
        series.append(SeriesInput(template, shape, quiet, fire))
    if reader.raw("series", None) == []:  # missing or not a list: mappings() said so
        reader.error("series", "needs at least one input series")
    labels = reader.labels("labels")
    value = None
    if reader.has("value"):
        value = _expression(reader, "value", {**names, "fire": 1.0, "quiet": 1.0})
    elif shows_value and (len(series) != 1 or series[0].shape in ("rate", "values")):
        reader.error(
            "value",
            "required when the summary or description shows {value} and "
            "the test has several series, a rate or explicit values: the "
            "alert's value as an expression over threshold and fire",
        )
    settle = reader.duration("settle", None, positive=False) if reader.has("settle") else None
    reader.done()
    return AlertTest(tuple(series), labels, value, settle)


def _read_dependency(reader: Reader) -> Dependency:
    alert = reader.str("alert")
    equal = reader.str_list("equal", (), allow_single=False)
    for name in equal:
        if not LABEL_NAME.fullmatch(name):
            reader.error("equal", f"not a label name: {describe(name)}")
        elif name in ALWAYS_EQUAL:
            reader.error(
                "equal",
                f"{name} is always required equal; list the labels "
                "that tie this dependency to one service",
            )
    when = reader.labels("when")
    reader.done()
    return Dependency(alert if isinstance(alert, str) else "", tuple(equal), when)


# How an operator reads a comparison: "above 2h" (render.op_text reads this too).
OP_WORDS = {
    ">": "above",
    ">=": "at or above",
    "<": "below",
    "<=": "at or below",
    "==": "equal to",
    "!=": "not equal to",
}
DEFAULT_DESCRIPTION = (
    "The alert's query has been {op} {{threshold}} for its whole `for`; labels: "
    "check={{{{ $labels.check }}}} instance={{{{ $labels.instance }}}} "
    "job={{{{ $labels.job }}}}."
)


def _default_steps(query: str, op: str, threshold: str) -> tuple[str, ...]:
    """Steps for an alert whose profile gives none: where to look, in order."""
    return (
        f"Run the alert's query in Prometheus: `{query}`; its labels (check, instance, "
        f"job) say which series is {op} {threshold} and since when.",
        "Open the dashboard panel of this alert for the history around the threshold.",
        "For a check of this exporter: `curl -s http://<exporter>:9711/metrics | grep "
        "check=` and the exporter's log name the target and its last error.",
    )


def _read_alert(reader: Reader, prefix: str, severities: set[str]) -> Alert | None:
    short = reader.str("name")
    if isinstance(short, str) and short and not NAME.fullmatch(short):
        reader.error("name", f"use CamelCase letters and digits, got {describe(short)}")
    query = _template(reader, "query", ("window", "lookback"))
    op = reader.choice("op", OPERATORS)
    threshold, threshold_text, window_threshold = _threshold(reader, "threshold")
    for_ = reader.duration("for", 0.0, positive=False)
    severity = reader.str("severity")
    if isinstance(severity, str) and severity and severity not in severities:
        reader.error(
            "severity",
            f'unknown severity "{severity}" (routing defines: '
            f"{', '.join(sorted(severities)) or 'none'})",
        )
    unit = reader.choice("unit", UNITS)
    # Runbook metadata is optional: without it the alert says what it watches.
    section = reader.str("section", "")
    quote = reader.str("quote", "")
    words = OP_WORDS.get(op, op) if isinstance(op, str) else ""
    summary = _template(
        reader,
        "summary",
        ("threshold", "value"),
        f"{prefix}{short if isinstance(short, str) else ''} is {words} {{threshold}}",
    )
    description = _template(
        reader, "description", ("threshold", "value"), DEFAULT_DESCRIPTION.format(op=words)
    )
    steps = reader.str_list("steps", (), allow_single=False)
    if not steps and reader.has("steps"):
        reader.error("steps", "list at least one runbook step")
    signal = reader.str("signal", "")
    depends_on = tuple(_read_dependency(entry) for entry in reader.mappings("depends_on"))
    exporter = reader.str("exporter", "runbook-exporter")
    window = reader.str("window", "5m")
    if isinstance(window, str) and parse_duration(window) is None:
        reader.error("window", f"expected a duration such as 5m, got {describe(window)}")
    lookback = reader.duration("lookback", 3600.0)
    if "lookback" in placeholders(query) and not reader.has("lookback"):
        reader.error("lookback", "required when the query uses {lookback}")
    panel_title = reader.str("panel", "")
    test_reader = reader.mapping("test", required=True)
    test = (
        _read_test(test_reader, threshold, "value" in placeholders(summary + description))
        if test_reader is not None
        else AlertTest((), (), None, 0.0)
    )
    reader.done()
    if not isinstance(short, str) or not short:
        return None
    return Alert(
        short=short,
        name=prefix + short,
        query=query,
        op=op,
        threshold=threshold,
        threshold_text=threshold_text,
        window_threshold=window_threshold,
        for_=for_,
        severity=severity,
        unit=unit,
        section=section,
        quote=quote,
        summary=summary,
        description=description,
        steps=tuple(steps) or _default_steps(query, op, threshold_text),
        signal=signal or _snake(short),
        depends_on=tuple(depends_on),
        exporter=exporter,
        window=window,
        lookback=lookback,
        panel_title=panel_title or short,
        test=test,
    )


EXPORTER_JOB = "runbook-exporter"
EXPORTER_DOWN = "ExporterDown"
_EXPORTER_UP = f'up{{job="{EXPORTER_JOB}"}}'
DEFAULT_EXPORTER_DOWN_STEPS: tuple[str, ...] = (
    "`systemctl status runbook-exporter` (or `docker compose ps exporter`, `kubectl get "
    "pods -l app.kubernetes.io/name=runbook-exporter`); its log since the page.",
    "`curl -s http://<exporter>:9711/-/healthy` and `curl -s http://<exporter>:9711/metrics "
    "| head`.",
    "No target at all (the summary names no instance): the exporter's entry in "
    "`targets/runbook-exporter/<system>.yml`, or its Service with the "
    "`app.kubernetes.io/part-of` label, is gone or names another system.",
    "A config error after a reload is logged with its path; `runbook-exporter validate "
    "--config.file <profile>`.",
)


def _exporter_down(reader: Reader | None, prefix: str, severities: list[Severity]) -> Alert:
    """``<Prefix>ExporterDown``, which every profile gets: the exporter's target is not
    scraped, *or there is none* (``absent``: the target list or the Service lost it).

    The runbook fields may be given under ``bundle.exporter_down`` (section, quote,
    steps, severity, for); the signal, query and test are the generator's.
    """
    section, quote, steps, hold = "Watching the watcher", "", DEFAULT_EXPORTER_DOWN_STEPS, 120.0
    severity = severities[0].name if severities else ""
    if reader is not None:
        section = reader.str("section", section)
        quote = reader.str("quote", quote)
        steps = tuple(reader.str_list("steps", list(steps), allow_single=False) or steps)
        hold = reader.duration("for", hold)
        severity = reader.str("severity", severity)
        names = {s.name for s in severities}
        if severity not in names:
            reader.error(
                "severity",
                f'unknown severity "{severity}" (routing defines: '
                f"{', '.join(sorted(names)) or 'none'})",
            )
        reader.done()
    held = format_duration(hold)
    return Alert(
        short=EXPORTER_DOWN,
        name=prefix + EXPORTER_DOWN,
        query=f"({_EXPORTER_UP} or absent({_EXPORTER_UP}) * 0)",
        op="==",
        threshold=0.0,
        threshold_text="0",
        window_threshold=False,
        for_=hold,
        severity=severity,
        unit="bool",
        section=section,
        quote=quote,
        summary="runbook-exporter of {{ $labels.system }} is down or has no scrape "
        "target: this runbook's checks are blind",
        description=f"For {held} Prometheus has not scraped the runbook-exporter target "
        "'{{ $labels.instance }}' of this system, or has no such target at all (an empty "
        "instance); every alert of this profile that reads its metrics is silent meanwhile.",
        steps=steps,
        signal="exporter_up",
        depends_on=(),
        exporter="prometheus",
        window="5m",
        lookback=3600.0,
        panel_title="runbook-exporter scraped",
        test=AlertTest(
            series=(
                SeriesInput(
                    f'up{{job="{EXPORTER_JOB}",instance="exporter:9711"}}',
                    "gauge",
                    "threshold + 1",
                    "threshold",
                ),
            ),
            labels=(("instance", "exporter:9711"), ("job", EXPORTER_JOB)),
            value=None,
            settle=None,
            absent_labels=(("job", EXPORTER_JOB),),
        ),
    )


def _read_coverage(
    reader: Reader,
    alerts: Mapping[str, Alert],
    severities: Mapping[str, Severity],
    receivers: Mapping[str, Receiver],
    evaluation_interval: float,
) -> Coverage:
    """One ``bundle.coverage`` line; the numbers the runbook gives must be the bundle's."""
    section = reader.str("section")
    quote = reader.str("quote")
    kind = reader.choice("kind", COVERAGE_KINDS)
    names = tuple(reader.str_list("alerts", ()))
    levels = tuple(reader.str_list("severities", ()))
    note = reader.str("note", "")
    not_monitored = reader.str("not_monitored", "")
    given: dict[str, str | None] = {}
    for key in ("threshold", "for", "response", "channel", "evaluation_interval"):
        raw = reader.raw(key, None)
        given[key] = None if raw is None else str(raw)
    if given["evaluation_interval"] is not None:
        interval = reader.duration("evaluation_interval")
        if interval != evaluation_interval:
            reader.error(
                "evaluation_interval",
                f"the runbook says {given['evaluation_interval']}"
                f" but the rules evaluate every {format_duration(evaluation_interval)}",
            )
    _coverage_targets(reader, names, levels, not_monitored, alerts, severities)
    # The runbook's own numbers: every alert or severity the line names must carry them.
    _bind_alert_numbers(reader, given, names, alerts)
    _bind_routing(reader, given, levels, severities, receivers)
    reader.done()
    return Coverage(
        section=section,
        quote=quote,
        kind=kind,
        alerts=names,
        severities=levels,
        threshold=given["threshold"],
        for_=given["for"],
        response=given["response"],
        channel=given["channel"],
        evaluation_interval=given["evaluation_interval"],
        note=note,
        not_monitored=not_monitored,
    )


def _coverage_targets(
    reader: Reader,
    names: tuple[str, ...],
    levels: tuple[str, ...],
    not_monitored: str,
    alerts: Mapping[str, Alert],
    severities: Mapping[str, Severity],
) -> None:
    """A line names alerts or severities that exist, or says why it is not monitored."""
    if not names and not levels and not not_monitored:
        reader.error(
            None,
            "name the alerts or severities that implement this line, "
            "or say why it is not_monitored",
        )
    if not_monitored and (names or levels):
        reader.error(
            "not_monitored",
            "a line is either covered (alerts/severities) or not monitored, not both",
        )
    for name in names:
        if name not in alerts:
            reader.error("alerts", f'unknown alert "{name}" in this profile')
    for level in levels:
        if level not in severities:
            reader.error("severities", f'unknown severity "{level}" in this profile')


def _bind_alert_numbers(
    reader: Reader,
    given: Mapping[str, str | None],
    names: tuple[str, ...],
    alerts: Mapping[str, Alert],
) -> None:
    """The line's threshold and ``for`` are those of every alert it names."""
    if given["threshold"] is not None:
        want, _, _ = _threshold(reader, "threshold")
        for name in names:
            if name in alerts and alerts[name].threshold != want:
                reader.error(
                    "threshold",
                    f"the runbook says {given['threshold']} but "
                    f"{name} has {alerts[name].threshold_text}",
                )
    if given["for"] is not None:
        hold = reader.duration("for", positive=False)
        for name in names:
            if name in alerts and alerts[name].for_ != hold:
                reader.error(
                    "for",
                    f"the runbook says {given['for']} but {name} has "
                    f"for {format_duration(alerts[name].for_)}",
                )


def _bind_routing(
    reader: Reader,
    given: Mapping[str, str | None],
    levels: tuple[str, ...],
    severities: Mapping[str, Severity],
    receivers: Mapping[str, Receiver],
) -> None:
    """The line's response window and channel are those of every severity it names."""
    if given["response"] is not None:
        window = reader.duration("response")
        for level in levels:
            if level in severities and severities[level].response != window:
                reader.error(
                    "response",
                    f"the runbook says {given['response']} but "
                    f"{level} repeats every "
                    f"{severities[level].response_text}",
                )
    channel = given["channel"]
    if channel is None:
        return
    for level in levels:
        if level not in severities:
            continue
        used = [receivers[r] for r in severities[level].receivers if r in receivers]
        if not any(channel in (r.target, r.type) for r in used):
            reader.error(
                "channel",
                f"the runbook names {channel} but {level} goes to "
                f"{', '.join(r.target or r.type for r in used)}",
            )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class _Routing:
    severities: tuple[Severity, ...]
    receivers: tuple[Receiver, ...]
    group_wait: float
    group_interval: float
    notes: str
    # The kinds' default severities (critical, warning, info) as this routing names them.
    default_severities: Mapping[str, str]


def _read_routing(routing: Reader | None) -> _Routing:
    receivers: list[Receiver] = []
    severities: list[Severity] = []
    if routing is None:
        return _Routing((), (), 30.0, 300.0, "", {})
    group_wait = routing.duration("group_wait", 30.0)
    group_interval = routing.duration("group_interval", 300.0)
    notes = routing.str("notes", "")
    for entry in routing.mappings("receivers", required=True):
        name = entry.str("name")
        if isinstance(name, str) and name and not SLUG.fullmatch(name):
            entry.error("name", f"use lower-case letters, digits and -, got {describe(name)}")
        kind = entry.choice("type", RECEIVER_TYPES)
        target = entry.str("target", "")
        if kind in ("slack", "email") and not target:
            entry.error("target", f"a {kind} receiver needs its channel or address")
        entry.done()
        receivers.append(Receiver(name, kind, target))
    known = {r.name for r in receivers}
    for entry in routing.mappings("severities", required=True):
        name = entry.str("name")
        priority = entry.choice("priority", PRIORITIES)
        response_raw = entry.raw("response")
        response = entry.duration("response")
        targets = entry.str_list("receivers")
        for target in targets:
            if target not in known:
                entry.error(
                    "receivers",
                    f'unknown receiver "{target}" (known: {", ".join(sorted(known))})',
                )
        entry.done()
        severities.append(Severity(name, priority, response, tuple(targets), str(response_raw)))
    default_severities = _default_severities(routing, {s.name for s in severities})
    routing.done()
    return _Routing(
        tuple(severities), tuple(receivers), group_wait, group_interval, notes, default_severities
    )


def _default_severities(routing: Reader, names: set[str]) -> dict[str, str]:
    """``routing.default_severities``: the kinds' critical/warning/info by this routing's
    names (identity when it defines them)."""
    default_severities: dict[str, str] = {}
    mapping = routing.mapping("default_severities")
    for standard in DEFAULT_SEVERITIES:
        chosen = mapping.str(standard, standard) if mapping is not None else standard
        if chosen not in names and names:
            where = mapping if mapping is not None and mapping.has(standard) else routing
            where.error(
                standard if where is mapping else "default_severities",
                f'the kinds\' default severity "{standard}" needs a severity of this '
                f"routing ({', '.join(sorted(names))}): map it under "
                "routing.default_severities",
            )
        default_severities[standard] = chosen
    if mapping is not None:
        mapping.done()
    return default_severities


def _read_exporters(bundle: Reader) -> tuple[Exporter, ...]:
    exporters: list[Exporter] = []
    for entry in bundle.mappings("exporters"):
        job = entry.str("job")
        source = entry.choice("source", tuple(sorted(EXTERNAL_METRICS)))
        exporters.append(Exporter(job, source, entry.str("what")))
        entry.done()
    if not any(e.job == "prometheus" for e in exporters):
        # ExporterDown reads Prometheus' own `up`.
        exporters.append(
            Exporter(
                "prometheus",
                "prometheus",
                "Prometheus itself: `up` of the runbook-exporter scrape job",
            )
        )
    return tuple(exporters)


def _generated(
    config: Config, system: str, prefix: str, routing: _Routing, problems: Reader
) -> list[Generated]:
    """The checks' alerts from their kinds' defaults, as their ``alerts:`` set them.

    ``bundle.kind_defaults``: ``all`` (every default of every kind, as a config bundle
    gets) or ``named`` (only those a check's ``alerts:`` names, plus check_failing)."""
    scope = problems.choice("kind_defaults", ("all", "named"), "all")
    from exporter.bundle.defaults import check_alerts

    names = {s.name for s in routing.severities}
    out: list[Generated] = []
    for index, check in enumerate(config.checks):
        for item in check_alerts(
            check,
            system,
            EXPORTER_JOB,
            prefix,
            routing.default_severities,
            named_only=scope == "named",
        ):
            mapped = item.alert.severity in routing.default_severities.values()
            if item.alert.severity not in names and not mapped:
                problems.problems.add(
                    f"checks[{index}].alerts",
                    f'{item.alert.short}: unknown severity "{item.alert.severity}" '
                    f"(routing defines: {', '.join(sorted(names))})",
                )
            out.append(item)
    return out


def _with_runbook(alert: Alert, entry: Reader, severities: set[str]) -> Alert:
    """A generated alert with the runbook fields ``bundle.runbook_fields.<Name>`` gives it."""
    allowed = ("threshold", "value")
    depends_on = tuple(_read_dependency(d) for d in entry.mappings("depends_on"))
    steps = entry.str_list("steps", list(alert.steps), allow_single=False)
    if not steps and entry.has("steps"):
        entry.error("steps", "list at least one runbook step")
    out = replace(
        alert,
        section=entry.str("section", alert.section),
        quote=entry.str("quote", alert.quote),
        summary=_template(entry, "summary", allowed, alert.summary),
        description=_template(entry, "description", allowed, alert.description),
        steps=tuple(steps) or alert.steps,
        signal=entry.str("signal", alert.signal),
        panel_title=entry.str("panel", alert.panel_title),
        depends_on=depends_on,
    )
    entry.done()
    return out


def _read_alerts(
    bundle: Reader,
    prefix: str,
    severities: tuple[Severity, ...],
    checks: set[str] | None,
    exporters: tuple[Exporter, ...],
    paths: dict[str, str],
) -> list[Alert]:
    """``bundle.alerts``: the alerts over other exporters' metrics (and any the kinds'
    defaults cannot say), then ``<Prefix>ExporterDown``. ``paths`` gets where each was
    read (``bundle.alerts[2]``)."""
    alerts: list[Alert] = []
    exporter_jobs = {"runbook-exporter", *(e.job for e in exporters)}
    for entry in bundle.mappings("alerts"):
        alert = _read_alert(entry, prefix, {s.name for s in severities})
        if alert is None:
            continue
        if alert.short == EXPORTER_DOWN:
            entry.error(
                "name",
                "ExporterDown is generated for every profile; give its "
                "runbook fields under bundle.exporter_down",
            )
            continue
        if alert.short in paths:
            entry.error("name", f'duplicate alert "{alert.short}", first at {paths[alert.short]}')
            continue
        paths[alert.short] = entry.path
        for name in check_names(alert.query) if checks is not None else ():
            if checks is not None and name not in checks:
                entry.error("query", f'selects check "{name}", which the profile does not define')
        if alert.exporter not in exporter_jobs:
            entry.error(
                "exporter",
                f'unknown exporter "{alert.exporter}" (listed under '
                f"bundle.exporters: {', '.join(sorted(exporter_jobs))})",
            )
        alerts.append(alert)
    alerts.append(_exporter_down(bundle.mapping("exporter_down"), prefix, list(severities)))
    return alerts


def _apply_runbook(
    bundle: Reader, generated: list[Generated], severities: set[str]
) -> list[Generated]:
    """``bundle.runbook_fields``: runbook fields of the checks' alerts, by alert name."""
    runbook = bundle.mapping("runbook_fields")
    if runbook is None:
        return generated
    by_short = {g.alert.short: g for g in generated}
    for short in runbook:
        if short not in by_short:
            runbook.error(
                short,
                "no alert of the checks has this name (name one with alerts.<key>.name "
                f"beside its check; they are: {', '.join(sorted(by_short))})",
            )
            runbook.ignore(short)
    out = []
    for item in generated:
        entry = runbook.mapping(item.alert.short) if runbook.has(item.alert.short) else None
        if entry is not None:
            item = replace(item, alert=_with_runbook(item.alert, entry, severities))
        out.append(item)
    runbook.done()
    return out


def _check_dependencies(bundle: Reader, alerts: list[Alert], paths: Mapping[str, str]) -> None:
    """Every ``depends_on`` names an alert of the profile; ``paths``: where each alert's
    fields were read (``bundle.alerts[2]``, ``bundle.runbook_fields.ApiDown``)."""
    known = {a.short for a in alerts}
    for alert in alerts:
        for position, dependency in enumerate(alert.depends_on):
            if dependency.alert and dependency.alert not in known:
                bundle.problems.add(
                    f"{paths.get(alert.short, bundle.path)}.depends_on[{position}].alert",
                    f'unknown alert "{dependency.alert}" in this profile',
                )


def read_bundle(bundle: Reader, slug: str, config: Config | None) -> Profile | None:
    """The profile of a config's ``bundle:`` section; None when a problem was recorded.

    Its alerts: the checks' alerts from their kinds' defaults (thresholds beside the
    checks, runbook fields under ``bundle.runbook_fields``), then ``bundle.alerts`` (other
    exporters' metrics), then ExporterDown."""
    title = bundle.str("title")
    runbook = bundle.str("runbook")
    prefix = bundle.str("prefix")
    if isinstance(prefix, str) and prefix and not NAME.fullmatch(prefix):
        bundle.error("prefix", f"use CamelCase letters and digits, got {describe(prefix)}")
    prefix = prefix if isinstance(prefix, str) else ""
    docs_url = bundle.str("docs_url", DEFAULT_DOCS_URL)
    system = bundle.str("system", slug)
    if isinstance(system, str) and not SLUG.fullmatch(system):
        bundle.error("system", f"use lower-case letters, digits and -, got {describe(system)}")
    evaluation_interval = bundle.duration("evaluation_interval", 60.0)
    routing = _read_routing(bundle.mapping("routing", required=True))
    severity_names = {s.name for s in routing.severities}
    exporters = _read_exporters(bundle)
    assumptions = bundle.str_list("assumptions", (), allow_single=False)
    if any(not text.strip() for text in assumptions):
        bundle.error("assumptions", "an assumption must say something (empty text)")
    generated = _generated(config, system, prefix, routing, bundle) if config is not None else []
    generated = _apply_runbook(bundle, generated, severity_names)
    checks = {c.name for c in config.checks} if config is not None else None
    own_paths: dict[str, str] = {}
    own = _read_alerts(bundle, prefix, routing.severities, checks, exporters, own_paths)
    # Every selector of every alert reads this system's series only (the generated
    # ones carry the system in their selectors already).
    own = [replace(a, query=system_scoped(a.query, system)) for a in own]
    alerts = [g.alert for g in generated] + own
    shorts: dict[str, int] = {}
    for alert in alerts:
        shorts[alert.short] = shorts.get(alert.short, 0) + 1
    for short, count in shorts.items():
        if count > 1:
            bundle.error(
                "alerts",
                f'{count} alerts are named "{short}": rename one (alerts.<key>.name beside '
                "a check, or name: here)",
            )
    paths = {g.alert.short: f"{bundle.path}.runbook_fields.{g.alert.short}" for g in generated}
    paths.update(own_paths)
    _check_dependencies(bundle, alerts, paths)
    by_short = {a.short: a for a in alerts}
    coverage = tuple(
        _read_coverage(
            entry,
            by_short,
            {s.name: s for s in routing.severities},
            {r.name: r for r in routing.receivers},
            evaluation_interval,
        )
        for entry in bundle.mappings("coverage")
    )
    bundle.done()
    if bundle.problems.items:
        return None
    return Profile(
        slug=slug,
        system=system,
        title=title,
        runbook=runbook,
        prefix=prefix,
        docs_url=docs_url.rstrip("/"),
        evaluation_interval=evaluation_interval,
        group_wait=routing.group_wait,
        group_interval=routing.group_interval,
        severities=routing.severities,
        receivers=routing.receivers,
        exporters=exporters,
        alerts=tuple(alerts),
        checks=tuple((c.name, c.kind) for c in config.checks) if config is not None else (),
        routing_notes=routing.notes,
        coverage=coverage,
        generated=tuple(generated),
        selector_system=system,
        assumptions=assumptions,
    )


def load_profile_data(data: Any, source: str, slug: str) -> Profile:
    """Validate a parsed profile: its checks as an exporter config, then ``bundle:``."""
    problems: list[str] = []
    config: Config | None = None  # None: the checks are invalid
    try:
        # Defaults of ${VAR:-default} only: generation must not depend on the environment.
        config = load_data(data, source, env={})
    except ConfigError as exc:
        problems.extend(exc.problems)
    if not isinstance(data, Mapping):
        raise ConfigError(problems or [f"{source}: expected a mapping"])
    collected = Problems()
    top = Reader(data, "", collected)
    bundle = top.mapping("bundle", required=True)
    profile = read_bundle(bundle, slug, config) if bundle is not None else None
    problems.extend(collected.items)
    if problems or profile is None:
        raise ConfigError(problems or [f"{source}: invalid profile"])
    return profile


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return load_profile_data(parse_yaml(text, str(path)), str(path), path.stem)


def load_profiles(directory: str | Path) -> list[Profile]:
    """Every ``*.yml`` profile of a directory, sorted by name; all problems at once."""
    profiles: dict[Path, Profile] = {}
    problems: list[str] = []
    files = sorted(Path(directory).glob("*.yml"))
    if not files:
        raise ConfigError([f"{directory}: no *.yml profiles"])
    for path in files:
        try:
            profiles[path] = load_profile(path)
        except ConfigError as exc:
            problems.extend(p if p.startswith(str(path)) else f"{path}: {p}" for p in exc.problems)
    if problems:
        raise ConfigError(problems)
    prefixes: dict[str, str] = {}
    for path, profile in profiles.items():
        if profile.prefix in prefixes:
            problems.append(
                f"{path}: bundle.prefix: "
                f'"{profile.prefix}" already used by {prefixes[profile.prefix]}'
            )
        prefixes[profile.prefix] = profile.slug
    if problems:
        raise ConfigError(problems)
    return list(profiles.values())
