"""Prometheus rules: promtool accepts every file, and a promtool unit test per alert
proves it stays silent short of its threshold and fires past it with the right labels,
annotations and runbook_url."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from exporter.bundle.guards import guards
from exporter.bundle.known import EXTERNAL_METRICS
from exporter.bundle.profile import Profile
from exporter.bundle.promtests import expected_annotations, promtool_tests
from exporter.bundle.rules import alert_labels, all_alerts, drill, rules_file
from exporter.checks import KINDS
from exporter.families import CHECK_DURATION, CHECK_SUCCESS
from tests.support import require_binary

EXPORTER_METRICS = {
    family.name
    for kind in KINDS.values()
    for family in kind.families
} | {CHECK_SUCCESS.name, CHECK_DURATION.name}


def _promtool() -> str:
    return require_binary("promtool", "prometheus")


def test_every_profile_has_alerts(profiles: list[Profile]) -> None:
    assert [p.slug for p in profiles] == [
        "face-recognition",
        "opsconductor-pulse",
        "rta-cctv",
        "smart-city",
        "surveillance-tracker",
    ]
    for profile in profiles:
        assert len(profile.alerts) >= 5, profile.slug
        names = [a.name for a in profile.alerts]
        assert all(n.startswith(profile.prefix) for n in names)
        assert len(set(names)) == len(names)


def test_promtool_check_rules(bundle: Path, profiles: list[Profile]) -> None:
    """The fresh rules; the committed ones equal them (test_generate), so they pass too."""
    promtool = _promtool()
    files = sorted((bundle / "rules").glob("*.rules.yml"))
    assert len(files) == len(profiles) + 1  # and the static runbook-exporter.rules.yml
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, files)], capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for profile in profiles:
        # each alert plus its threshold recording rule, and the missing-data guards
        expected = 2 * len(profile.alerts) + len(guards(profile))
        assert f"SUCCESS: {expected} rules found" in result.stdout


def test_promtool_unit_tests_cover_every_alert(
    bundle: Path, profiles: list[Profile], tmp_path: Path
) -> None:
    promtool = _promtool()
    for profile in profiles:
        rules = bundle / "rules" / f"{profile.slug}.rules.yml"
        tests = tmp_path / f"{profile.slug}.test.yml"
        tests.write_text(promtool_tests(profile, str(rules)), encoding="utf-8")
        data = yaml.safe_load(tests.read_text())
        tested = {
            check["alertname"]
            for case in data["tests"]
            for check in case["alert_rule_test"]
            if check["exp_alerts"]
        }
        assert tested == {a.name for a in all_alerts(profile)}
        result = subprocess.run(
            [promtool, "test", "rules", str(tests)], capture_output=True, text=True,
            check=False,
        )
        assert result.returncode == 0, f"{profile.slug}:\n{result.stdout}{result.stderr}"


def test_unit_tests_fail_when_a_threshold_drifts(
    bundle: Path, profiles: list[Profile], tmp_path: Path
) -> None:
    """The unit tests are not vacuous: a rule whose threshold moved breaks them."""
    promtool = _promtool()
    profile = profiles[0]
    tests = tmp_path / "tests.yml"
    moved = tmp_path / "moved.rules.yml"
    alert = next(a for a in profile.alerts if a.op == ">" and a.threshold > 0)
    text = rules_file(profile).replace(alert.expr(), alert.expr(alert.threshold * 2))
    assert text != rules_file(profile)
    moved.write_text(text)
    # Only the moved alert's tests: the others pass (test above) and would only cost time.
    tests.write_text(promtool_tests(replace(profile, alerts=(alert,)), str(moved)))
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"{alert.name}: fires past" in result.stdout + result.stderr


def test_drill_scales_windows_not_values(profiles: list[Profile]) -> None:
    """The drilled rules themselves pass promtool in test_drill_generation_goes_elsewhere
    (the same factor, every profile)."""
    for profile in profiles:
        drilled = drill(profile, 0.1)
        for before, after in zip(profile.alerts, drilled.alerts, strict=True):
            assert after.for_ == pytest.approx(before.for_ * 0.1)
            if before.window_threshold:
                assert after.threshold == pytest.approx(before.threshold * 0.1)
            else:
                assert after.threshold == before.threshold
        assert drilled.evaluation_interval == pytest.approx(profile.evaluation_interval * 0.1)


def _selectors(node: object) -> list[promql_parser.VectorSelector]:
    if isinstance(node, promql_parser.VectorSelector):
        return [node]
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    children: list[object] = []
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            children.append(child)
    children.extend(getattr(node, "args", None) or [])
    return [s for child in children for s in _selectors(child)]


def metric_names(query: str) -> set[str]:
    return {s.name for s in _selectors(promql_parser.parse(query)) if s.name}


def test_rules_use_only_declared_metrics(profiles: list[Profile]) -> None:
    """Every metric an alert reads is declared by a check kind of this exporter (its
    Kind.families or exporter/families.py) or is a standard metric of the exporter the
    profile names; a renamed family breaks this test, not production alerts."""
    for profile in profiles:
        for alert in profile.alerts:
            names = metric_names(alert.expr())
            assert names, alert.name
            if alert.exporter == "runbook-exporter":
                unknown = names - EXPORTER_METRICS
            else:
                job = next(e for e in profile.exporters if e.job == alert.exporter)
                unknown = names - EXTERNAL_METRICS[job.source]
            assert not unknown, f"{alert.name} reads undeclared metrics {sorted(unknown)}"



def test_isolation_tests_fail_without_the_system_matcher(
    profiles: list[Profile], tmp_path: Path
) -> None:
    """The generated isolation tests are not vacuous: rules that do not select their
    system fire on another system's fault, and promtool says so."""
    promtool = _promtool()
    profile = next(p for p in profiles if p.slug == "smart-city")
    alert = profile.alert("RedisDown")
    label = f'system="{profile.system}"'
    text = rules_file(profile).replace("{" + label + "}", "").replace("," + label, "")
    assert label not in text
    moved = tmp_path / "unscoped.rules.yml"
    moved.write_text(text)
    tests = tmp_path / "tests.yml"
    tests.write_text(promtool_tests(replace(profile, alerts=(alert,)), str(moved)))
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"{alert.name}: quiet while only another system" in result.stdout + result.stderr


def test_two_systems_in_one_prometheus_page_only_the_faulty_one(
    profiles: list[Profile], bundle: Path, tmp_path: Path
) -> None:
    """All five rule files in one Prometheus. smart-city's Redis is down and its exporter
    is not scraped; surveillance-tracker has a check of the same name ("redis") that is
    fine, and every other system's exporter is up. Only smart-city pages, once per fault."""
    promtool = _promtool()
    by_slug = {p.slug: p for p in profiles}
    smart, tracker = by_slug["smart-city"], by_slug["surveillance-tracker"]
    series = [
        {"series": f'up{{job="runbook-exporter",instance="exporter:9711",system="{p.system}"}}',
         "values": f"{0 if p is smart else 1}x60"}
        for p in profiles
    ] + [
        {"series": 'runbook_exporter_check_success{check="redis",kind="redis",'
                   f'system="{p.system}"}}',
         "values": f"{0 if p is smart else 1}x60"}
        for p in (smart, tracker)
    ]

    def page(profile: Profile, short: str, **extra: str) -> dict[str, Any]:
        alert = profile.alert(short)
        labels = {**extra, "system": profile.system, **alert_labels(profile, alert)}
        return {"exp_labels": labels,
                "exp_annotations": expected_annotations(profile, alert, labels)}

    checks = [
        {"eval_time": "30m", "alertname": smart.alert("RedisDown").name,
         "exp_alerts": [page(smart, "RedisDown", check="redis", kind="redis")]},
        {"eval_time": "30m", "alertname": tracker.alert("RedisDown").name, "exp_alerts": []},
    ] + [
        {"eval_time": "30m", "alertname": p.alert("ExporterDown").name,
         "exp_alerts": [page(p, "ExporterDown", job="runbook-exporter",
                             instance="exporter:9711")] if p is smart else []}
        for p in profiles
    ]
    suite = {
        "rule_files": sorted(str(f) for f in (bundle / "rules").glob("*.rules.yml")),
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    path = tmp_path / "two-systems.yml"
    path.write_text(yaml.safe_dump(suite))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_label_ties_a_down_job_to_its_health_check(
    profiles: list[Profile], bundle: Path, tmp_path: Path
) -> None:
    """The `service` label the inhibitions require equal (docs/bundle.md): face-recognition's
    job face-recognition-service and its health check face-recognition both carry
    service="face-recognition" (label_replace in each query), as promtool evaluates them."""
    promtool = _promtool()
    profile = next(p for p in profiles if p.slug == "face-recognition")
    system = f'system="{profile.system}"'
    series = [
        {"series": f'up{{job="face-recognition-service",instance="fr:8000",{system}}}',
         "values": "0x20"},
        {"series": f'http_probe_up{{check="face-recognition",instance="exporter:9711",'
                   f'job="runbook-exporter",{system}}}', "values": "0x20"},
        {"series": f'runbook_exporter_check_success{{check="face-recognition",kind="http",'
                   f'instance="exporter:9711",job="runbook-exporter",{system}}}',
         "values": "1x20"},
    ]
    checks = []
    for short, labels in (
        ("ServiceDown", {"job": "face-recognition-service", "instance": "fr:8000"}),
        ("HealthCheckFailed", {"check": "face-recognition", "instance": "exporter:9711",
                               "job": "runbook-exporter"}),
    ):
        alert = profile.alert(short)
        exp = {**labels, "service": "face-recognition", "system": profile.system,
               **alert_labels(profile, alert)}
        checks.append({"eval_time": "15m", "alertname": alert.name,
                       "exp_alerts": [{"exp_labels": exp, "exp_annotations":
                                       expected_annotations(profile, alert, exp)}]})
    suite = {
        "rule_files": [str(bundle / "rules" / "face-recognition.rules.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    path = tmp_path / "service.yml"
    path.write_text(yaml.safe_dump(suite))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
