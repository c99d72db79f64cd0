"""``runbook-exporter bundle test``: promtool runs the shipped unit tests of a bundle
directory and fails when a rule no longer matches them; ``--mutate`` runs the mutation
test of a profiles directory; a missing promtool is a one-line error, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from exporter.bundle.generate import generate, write
from exporter.bundle.mutations import counts
from exporter.bundle.profile import load_profiles
from tests.support import require_binary

from .conftest import PROFILES, ROOT
from .promtool_split import write_split
from .test_generate import _minimal


def _cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path} if path is not None else None
    return subprocess.run(
        [sys.executable, "-m", "exporter.bundle", "test", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def _copy(bundle: Path, tmp_path: Path, *slugs: str) -> Path:
    """The rules and tests of these profiles (all without any) in a fresh directory."""
    out = tmp_path / "bundle"
    (out / "rules" / "tests").mkdir(parents=True)
    for rules in (bundle / "rules").glob("*.rules.yml"):
        slug = rules.name.removesuffix(".rules.yml")
        if slugs and slug not in slugs:
            continue
        shutil.copy(rules, out / "rules")
        tests = bundle / "rules" / "tests" / f"{slug}.test.yml"
        if tests.exists():  # the static rules for any config ship without one
            shutil.copy(tests, out / "rules" / "tests")
    return out


def _rules(path: Path) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def test_runs_every_shipped_test_file(bundle: Path, tmp_path: Path) -> None:
    """Every shipped test passes with the shipped rules, run by ``bundle test``: each file
    split so that a test evaluates only the rules that can change its outcome (the same
    verdict, tests/bundle/promtool_split.py; whole, the five files take promtool ~95
    CPU-seconds). The CLI on a whole file: test_a_moved_threshold_fails, test_readme."""
    promtool = require_binary("promtool", "prometheus")
    shipped = sorted((bundle / "rules" / "tests").glob("*.test.yml"))
    out = tmp_path / "bundle"
    (out / "rules" / "tests").mkdir(parents=True)
    parts = []
    for file in shipped:  # every test in one part, with rules of the shipped file only
        mine = write_split(file, out / "rules" / "tests")
        parts += mine
        suite = yaml.safe_load(file.read_text())
        every = _rules(file.parent / suite["rule_files"][0])
        tests = []
        for part in mine[:-1]:
            data = yaml.safe_load(part.read_text())
            tests += data["tests"]
            assert all(r in every for r in _rules(part.parent / data["rule_files"][0]))
        assert sorted(map(yaml.safe_dump, tests)) == sorted(map(yaml.safe_dump, suite["tests"]))
        last = yaml.safe_load(mine[-1].read_text())  # every rule, without input series
        assert _rules(mine[-1].parent / last["rule_files"][0]) == every
    result = _cli("--output", str(out), "--promtool", promtool)
    assert result.returncode == 0, result.stdout + result.stderr
    for part in parts:
        assert f"rules/tests/{part.name}" in result.stdout
    assert "FAILED" not in result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(parts)


def test_a_moved_threshold_fails(bundle: Path, tmp_path: Path) -> None:
    """An operator edits a threshold in the rule file by hand: 90 % becomes 95 %."""
    promtool = require_binary("promtool", "prometheus")
    out = _copy(bundle, tmp_path, "smart-city")
    rules = out / "rules" / "smart-city.rules.yml"
    text = rules.read_text()
    smart_city = next(p for p in load_profiles(PROFILES) if p.slug == "smart-city")
    alert = smart_city.alert("DiskFilling")
    edited = text.replace(alert.expr(), alert.expr(0.95))
    assert edited != text
    rules.write_text(edited)
    # Only that alert's tests (all of them pass in the test above), with the whole rule file.
    shipped = out / "rules" / "tests" / "smart-city.test.yml"
    suite = yaml.safe_load(shipped.read_text())
    suite["tests"] = [t for t in suite["tests"] if t["name"].startswith(f"{alert.name}: ")]
    assert len(suite["tests"]) == 4  # quiet, firing, isolation (another system, check)
    shipped.write_text(yaml.safe_dump(suite))
    result = _cli("--output", str(out), "--promtool", promtool)
    assert result.returncode == 1
    assert "SmartCityDiskFilling: fires past 90% once for elapses" in result.stdout + result.stderr


def test_missing_promtool_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("--output", str(ROOT), path=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("promtool not found on PATH: it ships with Prometheus")
    assert "Traceback" not in result.stderr
    result = _cli("--promtool", str(tmp_path / "promtool"))
    assert result.returncode == 2
    assert f"promtool not found at {tmp_path / 'promtool'}" in result.stderr


def test_no_tests_is_a_clear_error(tmp_path: Path) -> None:
    require_binary("promtool", "prometheus")
    result = _cli("--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        f"{tmp_path}/rules/tests: no *.test.yml (run `runbook-exporter bundle generate` first)\n"
    )


def test_mutate_reports_the_mutants_of_a_profile(bundle: Path, tmp_path: Path) -> None:
    """The CLI runs the shipped tests, then the mutants of --profiles, and says how many
    (a small profile: the five profiles' mutants run once, in tests/bundle/test_rules.py)."""
    promtool = require_binary("promtool", "prometheus")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    data = _minimal()
    data["bundle"]["alerts"] = []  # type: ignore[index]  # its hand alert is a loading fixture
    (profiles / "t.yml").write_text(yaml.safe_dump(data))
    out = tmp_path / "bundle"
    write(generate(load_profiles(profiles)), out)
    result = _cli(
        "--output", str(out), "--promtool", promtool, "--mutate", "--profiles", str(profiles)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    profile = load_profiles(profiles)[0]
    alerts, guarded = counts([profile])
    assert not any(a.op == "!=" for a in profile.alerts)  # so four mutants each
    # and one per label matcher: system="t" and check="..." in each alert's selector,
    # the Absent guard's check, system and job="runbook-exporter"
    assert guarded == 1
    matchers = 2 * alerts + 3
    assert result.stdout.splitlines()[-1] == (
        f"{4 * alerts + guarded + matchers} mutants of {alerts} alerts and {guarded} "
        "missing-data guards: 0 survived"
    )
