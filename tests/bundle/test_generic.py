"""The static rule file for any config: promtool unit tests pinned to each `for`, with
the missing-data cases (no target at all, a target that left service discovery), and
amtool proving the Watchdog reaches the dead man's switch and nothing else does.

The promtool inputs are written here by hand (not generated from the same table as the
rules): moving a `for` or an expression in exporter/bundle/generic.py makes them fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from exporter.bundle.generic import ALERTS, DEADMANS_SWITCH, RULES_PATH
from tests.support import require_binary

_TARGET_LABELS = 'job="runbook-exporter",instance="exp:9469"'
UP = f"up{{{_TARGET_LABELS}}}"
SUCCESS = f'runbook_exporter_check_success{{{_TARGET_LABELS},check="my-db",kind="postgres"}}'
RELOAD = f"runbook_exporter_config_last_reload_successful{{{_TARGET_LABELS}}}"


def _silent(at: str, name: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def _annotations(name: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations with its labels filled in, as Prometheus renders them."""
    alert = next(a for a in ALERTS if a.name == name)

    def render(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)

    return {"summary": render(alert.summary), "description": render(alert.description)}


def _fires(
    at: str, name: str, labels: dict[str, str], severity: str = "warning", priority: str = "P2"
) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {
                    **labels,
                    "severity": severity,
                    "priority": priority,
                    "runbook": "runbook-exporter",
                },
                "exp_annotations": _annotations(name, labels),
            }
        ],
    }


TARGET = {"job": "runbook-exporter", "instance": "exp:9469"}

TESTS: list[dict[str, Any]] = [
    {  # up == 0 for 2m: silent one evaluation before, firing at 2m; up == 1 stays quiet.
        "interval": "1m",
        "input_series": [{"series": UP, "values": "0x10"}],
        "alert_rule_test": [
            _silent("1m", "RunbookExporterDown"),
            _fires("2m", "RunbookExporterDown", TARGET, "critical", "P1"),
            _silent("10m", "RunbookExporterAbsent"),
        ],
    },
    {
        "interval": "1m",
        "input_series": [{"series": UP, "values": "1x30"}],
        "alert_rule_test": [
            _silent("30m", "RunbookExporterDown"),
            _silent("30m", "RunbookExporterAbsent"),
            _silent("30m", "RunbookExporterTargetMissing"),
        ],
    },
    {  # missing data: no target at all pages after 5m.
        "interval": "1m",
        "input_series": [{"series": 'unrelated{job="x"}', "values": "1x10"}],
        "alert_rule_test": [
            _silent("4m", "RunbookExporterAbsent"),
            _fires("5m", "RunbookExporterAbsent", {"job": "runbook-exporter"}, "critical", "P1"),
            _silent("10m", "RunbookExporterDown"),
        ],
    },
    {  # missing data: the target leaves service discovery at 10m (stale marker).
        "interval": "1m",
        "input_series": [
            {"series": UP, "values": "1x9 stale"},
            {"series": 'up{job="runbook-exporter",instance="other:9469"}', "values": "1x80"},
        ],
        "alert_rule_test": [
            _silent("9m", "RunbookExporterTargetMissing"),
            _silent("14m", "RunbookExporterTargetMissing"),
            _fires("15m", "RunbookExporterTargetMissing", {"instance": "exp:9469"}),
            _silent("15m", "RunbookExporterAbsent"),
        ],
    },
    {  # a check failing for 10m; a flapping one resets `for` each time it succeeds.
        "interval": "1m",
        "input_series": [
            {"series": SUCCESS, "values": "0x20"},
            {"series": SUCCESS.replace("my-db", "flappy"), "values": "0 0 0 0 0 0 0 0 0 1 " * 2},
        ],
        "alert_rule_test": [
            _silent("9m", "RunbookExporterCheckFailing"),
            _fires(
                "10m",
                "RunbookExporterCheckFailing",
                {**TARGET, "check": "my-db", "kind": "postgres"},
            ),
        ],
    },
    {
        "interval": "1m",
        "input_series": [{"series": SUCCESS, "values": "1x30"}],
        "alert_rule_test": [_silent("30m", "RunbookExporterCheckFailing")],
    },
    {
        "interval": "1m",
        "input_series": [{"series": RELOAD, "values": "0x10"}],
        "alert_rule_test": [
            _silent("4m", "RunbookExporterConfigReloadFailed"),
            _fires("5m", "RunbookExporterConfigReloadFailed", TARGET),
        ],
    },
    {
        "interval": "1m",
        "input_series": [{"series": RELOAD, "values": "1x30"}],
        "alert_rule_test": [_silent("30m", "RunbookExporterConfigReloadFailed")],
    },
    {  # the heartbeat fires from the first evaluation, with no input at all.
        "interval": "1m",
        "input_series": [],
        "alert_rule_test": [_fires("0m", "Watchdog", {}, "none", "P4")],
    },
]


def _promtool_test(rules: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "generic.test.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": TESTS,
            }
        )
    )
    return subprocess.run(
        [require_binary("promtool", "prometheus"), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_static_rules_fire_at_for_and_on_missing_data(bundle: Path, tmp_path: Path) -> None:
    result = _promtool_test(bundle / RULES_PATH, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_rules_tests_fail_when_a_for_moves(bundle: Path, tmp_path: Path) -> None:
    """Lengthening CheckFailing's `for` by one evaluation breaks the tests above."""
    text = (bundle / RULES_PATH).read_text()
    moved = tmp_path / "moved.rules.yml"
    moved.write_text(text.replace("for: 10m", "for: 11m"))
    assert moved.read_text() != text
    result = _promtool_test(moved, tmp_path)
    assert result.returncode != 0
    assert "RunbookExporterCheckFailing" in result.stdout + result.stderr


def test_watchdog_routes_only_to_the_dead_mans_switch(bundle: Path) -> None:
    amtool = require_binary("amtool", "prometheus-alertmanager")
    config = str(bundle / "alertmanager" / "alertmanager.yml")

    def route(*labels: str) -> str:
        done = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    assert route("alertname=Watchdog", "severity=none", "runbook=runbook-exporter") == (
        DEADMANS_SWITCH
    )
    assert route("alertname=Watchdog", "runbook=smart-city", "severity=critical") == (
        DEADMANS_SWITCH
    )
    assert (
        route("alertname=SmartCityApiDown", "runbook=smart-city", "severity=critical")
        != DEADMANS_SWITCH
    )
