"""Alerts for any exporter configuration: each check's kind defaults, with its own name.

``runbook-exporter bundle generate --config my.yml`` reads an exporter config and, for
every check, turns its kind's :class:`~exporter.alerting.DefaultAlert` entries (as the
check's ``alerts:`` sets, overrides or disables them) into alerts whose selectors name
that check (and the ``system`` when one is given). The result is a :class:`Profile`, so
the rules, PrometheusRule, Alertmanager routing and per-alert dashboard come from the same
writers as the runbook profiles.

No generated alert can be silenced by missing data:

- ``<Check>Failing``/``<Check>Down`` (``check_failing``) pages while the check fails,
  which is when its other series are missing;
- ``<Check>Absent`` pages when the exporter runs but no longer exports the check at all
  (removed from the config); a dead or vanished exporter pages through the static rules
  (``exporter/bundle/generic.py``), which the bundle includes;
- ``<Check><Alert>NoData`` pages when a series an alert reads was exported within
  the last hour and is gone while the check succeeds (a glob matches nothing, an item
  leaves a JSON list, a queue disappears, a query stops returning a row).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exporter.alerting import AlertSetting, DefaultAlert, kind_alerts
from exporter.bundle.profile import (
    LABEL_REF,
    SLUG,
    SYSTEM_LABEL,
    Alert,
    AlertTest,
    Generated,
    Profile,
    Receiver,
    SeriesInput,
    Severity,
    evaluate,
    fill,
    number,
)
from exporter.checks import KINDS
from exporter.checks.base import CheckSpec
from exporter.config import Config, load_file
from exporter.fields import ConfigError, format_duration, parse_duration

EXPORTER_JOB = "runbook-exporter"
# The ``exporter`` of these alerts. Not EXPORTER_JOB on purpose: exporter/bundle/guards.py
# adds its NoData guards to profile alerts over EXPORTER_JOB's series (literal items a
# profile names); these alerts bring their own guards (vanished series, not named ones),
# and a guard that wants e.g. a freshness item the config never asked for would page
# forever.
SOURCE = "runbook-exporter (--config defaults)"
VANISH_LOOKBACK = 3600.0  # a series seen within this long and gone now is "missing"
GUARD_FOR = 300.0
ABSENT_FOR = 300.0
STEP = 60.0  # promtool: seconds between samples and evaluations

SEVERITIES = (
    Severity("critical", "P1", 900.0, ("pager", "team"), "15m"),
    Severity("warning", "P2", 3600.0, ("team",), "1h"),
    Severity("info", "P4", 86400.0, ("team",), "24h"),
)
RECEIVERS = (
    Receiver("pager", "pagerduty", ""),
    Receiver("team", "email", "oncall@example.com"),
)
ROUTING_NOTES = (
    "Default routing of a generated bundle: critical pages (PagerDuty) and mails the team, "
    "warning and info mail the team. Edit alertmanager/alertmanager.yml for your channels, "
    "or generate with --webhook-url to send everything to one webhook."
)


@dataclass(frozen=True)
class ConfigBundle:
    """The bundle of an exporter config: its profile (generated alerts, default
    routing) and the config it came from."""

    profile: Profile
    system: str
    config: Config
    drill: bool = False

    @property
    def generated(self) -> tuple[Generated, ...]:
        return self.profile.generated


def camel(name: str) -> str:
    """A check name as the CamelCase start of an alertname: ingest-queue -> IngestQueue."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts)
    return text if text[:1].isalpha() else "Check" + text


def selector(check: CheckSpec[Any], system: str) -> str:
    """The label matchers of one check's series: check, and system when named."""
    out = f'check="{check.name}"'
    return out + (f',system="{system}"' if system else "")


def _labels_of(selector_text: str) -> dict[str, str]:
    return dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"', selector_text))


def _fill_sel(template: str, sel: str, kind: str) -> str:
    return template.replace("$sel", sel).replace("$kind", kind)


def _metric(series: str) -> str:
    return series.split("{", 1)[0].strip()


def _apply(default: DefaultAlert, setting: AlertSetting | None) -> DefaultAlert | None:
    """``default`` as one setting leaves it, or None when that turns it off."""
    if setting is None:
        return default if default.on else None
    if not setting.enabled:
        return None
    return replace(
        default,
        threshold=default.threshold if setting.threshold is None else setting.threshold,
        for_=default.for_ if setting.for_ is None else setting.for_,
        severity=setting.severity or default.severity,
        unit=setting.unit or default.unit,
        on=True,
    )


def _matcher(label: str, values: tuple[str, ...], negate: bool = False) -> str:
    """``label="a"`` or ``label=~"a|b"`` (values taken literally), or their negation."""
    if len(values) == 1:
        return f'{label}{"!=" if negate else "="}"{values[0]}"'
    pattern = "|".join(re.escape(v).replace("\\", "\\\\") for v in values)
    return f'{label}{"!~" if negate else "=~"}"{pattern}"'


@dataclass(frozen=True)
class _Resolved:
    """One alert a check gets from one default: the default as configured, the values of
    its scope label it watches (none: all but those other entries name) and its name."""

    default: DefaultAlert
    scope: tuple[str, ...]
    excluded: tuple[str, ...]
    name: str


def _resolve(
    check: CheckSpec[Any], declared: DefaultAlert, base: str, named_only: bool = False
) -> list[_Resolved]:
    """The alerts ``declared`` gives ``check``: the default (or its setting without scope
    values) over every series the scoped entries leave out, then one per scoped entry.
    ``named_only``: only what the settings name (no default over the other series)."""
    settings = [s for s in check.alerts if s.key == declared.key]
    plain = next((s for s in reversed(settings) if not s.scope), None)
    scoped = [s for s in settings if s.scope]
    out: list[_Resolved] = []
    main = _apply(declared, plain)
    if named_only and plain is None and scoped:
        main = None
    excluded = tuple(v for s in scoped for v in s.scope)
    if main is not None and main.threshold is not None:
        name = (plain.name if plain else None) or base + declared.name
        out.append(_Resolved(main, (), excluded, name))
    for setting in scoped:
        start = main if main is not None else declared
        resolved = _apply(replace(start, on=True), setting)
        if resolved is None or resolved.threshold is None:
            continue
        name = setting.name or base + declared.name + camel("-".join(setting.scope))
        out.append(_Resolved(resolved, setting.scope, (), name))
    return out


def _scoped(text: str, label: str, value: str) -> str:
    """A test series or label set with its placeholder scope value replaced."""
    return re.sub(rf'(?<![A-Za-z0-9_]){label}="[^"]*"', f'{label}="{value}"', text)


def _alert(
    short: str,
    prefix: str,
    query: str,
    default: DefaultAlert,
    section: str,
    test: AlertTest,
) -> Alert:
    assert default.threshold is not None
    seconds = default.unit == "seconds"
    held = format_duration(default.for_) if default.for_ else "at once"
    return Alert(
        short=short,
        name=prefix + short,
        query=query,
        op=default.op,
        threshold=default.threshold,
        threshold_text=format_duration(default.threshold) if seconds else number(default.threshold),
        window_threshold=seconds,
        for_=default.for_,
        severity=default.severity,
        unit=default.unit,
        section=section,
        quote="",
        summary=default.summary,
        description=default.description.replace("{for}", held),
        steps=default.steps,
        signal=re.sub(r"(?<!^)(?=[A-Z])", "_", short).lower(),
        depends_on=(),
        exporter=SOURCE,
        window=default.window,
        lookback=VANISH_LOOKBACK,
        panel_title=short,
        test=test,
    )


def _test(default: DefaultAlert, sel: str, kind: str, scope: tuple[str, ...]) -> AlertTest:
    """The alert's test inputs; a scoped alert's inputs carry its first scope value."""

    def fill(text: str) -> str:
        text = _fill_sel(text, sel, kind)
        return _scoped(text, default.scope, scope[0]) if scope else text

    labels = {**_labels_of(sel), **{k: fill(v) for k, v in default.labels}}
    if scope:
        labels[default.scope] = scope[0]
    series = tuple(SeriesInput(fill(t.series), t.shape, t.quiet, t.fire) for t in default.test)
    return AlertTest(series, tuple(sorted(labels.items())), default.value, default.settle)


def _vanishing_input(default: DefaultAlert, sel: str, kind: str, scope: tuple[str, ...]) -> str:
    """The test series that disappears in the missing-data test of ``default``."""
    wanted = _metric(default.reads)
    for entry in _test(default, sel, kind, scope).series:
        if _metric(entry.series) == wanted:
            return entry.series
    extra = ",".join(f'{k}="{v}"' for k, v in default.labels if k != "state")
    base = _fill_sel(default.reads, sel, kind)
    text = base[:-1] + ("," + extra if extra else "") + "}"
    return _scoped(text, default.scope, scope[0]) if scope else text


def check_alerts(
    check: CheckSpec[Any],
    system: str,
    job: str,
    prefix: str = "",
    severities: Mapping[str, str] | None = None,
    named_only: bool = False,
) -> list[Generated]:
    """Every alert of one check: its kind's defaults as configured, plus the guards.

    ``prefix`` starts every alertname (a profile's); ``severities`` maps the kinds'
    default severities (critical, warning, info) to the routing's own names;
    ``named_only`` leaves out the defaults the check's ``alerts:`` does not name (a
    runbook profile watches what its runbook writes down), but never check_failing."""
    kind = KINDS[check.kind]
    sel = selector(check, system)
    base = camel(check.name)
    section = f"check {check.name} ({check.kind})"
    renamed = severities or {}
    out: list[Generated] = []
    guarded: dict[str, list[tuple[DefaultAlert, str, tuple[str, ...]]]] = {}
    failing: DefaultAlert | None = None
    for declared in kind_alerts(kind.alerts):
        named = any(s.key == declared.key for s in check.alerts)
        if named_only and not named and declared.key != "check_failing":
            continue
        # The routing's name for the kind's severity; a setting's own wins over it.
        severity = renamed.get(declared.severity, declared.severity)
        resolving = _resolve(check, replace(declared, severity=severity), base, named_only)
        for resolved in resolving:
            default = resolved.default
            where = sel
            if resolved.scope:
                where += "," + _matcher(default.scope, resolved.scope)
            elif resolved.excluded:
                where += "," + _matcher(default.scope, resolved.excluded, negate=True)
            query = _fill_sel(default.query, where, check.kind)
            test = _test(default, sel, check.kind, resolved.scope)
            alert = _alert(resolved.name, prefix, query, default, section, test)
            out.append(Generated(alert, check, "default", default, scope=resolved.scope))
            if default.key == "check_failing":
                failing = default
            else:
                reads = _fill_sel(default.reads, where, check.kind)
                guarded.setdefault(reads, []).append((default, alert.short, resolved.scope))
    success = f"runbook_exporter_check_success{{{sel}}}"
    up_sel = f'job="{job}"' + (f',system="{system}"' if system else "")
    absent = DefaultAlert(
        key="absent",
        name="Absent",
        query=f"(absent({success}) and on () (count(up{{{up_sel}}} == 1) > 0))",
        op="==",
        threshold=1,
        unit="bool",
        for_=ABSENT_FOR,
        severity=failing.severity if failing else renamed.get("critical", "critical"),
        summary=f"check {check.name} is not exported at all: its data is missing",
        description=(
            "The exporter is up but has no result for this check: it was removed from "
            "the exporter's configuration, renamed, or the configuration reload lost it. "
            "None of the check's alerts can fire meanwhile."
        ),
        steps=(
            "Compare the exporter's effective configuration (/config) with the one this "
            "bundle was generated from.",
            "Restore the check, or regenerate the bundle when the rename was meant.",
        ),
        reads=success,
        test=(),
    )
    out.append(
        Generated(
            _alert(
                base + "Absent",
                prefix,
                absent.query,
                absent,
                section,
                AlertTest((), tuple(sorted(_labels_of(sel).items())), None, 0.0),
            ),
            check,
            "absent",
            failing,
        )
    )
    # The guard pages as urgently as the most urgent alert it stands in for.
    order = [renamed.get(name, name) for name in ("critical", "warning", "info")]
    rank = {name: index for index, name in enumerate(order)}
    for reads, members in guarded.items():
        first, first_name, first_scope = members[0]
        names = tuple(prefix + short for _, short, _ in members)
        severity = min((d.severity for d, _, _ in members), key=lambda s: rank.get(s, 0))
        lookback = format_duration(VANISH_LOOKBACK)
        guard = DefaultAlert(
            key="missing",
            name="NoData",
            query=(
                f"(group without () (last_over_time({reads}[{lookback}]) unless {reads}) "
                f"and on (check) ({success} == 1)"
                + (
                    f" {_fill_sel(first.missing_unless, sel, check.kind)}"
                    if first.missing_unless
                    else ""
                )
                + ")"
            ),
            op="==",
            threshold=1,
            unit="bool",
            for_=GUARD_FOR,
            severity=severity,
            summary=(
                f"data of {check.name} is missing: {_metric(reads)} was exported "
                f"within the last {lookback} and is gone, so "
                f"{', '.join(names)} cannot fire"
            ),
            description=(
                "The check still succeeds, but a series it exported has disappeared: a "
                "glob that matches nothing, an item that left the JSON list, a queue that "
                "was removed, a query that returns no row for it any more. Its value is "
                "unknown, not fine."
            ),
            steps=(
                "Open the exporter's /metrics and compare the check's series with the "
                "labels in this alert.",
                "Find why the item stopped being reported (renamed, removed, its writer "
                "stopped); when the removal was meant, this alert resolves within "
                f"{lookback}.",
            ),
            reads=reads,
            test=(),
        )
        vanished = _vanishing_input(first, sel, check.kind, first_scope)
        labels = {**_labels_of(vanished.split("{", 1)[1]), **_labels_of(sel)}
        out.append(
            Generated(
                _alert(
                    first_name + "NoData",
                    prefix,
                    guard.query,
                    guard,
                    section,
                    AlertTest((), tuple(sorted(labels.items())), None, 0.0),
                ),
                check,
                "missing",
                first,
                names,
                vanished,
                first_scope,
            )
        )
    return out


def config_bundle(
    config: Config,
    slug: str,
    *,
    title: str = "",
    system: str = "",
    job: str = EXPORTER_JOB,
    docs_url: str = "",
) -> ConfigBundle:
    """The bundle of ``config``; raises :class:`ConfigError` for alertname collisions."""
    generated: list[Generated] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    for index, check in enumerate(config.checks):
        for item in check_alerts(check, system, job):
            other = seen.get(item.alert.name)
            if other is not None and other != check.name:
                problems.append(
                    f"checks[{index}].name: alert {item.alert.name} of check {check.name} "
                    f"has the same name as one of check {other}; rename one of the checks"
                )
            seen[item.alert.name] = check.name
            generated.append(item)
    if problems:
        raise ConfigError(problems)
    profile = Profile(
        slug=slug,
        system=system or slug,
        title=title or slug,
        runbook="",
        prefix="",
        docs_url=(docs_url or "docs/runbooks").rstrip("/"),
        evaluation_interval=STEP,
        group_wait=30.0,
        group_interval=300.0,
        severities=SEVERITIES,
        receivers=RECEIVERS,
        exporters=(),
        alerts=tuple(g.alert for g in generated),
        checks=tuple((c.name, c.kind) for c in config.checks),
        routing_notes=ROUTING_NOTES,
        generated=tuple(generated),
        selector_system=system,
    )
    return ConfigBundle(profile, system, config)


def load_config_bundle(
    path: Path,
    *,
    system: str = "",
    job: str = EXPORTER_JOB,
    docs_url: str = "",
    env: Mapping[str, str] | None = None,
) -> ConfigBundle:
    """Validate an exporter config and build its bundle; every problem with its path."""
    # The file name, not the path: generated headers must not depend on where it lies.
    config = replace(load_file(path, env), source=path.name)
    slug = system or re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "config"
    if not SLUG.fullmatch(slug):
        raise ConfigError([f"--system: use lower-case letters, digits and -, got {slug!r}"])
    return config_bundle(
        config, slug, title=system or path.stem, system=system, job=job, docs_url=docs_url
    )


def drilled(bundle: ConfigBundle, factor: float) -> ConfigBundle:
    """The bundle with every `for`, window and notification interval times ``factor``
    (end-to-end drills); its promtool tests are left out (they step by a minute)."""
    from exporter.bundle.rules import drill

    return replace(bundle, profile=drill(bundle.profile, factor), drill=True)


# --- promtool tests --------------------------------------------------------------------


def _values(shape: str, value: float, steps: int, settle_steps: int, growth: float) -> str:
    """promtool's expanding notation for one input; ``growth`` is what a ``jump`` counter
    adds per step after its jump (0 on the quiet side)."""
    if shape == "gauge":
        return f"{number(value)}+0x{steps}"
    if shape == "age":  # a timestamp `value` seconds behind the evaluation time
        return f"{number(-value)}+{number(STEP)}x{steps}"
    if shape == "until":  # a timestamp `value` seconds ahead of the evaluation time
        return f"{number(value)}+{number(STEP)}x{steps}"
    if shape == "drop":  # 1000, then 1000 * value from the settle time on
        return f"1000+0x{settle_steps - 1} {number(1000 * value)}+0x{steps - settle_steps}"
    # jump: a counter at 0, then `value` higher from the settle time on (and growing by
    # `value` per step on the firing side, so that the increase stays past the
    # threshold however long `for` is)
    return f"0+0x{settle_steps - 1} {number(value)}+{number(growth)}x{steps - settle_steps}"


def _window_steps(query: str) -> int:
    match = re.search(r"\[(\d+[smhd])\]", query)
    seconds = parse_duration(match[1]) if match else None
    return max(int((seconds or STEP) // STEP), 1)


def _render(
    profile: Profile, alert: Alert, labels: Mapping[str, str], value: float | None
) -> dict[str, str]:
    """The annotations as Prometheus renders them for a firing test alert."""
    from exporter.bundle.render import threshold_text, value_text
    from exporter.bundle.rules import runbook_url

    values = {
        "threshold": threshold_text(alert),
        "value": value_text(alert.unit, value if value is not None else 1.0),
    }

    def render(template: str) -> str:
        return LABEL_REF.sub(lambda m: labels.get(m[1], ""), fill(template, **values))

    return {
        "summary": render(alert.summary),
        "description": render(alert.description),
        "runbook_url": runbook_url(profile, alert),
    }


def _expected(
    profile: Profile, alert: Alert, labels: Mapping[str, str], value: float | None
) -> dict[str, Any]:
    from exporter.bundle.rules import alert_labels

    full = {**{k: v for k, v in labels.items() if v}, **alert_labels(profile, alert)}
    return {"exp_labels": full, "exp_annotations": _render(profile, alert, full, value)}


def _default_tests(profile: Profile, item: Generated) -> list[dict[str, Any]]:
    alert, default = item.alert, item.default
    assert default is not None
    names = {"threshold": alert.threshold}
    settle_steps = max(int(default.settle // STEP), 1)
    start = settle_steps * STEP if any(t.shape in ("drop", "jump") for t in default.test) else 0.0
    end = start + alert.for_
    steps = int((end + 1800) // STEP) + 2

    window_steps = _window_steps(alert.query)
    for_steps = int(alert.for_ // STEP)

    def inputs(side: str) -> list[dict[str, str]]:
        out = []
        for entry in alert.test.series:
            value = evaluate(entry.quiet if side == "quiet" else entry.fire, names)
            growth = value if side == "fire" else 0.0
            out.append(
                {
                    "series": entry.series,
                    "values": _values(entry.shape, value, steps, settle_steps, growth),
                }
            )
        return out

    first = alert.test.series[0]
    fire = evaluate(first.fire, names)
    fire_value = evaluate(alert.test.value or first.fire, {**names, "fire": fire})
    if first.shape == "jump":
        # the jump while it is in the window, plus the growth (whole numbers: exact)
        fire_value = fire + fire * for_steps if for_steps < window_steps else fire * window_steps
    labels = {k: v for k, v in alert.test.labels if v}
    jumps = any(t.shape in ("drop", "jump") for t in default.test)
    quiet_at = format_duration(end) if jumps else format_duration(end + 1800)
    checks: list[dict[str, Any]] = []
    if end >= STEP:
        checks.append(
            {"eval_time": format_duration(end - STEP), "alertname": alert.name, "exp_alerts": []}
        )
    checks.append(
        {
            "eval_time": format_duration(end),
            "alertname": alert.name,
            "exp_alerts": [_expected(profile, alert, labels, fire_value)],
        }
    )
    from exporter.bundle.promtests import decoy_tests
    from exporter.bundle.render import threshold_text

    shown = threshold_text(alert)
    silent = [{"eval_time": quiet_at, "alertname": alert.name, "exp_alerts": []}]
    tests = [
        {
            "name": f"{alert.name}: quiet just short of {shown}",
            "interval": format_duration(STEP),
            "input_series": inputs("quiet"),
            "alert_rule_test": silent,
        },
        {
            "name": f"{alert.name}: fires past {shown} once for elapses",
            "interval": format_duration(STEP),
            "input_series": inputs("fire"),
            "alert_rule_test": checks,
        },
    ]
    return [*tests, *decoy_tests(alert, inputs("quiet"), inputs("fire"), silent)]


def _failing_name(profile: Profile, check: CheckSpec[Any]) -> Generated | None:
    return next(
        (
            g
            for g in profile.generated
            if g.check is check
            and g.role == "default"
            and g.default is not None
            and g.default.key == "check_failing"
        ),
        None,
    )


def _missing_tests(profile: Profile, item: Generated) -> list[dict[str, Any]]:
    """The missing-data cases: the check fails (its series go), or one series vanishes."""
    from exporter.bundle.promtests import OTHER_JOB_UP, OTHER_TARGET, with_labels

    alert = item.alert
    sel = selector(item.check, profile.selector_system)
    success = f'runbook_exporter_check_success{{{sel},kind="{item.check.kind}"}}'
    out: list[dict[str, Any]] = []
    if item.role == "absent":
        system_label = {SYSTEM_LABEL: profile.selector_system} if profile.selector_system else {}
        up = with_labels("up", {"job": EXPORTER_JOB, "instance": "exporter:9469", **system_label})
        labels = dict(alert.test.labels)
        out.append(
            {
                "name": f"{alert.name}: the exporter runs without the check",
                "interval": format_duration(STEP),
                "input_series": [{"series": up, "values": "1x20"}],
                "alert_rule_test": [
                    {
                        "eval_time": format_duration(alert.for_ - STEP),
                        "alertname": alert.name,
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": format_duration(alert.for_),
                        "alertname": alert.name,
                        "exp_alerts": [_expected(profile, alert, labels, 1.0)],
                    },
                ],
            }
        )
        # Another job's target up and the exporter's gone: ExporterDown pages, not this.
        other = with_labels("up", {**OTHER_TARGET, **system_label})
        out.append(
            {
                "name": f"{alert.name}: {OTHER_JOB_UP}",
                "interval": format_duration(STEP),
                "input_series": [{"series": other, "values": "1x20"}],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": alert.name, "exp_alerts": []}
                ],
            }
        )
        out.append(
            {
                "name": f"{alert.name}: quiet while the check is exported",
                "interval": format_duration(STEP),
                "input_series": [
                    {"series": up, "values": "1x20"},
                    {"series": success, "values": "0x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": alert.name, "exp_alerts": []}
                ],
            }
        )
        return out
    # role == "missing": the series is there for 10 minutes, then gone while the check
    # succeeds: the guard fires `for` later (silent one evaluation before); the alerts it
    # guards stay silent (they have no data), which is why the guard exists.
    gone = 10 * STEP
    at = gone + alert.for_
    labels = dict(alert.test.labels)
    out.append(
        {
            "name": f"{alert.name}: {_metric(item.vanished)} vanishes while the check succeeds",
            "interval": format_duration(STEP),
            "input_series": [
                {"series": success, "values": "1x40"},
                {"series": item.vanished, "values": "1x9 stale"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": format_duration(at - STEP),
                    "alertname": alert.name,
                    "exp_alerts": [],
                },
                {
                    "eval_time": format_duration(at),
                    "alertname": alert.name,
                    "exp_alerts": [_expected(profile, alert, labels, 1.0)],
                },
                *(
                    {"eval_time": format_duration(at), "alertname": name, "exp_alerts": []}
                    for name in item.guards
                ),
            ],
        }
    )
    default = item.default
    if default is not None and default.missing_unless_input:
        # the data is missing because something that pages by itself failed (a query)
        explaining = _fill_sel(default.missing_unless_input, sel, item.check.kind)
        if item.scope:  # the query behind the scoped item (a query's item is its name)
            explaining = _scoped(explaining, "query", item.scope[0])
        out.append(
            {
                "name": f"{alert.name}: quiet while {_metric(explaining)} says why it is missing",
                "interval": format_duration(STEP),
                "input_series": [
                    {"series": success, "values": "1x40"},
                    {"series": item.vanished, "values": "1x9 stale"},
                    {"series": explaining, "values": "1x9 0x30"},
                ],
                "alert_rule_test": [
                    {"eval_time": format_duration(at), "alertname": alert.name, "exp_alerts": []},
                    {
                        "eval_time": format_duration(at + 600),
                        "alertname": alert.name,
                        "exp_alerts": [],
                    },
                ],
            }
        )
    failing = _failing_name(profile, item.check)
    if failing is not None:  # the check fails: its failing alert pages, not this guard
        fail_labels = dict(failing.alert.test.labels)
        out.append(
            {
                "name": f"{alert.name}: the check fails, so {failing.alert.name} pages instead",
                "interval": format_duration(STEP),
                "input_series": [
                    {"series": success, "values": "1x9 " + "0x30"},
                    {"series": item.vanished, "values": "1x9 stale"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": format_duration(at + 600),
                        "alertname": alert.name,
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": format_duration(gone + failing.alert.for_),
                        "alertname": failing.alert.name,
                        "exp_alerts": [_expected(profile, failing.alert, fail_labels, 0.0)],
                    },
                ],
            }
        )
    return out


def generated_tests(profile: Profile, item: Generated) -> list[dict[str, Any]]:
    """The promtool tests of one generated alert: its threshold and ``for`` pinned, or
    its missing-data case."""
    if item.role == "default":
        return _default_tests(profile, item)
    return _missing_tests(profile, item)


def promtool_tests(bundle: ConfigBundle, rules_path: str) -> str:
    """promtool unit tests for every generated alert, guards and missing data included."""
    from exporter.bundle.render import GENERATED, dump_yaml

    data = {
        "rule_files": [rules_path],
        "evaluation_interval": format_duration(STEP),
        "tests": [
            test for item in bundle.generated for test in generated_tests(bundle.profile, item)
        ],
    }
    return dump_yaml(data, GENERATED.format(source=bundle.config.source))


# --- the files -------------------------------------------------------------------------


def _page(bundle: ConfigBundle) -> str:
    """The runbook page: per alert what fired, what it means, the steps."""
    from exporter.bundle.alertmanager import receiver_name
    from exporter.bundle.render import op_text, threshold_text
    from exporter.bundle.rules import anchor

    profile = bundle.profile
    lines = [
        f"# {profile.title}: alerts and what to do",
        "",
        f"<!-- Generated by `runbook-exporter bundle generate --config` from "
        f"{bundle.config.source}. Do not edit. -->",
        "",
        f"Rules: `rules/{profile.slug}.rules.yml` (and the static "
        "`rules/runbook-exporter.rules.yml`); tests: "
        f"`rules/tests/{profile.slug}.test.yml`; dashboards: `dashboards/{profile.slug}.json` "
        f"(one panel per alert) and `dashboards/{profile.slug}-overview.json`; routing: "
        f'`alertmanager/alertmanager.yml` (`runbook="{profile.slug}"`).',
        "",
        "## Routing",
        "",
        ROUTING_NOTES,
        "",
        "## Alerts",
        "",
        "| alert | check | fires when | severity |",
        "|---|---|---|---|",
    ]
    for item in bundle.generated:
        alert = item.alert
        held = f" for {format_duration(alert.for_)}" if alert.for_ else ""
        lines.append(
            f"| [{alert.name}](#{anchor(alert)}) | `{item.check.name}` ({item.check.kind}) | "
            f"`{alert.expr()}`{held} | {alert.severity} |"
        )
    lines.append("")
    for item in bundle.generated:
        alert = item.alert
        severity = profile.severity(alert.severity)
        held = f"was true for {format_duration(alert.for_)}." if alert.for_ else "was true."
        summary = LABEL_REF.sub(
            lambda m: f"<{m[1]}>",
            fill(alert.summary, value="(value)", threshold=threshold_text(alert)),
        )
        lines += [
            f"### {alert.name}",
            "",
            f"**{alert.severity}** ({severity.priority}, repeats every "
            f"{severity.response_text} until resolved) — {summary}",
            "",
            f"**What fired:** `{alert.expr()}` {held} "
            f"({op_text(alert.op)} {threshold_text(alert)}).",
            "",
            LABEL_REF.sub(lambda m: f"<{m[1]}>", alert.description),
            "",
        ]
        if item.role == "default" and item.default is not None:
            lines += [
                f"**Set it** next to the check: `alerts: {{{item.default.key}: "
                f"{{...}}}}` (threshold, `for`, severity, or `false`).",
                "",
            ]
        if item.guards:
            lines += [f"**Guards:** {', '.join(item.guards)}.", ""]
        lines += [
            "**Steps:**",
            "",
            *(f"{n}. {step}" for n, step in enumerate(alert.steps, 1)),
            "",
            f"**Routed to:** `{receiver_name(profile, alert.severity)}`.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _static_route(profile: Profile) -> dict[str, Any]:
    """The route of the static rules (``runbook="runbook-exporter"``) to this bundle's
    receivers, by severity."""
    from exporter.bundle.alertmanager import receiver_name
    from exporter.bundle.generic import SLUG as STATIC

    return {
        "matchers": [f'runbook="{STATIC}"'],
        "receiver": receiver_name(profile, profile.severities[-1].name),
        "group_wait": format_duration(profile.group_wait),
        "group_interval": format_duration(profile.group_interval),
        "routes": [
            {
                "matchers": [f'severity="{severity.name}"'],
                "receiver": receiver_name(profile, severity.name),
                "repeat_interval": format_duration(severity.response),
            }
            for severity in profile.severities
        ],
    }


def bundle_files(bundle: ConfigBundle, webhook_url: str | None = None) -> dict[str, str]:
    """Every file of a config's bundle, ``{relative path: text}``."""
    from exporter.bundle.alertmanager import alertmanager_files
    from exporter.bundle.alertmanager import config as alertmanager_config
    from exporter.bundle.dashboards import profile_dashboards, provisioning_files
    from exporter.bundle.generic import generic_files
    from exporter.bundle.kubernetes import OUTPUT, rule_resource
    from exporter.bundle.render import GENERATED, dump_yaml
    from exporter.bundle.rules import rule_groups

    profile = bundle.profile
    slug = profile.slug
    rules_path = f"rules/{slug}.rules.yml"
    source = GENERATED.format(source=f"--config {bundle.config.source}")
    groups = rule_groups(profile)
    files = {
        rules_path: dump_yaml({"groups": groups}, source),
        f"{OUTPUT}/{slug}.yaml": rule_resource(f"runbook-exporter-{slug}", slug, groups, source),
        **profile_dashboards(profile, (c.kind for c in bundle.config.checks)),
        f"docs/runbooks/{slug}.md": _page(bundle),
    }
    if not bundle.drill:
        files[f"rules/tests/{slug}.test.yml"] = promtool_tests(bundle, f"../{slug}.rules.yml")
    files.update(generic_files())
    files.update(alertmanager_files([profile], webhook_url=webhook_url))
    # The static rules' alerts (exporter down or gone, check failing, reload failed)
    # reach this bundle's receivers, not the catch-all.
    routing = alertmanager_config([profile], webhook_url=webhook_url)
    routing["route"]["routes"].insert(1, _static_route(profile))
    files["alertmanager/alertmanager.yml"] = dump_yaml(routing, source)
    files.update(provisioning_files())
    return dict(sorted(files.items()))
