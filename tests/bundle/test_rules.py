"""Prometheus rules: promtool accepts every file, and the shipped promtool unit tests
(rules/tests/) prove each alert stays silent just short of its threshold and fires just
past it, exactly when its ``for`` has elapsed, with the right labels, annotations and
runbook_url; the mutation test proves those tests fail when a threshold or ``for``
moves."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from exporter.bundle.defaults import SOURCE
from exporter.bundle.guards import guards
from exporter.bundle.known import EXTERNAL_METRICS
from exporter.bundle.mutations import (
    FOR_LONGER,
    MATCHER_DROPPED,
    THRESHOLD_MOVES,
    counts,
    mutations,
    survivors,
)
from exporter.bundle.profile import Profile
from exporter.bundle.promtests import (
    expected_annotations,
    is_isolation,
    longest_range,
    promtool_tests,
)
from exporter.bundle.promtests import tests_of as alert_tests_of  # a test_* name would be collected
from exporter.bundle.rules import alert_labels, all_alerts, drill, rules_file
from exporter.checks import KINDS
from exporter.families import CHECK_DURATION, CHECK_SUCCESS
from tests.bundle.promtool_split import walk
from tests.support import promtool_test, require_binary

EXPORTER_METRICS = {family.name for kind in KINDS.values() for family in kind.families} | {
    CHECK_SUCCESS.name,
    CHECK_DURATION.name,
}


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
        [promtool, "check", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for profile in profiles:
        # each alert plus its threshold recording rule, and the missing-data guards
        expected = 2 * len(profile.alerts) + len(guards(profile))
        assert f"SUCCESS: {expected} rules found" in result.stdout


def test_shipped_promtool_tests_cover_every_alert(bundle: Path, profiles: list[Profile]) -> None:
    """rules/tests/<runbook>.test.yml test every alert of their profile. That they pass is
    shown by running them with `bundle test` (tests/bundle/test_bundle_test.py), once."""
    files = sorted((bundle / "rules" / "tests").glob("*.test.yml"))
    assert [f.name for f in files] == [f"{p.slug}.test.yml" for p in profiles]
    for profile, tests in zip(profiles, files, strict=True):
        data = yaml.safe_load(tests.read_text())
        assert data["rule_files"] == [f"../{profile.slug}.rules.yml"]
        tested = {
            check["alertname"]
            for case in data["tests"]
            for check in case["alert_rule_test"]
            if check["exp_alerts"]
        }
        assert tested == {a.name for a in all_alerts(profile)}


def test_every_mutant_of_every_alert_fails_its_tests(
    profiles: list[Profile], tmp_path: Path
) -> None:
    """For every alert: its threshold 5 % (and 1 %) toward the quiet side, 1 % toward the
    firing side, its `for` one evaluation longer and each of its label matchers dropped
    fail its promtool tests. One promtool call for all mutants; the counts and the time
    are printed (pytest -rA)."""
    mutants = mutations(profiles)
    alerts, guarded = counts(profiles)
    kinds = {kind: sum(m.kind == kind for m in mutants) for kind, *_ in THRESHOLD_MOVES}
    kinds[FOR_LONGER] = sum(m.kind == FOR_LONGER for m in mutants)
    kinds[MATCHER_DROPPED] = sum(m.kind == MATCHER_DROPPED for m in mutants)
    # Every alert gets every mutant but the firing-side move of a `!=` alert; every
    # missing-data guard the `for` mutant.
    unequal = sum(a.op == "!=" for p in profiles for a in p.alerts if a.guarded is None)
    assert kinds["threshold 5% toward quiet"] == alerts
    assert kinds[FOR_LONGER] == alerts + guarded
    assert kinds["threshold 1% toward firing"] == alerts - unequal
    assert kinds[MATCHER_DROPPED] > alerts  # every alert's system="..." and more
    started = time.monotonic()
    survived = survivors(_promtool(), mutants, tmp_path)
    seconds = time.monotonic() - started
    summary = (
        f"{len(mutants)} mutants of {alerts} alerts and {guarded} missing-data guards in "
        f"{len(profiles)} profiles "
        f"({', '.join(f'{n} {k}' for k, n in kinds.items())}): {len(survived)} survived, "
        f"promtool {seconds:.1f} s"
    )
    print(summary)
    assert not survived, summary + "".join(f"\n  {m.alert}: {m.kind} ({m.what})" for m in survived)


def test_a_loose_test_lets_its_mutant_survive(profiles: list[Profile], tmp_path: Path) -> None:
    """The mutation test can fail: quiet inputs at half the threshold do not notice a
    threshold moved 5 % toward them."""
    profile = next(p for p in profiles if p.slug == "smart-city")
    alert = profile.alert("DiskFilling")
    size, avail = alert.test.series  # the disk kind's inputs: size 1000, avail below it
    loose = replace(alert.test, series=(size, replace(avail, quiet="1000 - threshold * 500")))
    item = next(g for g in profile.generated if g.alert.name == alert.name)
    loose_alert = replace(alert, test=loose)
    loosened = replace(
        profile, alerts=(loose_alert,), generated=(replace(item, alert=loose_alert),)
    )
    mutants = [m for m in mutations([loosened]) if m.kind != "threshold 1% toward firing"]
    survived = survivors(_promtool(), mutants, tmp_path)
    assert [(m.alert, m.kind) for m in survived] == [
        (alert.name, "threshold 5% toward quiet"),
        (alert.name, "threshold 1% toward quiet"),
    ]


def test_without_isolation_tests_dropped_matchers_survive(
    profiles: list[Profile], tmp_path: Path
) -> None:
    """The matcher mutants run against the isolation tests (promtests.decoy_tests), and
    need them: SmartCityQueueBacklog's quiet and firing tests pass with any of its
    matchers gone, and each of its isolation tests fails the mutant of its own label."""
    profile = next(p for p in profiles if p.slug == "smart-city")
    mutants = [
        m
        for m in mutations([profile])
        if m.alert == "SmartCityQueueBacklog" and m.kind == MATCHER_DROPPED
    ]
    assert [m.what for m in mutants] == [
        'check="queues"',
        'system="smart-city"',
        'state="waiting"',
    ]
    every = alert_tests_of(profile, profile.alert("QueueBacklog"))
    isolation = [t["name"] for t in every if is_isolation(t)]
    assert (
        isolation
        == [t["name"] for t in mutants[0].tests]
        == [
            "SmartCityQueueBacklog: quiet while only another system is past 1000",
            'SmartCityQueueBacklog: quiet while only check="decoy" is past 1000',
            'SmartCityQueueBacklog: quiet while only state="decoy" is past 1000',
        ]
    )
    others = [t for t in every if not is_isolation(t)]
    assert [t["name"] for t in others] == [
        "SmartCityQueueBacklog: quiet just short of 1000",
        "SmartCityQueueBacklog: fires past 1000 once for elapses",
    ]
    bare = [replace(m, tests=others) for m in mutants]
    assert survivors(_promtool(), bare, tmp_path) == bare
    by_label = dict(zip(["system", "check", "state"], isolation, strict=True))
    for mutant in mutants:
        test = by_label[mutant.what.split("=")[0]]
        alone = replace(mutant, tests=[t for t in mutant.tests if t["name"] == test])
        assert survivors(_promtool(), [alone], tmp_path) == [], test


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
    return [n for n in walk(node) if isinstance(n, promql_parser.VectorSelector)]


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
            if alert.exporter == SOURCE:  # the kinds' defaults; Absent reads Prometheus' up
                unknown = names - EXPORTER_METRICS - EXTERNAL_METRICS["prometheus"]
            elif alert.exporter == "runbook-exporter":
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
        {
            "series": f'up{{job="runbook-exporter",instance="exporter:9711",system="{p.system}"}}',
            "values": f"{0 if p is smart else 1}x60",
        }
        for p in profiles
    ] + [
        {
            "series": 'runbook_exporter_check_success{check="redis",kind="redis",'
            f'system="{p.system}"}}',
            "values": f"{0 if p is smart else 1}x60",
        }
        for p in (smart, tracker)
    ]

    def page(profile: Profile, short: str, **extra: str) -> dict[str, Any]:
        alert = profile.alert(short)
        labels = {**extra, "system": profile.system, **alert_labels(profile, alert)}
        return {
            "exp_labels": labels,
            "exp_annotations": expected_annotations(profile, alert, labels),
        }

    checks = [
        {
            "eval_time": "30m",
            "alertname": smart.alert("RedisDown").name,
            "exp_alerts": [page(smart, "RedisDown", check="redis", kind="redis")],
        },
        {"eval_time": "30m", "alertname": tracker.alert("RedisDown").name, "exp_alerts": []},
    ] + [
        {
            "eval_time": "30m",
            "alertname": p.alert("ExporterDown").name,
            "exp_alerts": [
                page(p, "ExporterDown", job="runbook-exporter", instance="exporter:9711")
            ]
            if p is smart
            else [],
        }
        for p in profiles
    ]
    result = promtool_test(
        promtool,
        tmp_path / "two-systems.yml",
        sorted(str(f) for f in (bundle / "rules").glob("*.rules.yml")),
        "1m",
        series,
        checks,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_label_ties_a_down_job_to_its_health_check(
    profiles: list[Profile], bundle: Path, tmp_path: Path
) -> None:
    """The label the inhibition requires equal (docs/bundle.md): face-recognition's job
    face-recognition-service (ServiceDown's label_replace) and its health check both carry
    check="face-recognition", as promtool evaluates them."""
    promtool = _promtool()
    profile = next(p for p in profiles if p.slug == "face-recognition")
    system = f'system="{profile.system}"'
    series = [
        {
            "series": f'up{{job="face-recognition-service",instance="fr:8000",{system}}}',
            "values": "0x20",
        },
        {
            "series": f'http_probe_up{{check="face-recognition",instance="exporter:9711",'
            f'job="runbook-exporter",{system}}}',
            "values": "0x20",
        },
        {
            "series": f'runbook_exporter_check_success{{check="face-recognition",kind="http",'
            f'instance="exporter:9711",job="runbook-exporter",{system}}}',
            "values": "1x20",
        },
    ]
    checks = []
    for short, labels in (
        ("ServiceDown", {"job": "face-recognition-service", "instance": "fr:8000"}),
        (
            "FaceServiceHealthCheckNotOk",
            {"instance": "exporter:9711", "job": "runbook-exporter"},
        ),
    ):
        alert = profile.alert(short)
        exp = {
            **labels,
            "check": "face-recognition",
            "system": profile.system,
            **alert_labels(profile, alert),
        }
        checks.append(
            {
                "eval_time": "15m",
                "alertname": alert.name,
                "exp_alerts": [
                    {
                        "exp_labels": exp,
                        "exp_annotations": expected_annotations(profile, alert, exp),
                    }
                ],
            }
        )
    result = promtool_test(
        promtool,
        tmp_path / "service.yml",
        [str(bundle / "rules" / "face-recognition.rules.yml")],
        "1m",
        series,
        checks,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_quiet_tests_wait_as_far_back_as_the_rule_looks(profiles: list[Profile]) -> None:
    """The quiet test is checked again once the longest range plus the longest offset has
    passed: a rule comparing against its own past cannot hide behind a half-filled window."""
    alert = profiles[0].alerts[0]
    for query, seconds in (
        ("x", 0.0),
        ("rate(x[5m])", 300.0),
        ("max_over_time(x[1h]) - x offset 2h", 10800.0),
        ("changes(x[30m:]) + rate(y[5m:1m])", 1800.0),
    ):
        assert longest_range(replace(alert, query=query)) == seconds, query
