"""Prometheus rule files: one group of alerts per profile, rendered from its thresholds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from exporter.bundle.profile import Alert, Profile, fill, number
from exporter.bundle.render import (
    GENERATED,
    dump_yaml,
    threshold_text,
    value_template,
)
from exporter.fields import format_duration


def anchor(alert: Alert) -> str:
    """The docs page anchor of an alert's section (GitHub lower-cases heading text)."""
    return alert.name.lower()


def runbook_url(profile: Profile, alert: Alert) -> str:
    return f"{profile.docs_url}/{profile.slug}.md#{anchor(alert)}"


def alert_labels(profile: Profile, alert: Alert) -> dict[str, str]:
    severity = profile.severity(alert.severity)
    return {
        "severity": alert.severity,
        "priority": severity.priority,
        "runbook": profile.slug,
        "signal": alert.signal,
    }


def alert_annotations(profile: Profile, alert: Alert) -> dict[str, str]:
    values = {"threshold": threshold_text(alert), "value": value_template(alert.unit)}
    return {
        "summary": fill(alert.summary, **values),
        "description": fill(alert.description, **values),
        "runbook_url": runbook_url(profile, alert),
    }


def rule(profile: Profile, alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {"alert": alert.name, "expr": alert.expr()}
    if alert.for_:
        out["for"] = format_duration(alert.for_)
    out["labels"] = alert_labels(profile, alert)
    out["annotations"] = alert_annotations(profile, alert)
    return out


def recording_rules(profile: Profile) -> list[dict[str, Any]]:
    """Each alert's threshold as a series, so dashboards and ad-hoc queries can compare
    against the number the alert uses instead of a copy of it. An alert made by a kind's
    default also names its check and that default (``default="<kind>:<Name>"``): the
    overview dashboard draws a kind's thresholds by those, whatever the alert is called."""
    made = {
        g.alert.name: g for g in profile.generated if g.role == "default" and g.default is not None
    }
    rules: list[dict[str, Any]] = []
    for alert in profile.alerts:
        labels = {"alertname": alert.name, "runbook": profile.slug}
        generated = made.get(alert.name)
        if generated is not None and generated.default is not None:
            labels["check"] = generated.check.name
            labels["default"] = f"{generated.check.kind}:{generated.default.name}"
        rules.append({
            "record": "runbook_alert_threshold",
            "expr": f"vector({number(alert.threshold)})",
            "labels": labels,
        })  # fmt: skip
    return rules


def all_alerts(profile: Profile) -> list[Alert]:
    """The profile's alerts, then their missing-data guards (exporter/bundle/guards.py)."""
    from exporter.bundle.guards import guards

    return [*profile.alerts, *guards(profile)]


def rule_groups(profile: Profile) -> list[dict[str, Any]]:
    """The profile's rule groups: alerts and their guards, then the threshold recording
    rules."""
    interval = format_duration(profile.evaluation_interval)
    return [
        {
            "name": f"{profile.slug}.alerts",
            "interval": interval,
            "rules": [rule(profile, alert) for alert in all_alerts(profile)],
        },
        {
            "name": f"{profile.slug}.thresholds",
            "interval": interval,
            "rules": recording_rules(profile),
        },
    ]


def rules_file(profile: Profile) -> str:
    return dump_yaml(
        {"groups": rule_groups(profile)},
        GENERATED.format(source=f"profiles/{profile.slug}.yml"),
    )


def drill(profile: Profile, factor: float) -> Profile:
    """The profile with every `for`, evaluation interval, freshness window (duration
    thresholds and ``{lookback}`` ranges) and notification interval multiplied by
    ``factor``; value thresholds unchanged."""

    def alert(a: Alert) -> Alert:
        threshold = a.threshold * factor if a.window_threshold else a.threshold
        return replace(a, for_=a.for_ * factor, threshold=threshold, lookback=a.lookback * factor)

    alerts = {a.name: alert(a) for a in profile.alerts}
    return replace(
        profile,
        evaluation_interval=profile.evaluation_interval * factor,
        group_wait=profile.group_wait * factor,
        group_interval=profile.group_interval * factor,
        severities=tuple(replace(s, response=s.response * factor) for s in profile.severities),
        alerts=tuple(alerts.values()),
        generated=tuple(replace(g, alert=alerts[g.alert.name]) for g in profile.generated),
    )
