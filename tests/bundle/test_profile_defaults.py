"""Profiles are built by the kinds' default-alert machinery (issue 14, item 2).

A profile's alerts over this exporter's series come from each check's kind defaults, with
the thresholds beside the check (``alerts:``), ``name:`` keeping the runbook's
alertnames, and runbook fields under ``bundle.runbook_fields``. The promtool runs of the
shipped profiles (tests/bundle/test_bundle_test.py) and the mutation test
(tests/bundle/test_rules.py) hold their thresholds; these tests pin how settings become
alerts and how a wrong profile is reported.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.bundle.profile import load_profile_data, load_profiles
from exporter.fields import ConfigError

ROOT = Path(__file__).resolve().parents[2]

SEVERITIES = [
    {"name": "critical", "priority": "P1", "response": "15m", "receivers": ["pager"]},
    {"name": "major", "priority": "P2", "response": "1h", "receivers": ["pager"]},
    {"name": "low", "priority": "P4", "response": "24h", "receivers": ["pager"]},
]


def _profile(**bundle: Any) -> dict[str, Any]:
    """One postgres check with a freshness and a value query, and a sources http check
    with freshness items; a routing whose severities are not the kinds' names."""
    return {
        "checks": [
            {
                "name": "db",
                "kind": "postgres",
                "dsn": "postgresql://monitor@127.0.0.1:5432/app",
                "queries": [
                    {"name": "telemetry", "type": "freshness", "sql": "SELECT max(t) FROM x"},
                    {"name": "vacuum-age", "type": "value", "sql": "SELECT 1 AS n"},
                ],
                "alerts": {
                    "check_failing": {"name": "DbDown", "for": "1m"},
                    "stale": [
                        {"item": "telemetry", "above": "60s", "name": "TelemetryStale"},
                        {"above": "2h"},
                    ],
                    "query_value": [
                        {"query": "vacuum-age", "above": "7d", "unit": "seconds", "for": "1d"}
                    ],
                },
            },
            {
                "name": "sources",
                "kind": "http",
                "url": "http://127.0.0.1:8080/api/sources",
                "alerts": {
                    "stale": [
                        {"item": ["hourly-a", "hourly.b"], "above": "1h", "name": "HourlyLag"},
                        {"item": "daily", "above": "24h", "severity": "low"},
                    ]
                },
            },
        ],
        "bundle": {
            "title": "T",
            "runbook": "t.md",
            "prefix": "T",
            "kind_defaults": "named",
            "routing": {
                "receivers": [{"name": "pager", "type": "pagerduty"}],
                "severities": SEVERITIES,
                "default_severities": {"warning": "major", "info": "low"},
            },
            **bundle,
        },
    }


def _exprs(data: dict[str, Any]) -> dict[str, str]:
    profile = load_profile_data(data, "<test>", "t")
    return {a.name: a.expr() for a in profile.alerts}


def test_scoped_settings_give_items_their_own_alert_and_the_rest_the_plain_one() -> None:
    exprs = _exprs(_profile())
    sel = 'check="db",system="t"'
    assert exprs["TTelemetryStale"] == (
        f'time() - freshness_timestamp_seconds{{{sel},item="telemetry"}} > 60'
    )
    # the entry that names no item covers every item the others leave out
    assert exprs["TDbStale"] == (
        f'time() - freshness_timestamp_seconds{{{sel},item!="telemetry"}} > 7200'
    )
    # several items: one regex, each taken literally (the dot is escaped for RE2)
    assert exprs["THourlyLag"] == (
        "time() - freshness_timestamp_seconds"
        '{check="sources",system="t",item=~"hourly\\\\-a|hourly\\\\.b"} > 3600'
    )
    # without a name: the check's, the default's and the items' names
    assert exprs["TSourcesStaleDaily"].endswith('item="daily"} > 86400')
    assert exprs["TDbQueryValueVacuumAge"] == (
        f'db_query_value{{{sel},query="vacuum-age"}} > 604800'
    )
    assert exprs["TDbDown"] == f"runbook_exporter_check_success{{{sel}}} == 0"


def test_severities_map_to_the_routing_names_and_a_setting_wins() -> None:
    profile = load_profile_data(_profile(), "<test>", "t")
    severity = {a.name: a.severity for a in profile.alerts}
    assert severity["TTelemetryStale"] == "major"  # the kind's warning, as this routing says
    assert severity["TSourcesStaleDaily"] == "low"  # set beside the check
    assert severity["TDbDown"] == "critical"


def test_kind_defaults_named_keeps_only_the_named_defaults_and_check_failing() -> None:
    named = set(_exprs(_profile()))
    everything = set(_exprs(_profile(kind_defaults="all")))
    assert "TDbPoolNearMax" in everything - named
    assert "TSourcesNotOk" in everything - named
    # failing, absent and the missing-data guards are never left out
    assert {"TSourcesFailing", "TSourcesAbsent", "TDbAbsent", "TTelemetryStaleNoData"} <= named


def test_runbook_fields_apply_to_the_named_alert() -> None:
    fields = {
        "TelemetryStale": {
            "section": "14.8",
            "quote": "every 10s",
            "summary": "No telemetry for {value} (limit {threshold})",
            "steps": ["pm2 logs tcp-server"],
            "depends_on": [{"alert": "DbDown", "equal": ["instance", "check"]}],
        }
    }
    profile = load_profile_data(_profile(runbook_fields=fields), "<test>", "t")
    alert = profile.alert("TelemetryStale")
    assert (alert.section, alert.quote, alert.steps) == (
        "14.8",
        "every 10s",
        ("pm2 logs tcp-server",),
    )
    assert alert.summary == "No telemetry for {value} (limit {threshold})"
    assert [(d.alert, d.equal) for d in alert.depends_on] == [("DbDown", ("instance", "check"))]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"runbook_fields": {"Telemetry": {"section": "x"}}},
            "bundle.runbook_fields.Telemetry: no alert of the checks has this name",
        ),
        (
            {"runbook_fields": {"TelemetryStale": {"summary": "{{ $value }}"}}},
            "bundle.runbook_fields.TelemetryStale.summary: the only template allowed is",
        ),
        (
            {"runbook_fields": {"TelemetryStale": {"depends_on": [{"alert": "Nope"}]}}},
            "bundle.runbook_fields.TelemetryStale.depends_on[0].alert: "
            'unknown alert "Nope" in this profile',
        ),
        (
            {"kind_defaults": "some"},
            'bundle.kind_defaults: expected one of all, named, got "some"',
        ),
    ],
)
def test_bad_bundle_fields_name_the_path(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile_data(_profile(**change), "<test>", "t")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_a_routing_without_the_kinds_severities_must_map_them() -> None:
    data = _profile()
    del data["bundle"]["routing"]["default_severities"]
    with pytest.raises(ConfigError) as caught:
        load_profile_data(data, "<test>", "t")
    assert caught.value.problems[:2] == [
        'bundle.routing.default_severities: the kinds\' default severity "warning" needs a '
        "severity of this routing (critical, low, major): map it under "
        "routing.default_severities",
        'bundle.routing.default_severities: the kinds\' default severity "info" needs a '
        "severity of this routing (critical, low, major): map it under "
        "routing.default_severities",
    ]


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        (
            {"stale": [{"item": "a", "below": "1h"}]},
            "checks[0].alerts.stale[0].below: this alert compares with >: write above: instead",
        ),
        (
            {"check_failing": {"name": "db-down"}},
            'checks[0].alerts.check_failing.name: use CamelCase letters and digits, got "db-down"',
        ),
        (
            {"check_failing": [{"for": "1m"}]},
            "checks[0].alerts.check_failing: expected true, false or a mapping with",
        ),
        (
            {"stale": [{"item": "a", "above": "1h", "colour": "red"}]},
            "checks[0].alerts.stale[0].colour: unknown key",
        ),
        (
            {"query_value": [{"query": "q", "above": "7d"}]},
            'checks[0].alerts.query_value[0].above: expected a number, got "7d"',
        ),
    ],
)
def test_bad_alert_settings_name_the_path(alerts: dict[str, Any], message: str) -> None:
    data = _profile()
    data["checks"][0]["alerts"] = alerts
    with pytest.raises(ConfigError) as caught:
        load_profile_data(data, "<test>", "t")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_every_profile_alert_over_this_exporter_comes_from_a_kind_default() -> None:
    """The five profiles: what bundle.alerts still holds reads other exporters' metrics,
    except the rule shapes no default has (listed here by name)."""
    custom = {
        "SurveillanceTrackerIngestJobsFailed",
        "SurveillanceTrackerIngestFailuresConsecutive",
        # A second threshold on a query whose first is the query_value default (PoolNearMax).
        "SmartCityPoolBeyondOneInstance",
        # Settings that are strings (a policy, a version): no numeric default carries them.
        "SmartCityRedisEvictionPolicyWrong",
        "SurveillanceTrackerRedisVersionTooOld",
        # A count below a number (schedulers < 3): the bullmq defaults compare with >.
        "SurveillanceTrackerIngestSchedulesMissing",
        # A named query's drop against its own recent past: the SQL kinds have no such
        # default (http has value_drop, file size_drop).
        "RtaCctvCamerasDropped",
    }
    generated = own = 0
    for profile in load_profiles(ROOT / "profiles"):
        names = {g.alert.name for g in profile.generated}
        generated += len(names)
        for alert in profile.alerts:
            if alert.name in names or alert.exporter != "runbook-exporter":
                continue
            own += 1
            assert alert.name in custom, f"{alert.name} is written by hand in {profile.slug}"
    assert own == len(custom)
    assert generated > 100


def test_profiles_keep_thresholds_beside_their_checks() -> None:
    """The smart-city profile as committed: the runbook's numbers are under each check."""
    data = yaml.safe_load((ROOT / "profiles" / "smart-city.yml").read_text(encoding="utf-8"))
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["db-backup"]["alerts"]["stale"]["above"] == "25h"
    assert by_name["redis"]["alerts"]["maxmemory"]["equal"] == 536870912
    original = copy.deepcopy(data)
    by_name["db-backup"]["alerts"]["stale"]["above"] = "30h"
    # The coverage lines that state the runbook's 25 h bind it: they move with it.
    for line in data["bundle"]["coverage"]:
        if "BackupMissing" in line.get("alerts", []) and "threshold" in line:
            line["threshold"] = "30h"
    moved = load_profile_data(data, "<test>", "smart-city").alert("BackupMissing")
    assert moved.expr().endswith("> 108000")
    kept = load_profile_data(original, "<test>", "smart-city").alert("BackupMissing")
    assert kept.expr().endswith("> 90000")
