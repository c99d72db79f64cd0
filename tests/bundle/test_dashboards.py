"""Dashboards: one per profile with a stable uid and the datasource/job/instance
variables; one panel per alert whose query parses as PromQL, reads only known metrics,
rates over $__rate_interval, and whose threshold step is the alert's threshold."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from exporter.bundle.dashboards import dashboard_uid, panel_id, threshold_steps
from exporter.bundle.known import EXTERNAL_METRICS
from exporter.bundle.profile import Profile
from exporter.bundle.promql import scoped
from exporter.bundle.render import grafana_unit

from .test_rules import EXPORTER_METRICS, _selectors

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": "job", "$instance": "instance"}


def _load(bundle: Path, profile: Profile) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / "dashboards" / f"{profile.slug}.json").read_text())
    return data


def _as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    # "$1": label_replace's replacement (Grafana leaves unknown variables as they are)
    assert "$" not in expr.replace('"$1"', ""), expr
    return expr


def test_dashboard_identity_and_variables(bundle: Path, profiles: list[Profile]) -> None:
    uids = set()
    for profile in profiles:
        data = _load(bundle, profile)
        assert data["uid"] == dashboard_uid(profile)
        uids.add(data["uid"])
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["job"]["type"] == variables["instance"]["type"] == "query"
        assert "$job" in variables["instance"]["query"]
    assert len(uids) == len(profiles)


def _alert_panels(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in data["panels"] if p["type"] == "timeseries"}


def test_one_panel_per_alert_with_its_threshold_and_unit(
    bundle: Path, profiles: list[Profile]
) -> None:
    for profile in profiles:
        panels = _alert_panels(_load(bundle, profile))
        # The missing-data guards stand in for another alert: no panel of their own.
        guards = {g.alert.name for g in profile.generated if g.role != "default"}
        drawn = [(i, a) for i, a in enumerate(profile.alerts) if a.name not in guards]
        assert len(panels) == len(drawn)
        for index, alert in drawn:
            panel = panels[panel_id(index)]
            assert panel["title"] == alert.panel_title
            assert panel["datasource"]["uid"] == "${datasource}"
            defaults = panel["fieldConfig"]["defaults"]
            steps = defaults["thresholds"]["steps"]
            assert steps[0]["value"] is None
            assert steps[1]["value"] == pytest.approx(alert.threshold), alert.name
            _assert_colours_match_the_alert(steps, alert.op, alert.threshold)
            assert defaults["unit"] == grafana_unit(alert.unit)
            assert alert.name in panel["description"]
            assert panel["links"][0]["url"].endswith(f"#{alert.name.lower()}")


def test_panel_queries_parse_and_use_known_metrics(bundle: Path, profiles: list[Profile]) -> None:
    for profile in profiles:
        panels = _alert_panels(_load(bundle, profile))
        for index, alert in enumerate(profile.alerts):
            if panel_id(index) not in panels:  # a missing-data guard: no panel
                continue
            (target,) = panels[panel_id(index)]["targets"]
            expr = target["expr"]
            if "rate(" in expr or "increase(" in expr:
                windows = re.findall(r"\[([^\]]+)\]", expr)
                # A kind default's fixed window (increase(...[15m]) > 5) is drawn as the
                # alert compares it.
                own = re.findall(r"\[([^\]]+)\]", alert.expr())
                assert (
                    "$__rate_interval" in windows
                    or "1h" in windows
                    or "2h" in windows
                    or (windows and set(windows) <= set(own))
                ), (alert.name, expr)
                assert "[5m]" not in expr
            tree = promql_parser.parse(_as_promql(expr))
            selectors = _selectors(tree)
            assert selectors
            if alert.exporter.startswith("runbook-exporter"):  # its own or the defaults
                known = EXPORTER_METRICS
            else:
                job = next(e for e in profile.exporters if e.job == alert.exporter)
                known = EXTERNAL_METRICS[job.source]
            for selector in selectors:
                assert selector.name in known, f"{alert.name}: {selector.name}"
                names = {m.name for m in selector.matchers.matchers}
                assert {"job", "instance"} <= names, f"{alert.name}: {expr}"


def grafana_colour(value: float, steps: list[dict[str, Any]]) -> str:
    """The colour Grafana gives ``value``: that of the last step whose value it is >=,
    the first step (value null) being minus infinity. This is getActiveThreshold of
    grafana/packages/grafana-data/src/field/thresholds.ts, re-stated."""
    active = steps[0]
    for step in steps[1:]:
        if value >= step["value"]:
            active = step
        else:
            break
    return str(active["color"])


FIRES = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
    "!=": lambda v, t: v != t,
}


def _assert_colours_match_the_alert(steps: list[dict[str, Any]], op: str, t: float) -> None:
    """Every value around the threshold is green exactly when the alert would not fire."""
    nearby = [math.nextafter(t, -math.inf), t, math.nextafter(t, math.inf)]
    for value in [t - 1, t - abs(t) / 100, *nearby, t + abs(t) / 100, t + 1, 0.0]:
        colour = grafana_colour(value, steps)
        assert (colour != "green") == FIRES[op](value, t), (op, t, value, colour, steps)


@pytest.mark.parametrize("op", sorted(FIRES))
@pytest.mark.parametrize("threshold", [0.0, 1.0, 0.9, 536870912.0, -5.0])
def test_threshold_colours_per_operator(op: str, threshold: float) -> None:
    """Healthy values are green and firing values coloured, for each operator
    (ExporterDown's `== 0` panel is green at up=1, a `> 0` panel at a healthy 0, the
    "maxmemory != 512MiB" panel green at exactly 512MiB)."""
    steps = [{"value": v, "color": c} for v, c in threshold_steps(op, threshold, "red")]
    _assert_colours_match_the_alert(steps, op, threshold)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("up", "up{S}"),
        ('up{job="a"} == 0', 'up{job="a",S} == 0'),
        ("sum by (le, job) (rate(x_bucket[5m]))", "sum by (le, job) (rate(x_bucket{S}[5m]))"),
        ('time() - f{a="}{"}', 'time() - f{a="}{",S}'),
        ("a / (b > 0) * 100", "a{S} / (b{S} > 0) * 100"),
        ("1 - x offset 5m", "1 - x{S} offset 5m"),
        ("a and on (job) b", "a{S} and on (job) b{S}"),
        ("1e-3 * a", "1e-3 * a{S}"),
    ],
)
def test_scoped_adds_matchers_to_every_selector(query: str, expected: str) -> None:
    assert scoped(query, "S") == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sum by (le, job) (rate(x[5m]))", "sum by (le, job, s) (rate(x{S}[5m]))"),
        ("sum(rate(x[5m])) by (job)", "sum(rate(x{S}[5m])) by (job, s)"),
        ("sum(x) / count (y)", "sum by (s) (x{S}) / count by (s) (y{S})"),
        ("a and on (job) b", "a{S} and on (job, s) b{S}"),
        ("a / on () b", "a{S} / on (s) b{S}"),
        ("sum without (pod) (x)", "sum without (pod) (x{S})"),
        ("min by (s) (x)", "min by (s) (x{S})"),
    ],
)
def test_scoped_keeps_a_label_through_aggregation_and_matching(query: str, expected: str) -> None:
    """The system label survives every aggregation and one-to-one match, so each alert
    carries it (promql_parser agrees the result is valid PromQL)."""
    got = scoped(query, "S", keep="s")
    assert got == expected
    promql_parser.parse(got.replace("{S}", '{s="x"}').replace(",S}", ',s="x"}'))


def test_provisioning_points_grafana_at_the_dashboards(bundle: Path) -> None:
    provider = yaml.safe_load(
        (bundle / "dashboards/provisioning/dashboards/runbook-exporter.yml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"
    datasource = yaml.safe_load(
        (bundle / "dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["type"] == "prometheus"


def test_every_profile_has_an_overview_of_its_checks_kinds(
    bundle: Path, profiles: list[Profile]
) -> None:
    """Signals worth watching that no alert reads (queues by state, response times, pools
    against their max) are drawn too: one overview per profile, a row per kind it uses,
    every query over this exporter's metrics and selecting the `check` variable."""
    for profile in profiles:
        path = bundle / "dashboards" / f"{profile.slug}-overview.json"
        data: dict[str, Any] = json.loads(path.read_text())
        rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
        kinds = sorted({kind for _, kind in profile.checks})
        assert [r.split()[0] for r in rows] == kinds, rows
        for panel in (p for p in data["panels"] if p["type"] != "row"):
            for target in panel["targets"]:
                expr = _as_promql(target["expr"].replace("$check", ".+"))
                names = {s.name for s in _selectors(promql_parser.parse(expr))}
                if names == {"runbook_alert_threshold"}:  # the bundle's recorded thresholds
                    continue
                assert names, panel["title"]
                assert names <= EXPORTER_METRICS, (panel["title"], names)
                assert "$check" in target["expr"], panel["title"]


def test_overview_threshold_lines_find_every_alert_made_from_their_default(
    bundle: Path, profiles: list[Profile]
) -> None:
    """A kind's panel draws the thresholds of the alerts made from its default, by the
    recorded ``default`` label: an alert renamed in the profile (HourlySourceLagging is
    the http kind's Stale) keeps its line, and no other alert's line is drawn."""
    renamed = 0
    for profile in profiles:
        rules = yaml.safe_load((bundle / "rules" / f"{profile.slug}.rules.yml").read_text())
        recorded = [
            r["labels"] for g in rules["groups"] for r in g["rules"]
            if r.get("record") == "runbook_alert_threshold"
        ]  # fmt: skip
        board = json.loads((bundle / "dashboards" / f"{profile.slug}-overview.json").read_text())
        for panel in (p for p in board["panels"] if p["type"] != "row"):
            for target in panel["targets"]:
                if not target["expr"].startswith("runbook_alert_threshold"):
                    continue
                (selector,) = _selectors(
                    promql_parser.parse(target["expr"].replace("$check", ".+"))
                )
                equal = promql_parser.MatchOp.Equal
                wanted = {m.name: m.value for m in selector.matchers.matchers if m.op == equal}
                drawn = {
                    labels["alertname"] for labels in recorded
                    if all(labels.get(k) == v for k, v in wanted.items())
                }  # fmt: skip
                kind, name = wanted["default"].split(":")
                made = {
                    g.alert.name for g in profile.generated
                    if g.role == "default" and g.default is not None
                    and g.check.kind == kind and g.default.name == name
                }  # fmt: skip
                assert drawn == made, (profile.slug, panel["title"])
                renamed += sum(1 for alert in made if not alert.endswith(name))
    assert renamed  # the case this guards: alerts not named after their default
