"""The bundle of any exporter config (``bundle generate --config``): every kind's default
alerts with the config's own check names, each pinned by promtool tests (quiet at the
threshold, silent one evaluation before ``for``, firing at ``for``) and each with its
missing-data case; the tests fail when a threshold or ``for`` moves; amtool routes the
result; bad input is a list of ``path: message``.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.alerting import kind_alerts
from exporter.bundle import promtests
from exporter.bundle.cli import main as bundle_main
from exporter.bundle.defaults import ConfigBundle, bundle_files, config_bundle, selector
from exporter.bundle.mutations import MATCHER_DROPPED, profile_mutations, survivors
from exporter.bundle.promtests import OTHER_SYSTEM, is_isolation, promtool_in_parallel
from exporter.bundle.rules import all_alerts
from exporter.checks import KINDS
from exporter.config import load_data
from exporter.fields import ConfigError
from tests.support import require_binary

from .promtool_split import write_split

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my-system.yml"
EXAMPLE_BUNDLE = ROOT / "examples" / "my-system"

# One check of every kind, named as a user might; thresholds set and switched off next
# to the checks, as the README shows.
CONFIG: dict[str, Any] = {
    "checks": [
        {
            "name": "api-health",
            "kind": "http",
            "url": "http://127.0.0.1:9/health",
            "alerts": {"value": {"above": 5000}, "value_drop": {"below": 0.9}},
        },
        {"name": "mqtt_port", "kind": "tcp", "address": "127.0.0.1:1883"},
        {
            "name": "orders.db",
            "kind": "postgres",
            "dsn": "postgresql://m@127.0.0.1/app",
            "queries": [{"name": "pending", "type": "value", "sql": "SELECT 1 AS n"}],
            "alerts": {"query_value": {"above": 250}, "pool_near_max": {"above": 0.75}},
        },
        {
            "name": "nightly-backup",
            "kind": "file",
            "glob": "/var/backups/*.gz",
            "alerts": {
                "stale": {"above": "25h", "for": "15m", "severity": "critical"},
                "retention": {"above": "31d"},
            },
        },
        {"name": "data", "kind": "disk", "path": "/"},
        {
            "name": "ingest",
            "kind": "bullmq",
            "url": "redis://127.0.0.1:6379/0",
            "alerts": {
                "failed_jobs": {"above": 3, "for": "15m"},
                "oldest_waiting_age": {"above": "10m"},
                "paused": False,
            },
        },
        {
            "name": "cache",
            "kind": "redis",
            "url": "redis://127.0.0.1:6379/1",
            "alerts": {
                "evictions": {"above": 10},
                "aof_fsync_delayed": True,
                "aof_not_rewritten": {"above": 2.5},
            },
        },
        {
            "name": "engine",
            "kind": "sqlite",
            "path": "/var/lib/engine.sqlite",
            "alerts": {"query_value": {"above": 1000}},
        },
        {"name": "pool", "kind": "pgbouncer", "dsn": "postgresql://s@127.0.0.1:6432/pgbouncer"},
        {"name": "faces", "kind": "mongodb", "url": "mongodb://127.0.0.1:27017/faces"},
    ]
}


def _bundle(system: str = "") -> ConfigBundle:
    config = load_data(CONFIG, "my.yml", {})
    return config_bundle(config, system or "my", system=system)


def _write(files: dict[str, str], root: Path) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool", "prometheus"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_a_threshold_on_the_wrong_side_is_refused() -> None:
    engine = {**CONFIG["checks"][7], "alerts": {"query_value": {"below": 1}}}
    with pytest.raises(ConfigError) as caught:
        load_data({"checks": [*CONFIG["checks"][:7], engine]}, "my.yml", {})
    assert caught.value.problems == [
        "checks[7].alerts.query_value.below: this alert compares with >: write above: instead",
    ]


@pytest.mark.parametrize("system", ["", "smart-city"])
def test_generated_alerts_pass_their_promtool_tests(tmp_path: Path, system: str) -> None:
    bundle = _bundle(system)
    files = bundle_files(bundle)
    _write(files, tmp_path)
    slug = bundle.profile.slug
    checked = _promtool("check", "rules", f"rules/{slug}.rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if system:  # without one, the example bundle's tests run (tests/test_readme.py)
        # Each test with the rules that can change its outcome (tests/bundle/
        # promtool_split.py: the same verdicts; the whole file takes ~65 CPU-seconds),
        # the parts side by side, one promtool per CPU.
        parts = write_split(tmp_path / "rules" / "tests" / f"{slug}.test.yml", tmp_path)
        tests = [t for part in parts[:-1] for t in yaml.safe_load(part.read_text())["tests"]]
        assert len(tests) == len(yaml.safe_load(files[f"rules/tests/{slug}.test.yml"])["tests"])
        failed, out, err = promtool_in_parallel(
            require_binary("promtool", "prometheus"), [Path(p.name) for p in parts], cwd=tmp_path
        )
        assert not failed, out + err
        assert out.count("SUCCESS") == len(parts)
    rules = yaml.safe_load(files[f"rules/{slug}.rules.yml"])["groups"][0]["rules"]
    for rule in rules:  # every selector names the check (and the system when given)
        for check in re.findall(r'check="([^"]*)"', rule["expr"]):
            assert check in {c["name"] for c in CONFIG["checks"]}
        if system:
            assert f'system="{system}"' in rule["expr"], rule["alert"]


def test_every_kind_default_is_generated_with_firing_and_missing_data_tests() -> None:
    bundle = _bundle()
    tests = yaml.safe_load(bundle_files(bundle)["rules/tests/my.test.yml"])["tests"]
    names = [t["name"] for t in tests]
    alerts = {g.alert.name: g for g in bundle.generated}
    expected: list[str] = []
    for spec in bundle.config.checks:
        settings = {s.key: s for s in spec.alerts}
        for default in kind_alerts(KINDS[spec.kind].alerts):
            setting = settings.get(default.key)
            off = setting is not None and not setting.enabled
            unset = setting is None and (default.threshold is None or not default.on)
            if off or unset:
                assert not any(g.default is default and g.check is spec for g in bundle.generated)
                continue
            name = next(
                g.alert.name
                for g in bundle.generated
                if g.check is spec
                and g.default is not None
                and g.default.key == default.key
                and g.role == "default"
            )
            expected.append(name)
            assert any(n.startswith(f"{name}: fires past") for n in names), name
            assert any(n.startswith(f"{name}: quiet") for n in names), name
            # missing data: the check failing pages through its failing alert, and a
            # vanished series through a guard naming this alert
            if default.key != "check_failing":
                assert any(
                    name in g.guards
                    for g in bundle.generated
                    if g.role == "missing" and g.check is spec
                ), name
        absent = f"{next(g for g in bundle.generated if g.check is spec).alert.name}"
        assert absent in alerts
    assert any(n.endswith("the exporter runs without the check") for n in names)
    # a failing query pages as itself: its missing values and freshness raise no guard
    for guard in ("OrdersDbQueryValueNoData", "OrdersDbStaleNoData", "FacesStaleNoData"):
        assert any(n.startswith(f"{guard}: quiet while db_query_success") for n in names)
    assert "IngestPaused" not in alerts  # switched off in the config
    assert alerts["OrdersDbQueryValue"].alert.threshold == 250
    assert alerts["NightlyBackupStale"].alert.severity == "critical"
    assert alerts["NightlyBackupStale"].alert.for_ == 900
    assert len(expected) >= 30, expected


def _only(tests: dict[str, Any], alertname: str) -> dict[str, Any]:
    """The tests that evaluate ``alertname``, with only its checks (a copy)."""
    tests = copy.deepcopy(tests)
    kept = [
        t for t in tests["tests"] if any(c["alertname"] == alertname for c in t["alert_rule_test"])
    ]
    for test in kept:
        test["alert_rule_test"] = [
            c for c in test["alert_rule_test"] if c["alertname"] == alertname
        ]
    return {**tests, "tests": kept}


def _mutations(rule: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The rule with its threshold 5 % toward the quiet side, and its `for` one
    evaluation longer."""
    out = []
    match = re.fullmatch(r"(.*) (>|<|>=|<=) ([0-9.e+-]+)", rule["expr"], re.S)
    if match and float(match[3]) != 0:
        value = float(match[3]) * (1.05 if match[2].startswith(">") else 0.95)
        out.append(("threshold", {**rule, "expr": f"{match[1]} {match[2]} {value!r}"}))
    if "for" in rule:
        seconds = {"m": 60, "h": 3600}
        parts = re.findall(r"(\d+)([mh])", rule["for"])
        total = sum(int(n) * seconds[u] for n, u in parts) + 60
        out.append(("for", {**rule, "for": f"{total}s"}))
    return out


def test_tests_fail_when_a_threshold_or_for_moves(tmp_path: Path) -> None:
    bundle = _bundle()
    files = bundle_files(bundle)
    rules = yaml.safe_load(files["rules/my.rules.yml"])
    tests = yaml.safe_load(files["rules/tests/my.test.yml"])
    mutated = survived = 0
    for index, rule in enumerate(rules["groups"][0]["rules"]):
        for what, changed in _mutations(rule):
            group = {**rules["groups"][0], "rules": [changed]}
            (tmp_path / "m.rules.yml").write_text(yaml.safe_dump({"groups": [group]}))
            only = _only(tests, rule["alert"])
            only["rule_files"] = ["m.rules.yml"]
            (tmp_path / "m.test.yml").write_text(yaml.safe_dump(only))
            result = _promtool("test", "rules", "m.test.yml", cwd=tmp_path)
            mutated += 1
            if result.returncode == 0:
                survived += 1
                print(f"survived: {rule['alert']} {what} (rule {index})")
    print(f"{mutated} mutations of {len(rules['groups'][0]['rules'])} alerts, {survived} survived")
    assert mutated >= 60
    assert survived == 0


@pytest.mark.parametrize("system", ["", "smart-city"])
def test_each_dropped_matcher_fails_the_isolation_tests_alone(tmp_path: Path, system: str) -> None:
    """Every label matcher of every generated alert, dropped, fails the alert's
    isolation tests without its quiet and firing tests (the mutants carry only those;
    a missing-data guard's carry all of its tests). bullmq NoWorkers'
    state=~"waiting|prioritized" passed: the quiet bullmq_queue_workers 1 beside the
    relabelled jobs kept it silent whatever the state."""
    profile = _bundle(system).profile
    mutants = [m for m in profile_mutations(profile) if m.kind == MATCHER_DROPPED]
    guards = set(profile.guard_names)
    assert all(all(is_isolation(t) for t in m.tests) for m in mutants if m.alert not in guards)
    assert len(mutants) > 50
    survived = survivors(require_binary("promtool", "prometheus"), mutants, tmp_path)
    assert [(m.alert, m.what) for m in survived] == []


def test_no_test_feeds_a_series_twice_when_the_system_is_the_decoys() -> None:
    """--system another-system (the isolation tests' other system): the system's
    isolation test feeds another value, not each firing series next to its quiet twin
    (promtool takes the last, and the test passes whatever the rule)."""
    profile = _bundle(OTHER_SYSTEM).profile
    for alert in all_alerts(profile):
        for test in promtests.tests_of(profile, alert):
            series = [each["series"] for each in test["input_series"]]
            assert len(series) == len(set(series)), test["name"]


def test_amtool_routes_generated_alerts_by_severity(tmp_path: Path) -> None:
    files = bundle_files(_bundle())
    _write(files, tmp_path)
    amtool = require_binary("amtool", "prometheus-alertmanager")
    config = str(tmp_path / "alertmanager" / "alertmanager.yml")
    checked = subprocess.run(
        [amtool, "check-config", config], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def route(*labels: str) -> str:
        return subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert route("alertname=CacheDown", "runbook=my", "severity=critical") == "my-critical"
    assert route("alertname=DataDiskFull", "runbook=my", "severity=warning") == "my-warning"
    assert route("alertname=Watchdog", "severity=none") == "deadmansswitch"
    # the static rules' alerts reach this bundle's receivers
    assert (
        route("alertname=RunbookExporterDown", "runbook=runbook-exporter", "severity=critical")
        == "my-critical"
    )
    assert (
        route(
            "alertname=RunbookExporterCheckFailing", "runbook=runbook-exporter", "severity=warning"
        )
        == "my-warning"
    )
    alertmanager = yaml.safe_load(files["alertmanager/alertmanager.yml"])
    receivers = {r["name"]: r for r in alertmanager["receivers"]}
    assert "pagerduty_configs" in receivers["my-critical"]


def test_selector_names_check_and_system() -> None:
    spec = load_data(CONFIG, "my.yml", {}).checks[0]
    assert selector(spec, "") == 'check="api-health"'
    assert selector(spec, "s1") == 'check="api-health",system="s1"'


def test_bad_config_is_a_list_of_paths_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "checks:\n"
        "  - name: q\n    kind: bullmq\n    url: redis://127.0.0.1:6379/0\n"
        "    alerts:\n      failed_jobs: {above: lots, for: soon, severity: urgent}\n"
        "      backlog: maybe\n      typo: {above: 1}\n"
        "  - name: d\n    kind: disk\n"
    )
    assert (
        bundle_main(["bundle", "generate", "--config", str(bad), "--output", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f'{bad}: checks[0].alerts.failed_jobs.above: expected a number, got "lots"',
        f'{bad}: checks[0].alerts.failed_jobs.for: expected a duration such as 5s, got "soon"',
        f"{bad}: checks[0].alerts.failed_jobs.severity: expected one of critical, warning, "
        'info, got "urgent"',
        f"{bad}: checks[0].alerts.backlog: expected true, false or a mapping with "
        "above/below/equal, for, severity, name, enabled, or a list of them each naming "
        'its queue, got "maybe"',
        f"{bad}: checks[0].alerts.typo: unknown alert (this kind has: check_failing, "
        "failed_jobs, backlog, oldest_waiting_age, paused, no_workers, stalled, "
        "schedulers_overdue, missing_queue)",
        f"{bad}: checks[1].path: required but missing",
    ]
    assert not (tmp_path / "out").exists()


def test_committed_example_equals_a_fresh_generation() -> None:
    assert (
        bundle_main(["bundle", "check", "--config", str(EXAMPLE), "--output", str(EXAMPLE_BUNDLE)])
        == 0
    )


def test_overview_dashboard_covers_every_kind_with_a_check_variable() -> None:
    import json

    import promql_parser

    files = bundle_files(_bundle())
    board = json.loads(files["dashboards/my-overview.json"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "check" in variables
    assert variables["check"]["includeAll"] is True
    panels = [p for p in board["panels"] if p.get("type") == "timeseries"]
    rows = [p["title"] for p in board["panels"] if p.get("type") == "row"]
    assert rows == sorted({c["kind"] for c in CONFIG["checks"]})
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    for expr in exprs:
        promql_parser.parse(expr.replace("$check", ".*"))
        assert "$check" in expr or expr.startswith("runbook_alert_threshold"), expr
    titles = {p["title"] for p in panels}
    for wanted in (
        "Check success (1 = ok)",
        "Queue jobs by state",
        "Freshness age",
        "Connections of max",
        "Disk used",
        "File age",
    ):
        assert wanted in titles
    thresholds = [e for e in exprs if e.startswith("runbook_alert_threshold")]
    rules = yaml.safe_load(files["rules/my.rules.yml"])["groups"][1]["rules"]
    recorded = {r["labels"].get("default") for r in rules}
    for expr in thresholds:  # each threshold target finds recorded thresholds
        default = re.search(r'default="([\w-]+:\w+)"', expr)
        assert default, expr
        assert default[1] in recorded, expr
