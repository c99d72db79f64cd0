"""Generation is deterministic, the committed files equal a fresh generation, and
``bundle check`` names the files that drifted; bad profiles fail with exact paths."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.bundle.generate import generate
from exporter.bundle.profile import Profile, load_profile_data, load_profiles
from exporter.config import load_file
from exporter.fields import ConfigError
from tests.support import require_binary

from .conftest import PROFILES, ROOT


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.bundle", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    assert generated == generate(load_profiles(PROFILES))


def test_committed_files_equal_a_fresh_generation(generated: dict[str, str]) -> None:
    for relative, text in generated.items():
        path = ROOT / relative
        assert path.is_file(), f"{relative} not committed: run `runbook-exporter bundle generate`"
        assert path.read_text(encoding="utf-8") == text, f"{relative} differs"
    result = _cli("check")
    assert result.returncode == 0, result.stderr
    assert "generated files match 5 profiles" in result.stdout


def test_check_names_drifted_files(tmp_path: Path) -> None:
    shutil.copytree(PROFILES, tmp_path / "profiles")
    assert _cli("generate", cwd=tmp_path).returncode == 0
    # No check of the clean tree here: the committed tree's check passes above, and the
    # drift list below names only the three files changed, so the rest match.
    rules = tmp_path / "rules" / "smart-city.rules.yml"
    rules.write_text(rules.read_text().replace("> 0.9", "> 0.95"))
    (tmp_path / "dashboards" / "rta-cctv.json").unlink()
    (tmp_path / "rules" / "old.rules.yml").write_text("groups: []\n")
    result = _cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        "  dashboards/rta-cctv.json",
        "  rules/old.rules.yml",
        "  rules/smart-city.rules.yml",
    ]


def test_drill_generation_goes_elsewhere(tmp_path: Path) -> None:
    result = _cli("generate", "--drill-factor", "0.1", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "rules" / "smart-city.rules.yml").read_text()
    assert "interval: 6s" in text  # 1m evaluation interval x 0.1
    assert "> 6\n" in text or "> 6 " in text  # TelemetryStale: 60s freshness window x 0.1
    assert "!= 536870912" in text  # value thresholds unchanged
    tracker = (tmp_path / "rules" / "surveillance-tracker.rules.yml").read_text()
    # {lookback} 2h x 0.1, threshold kept
    assert 'queue="ingest",system="surveillance-tracker"}[12m]) >= 2' in tracker
    am = (tmp_path / "alertmanager" / "alertmanager.yml").read_text()
    assert "repeat_interval: 1m30s" in am  # P1 15m x 0.1
    checks = [
        [
            require_binary("promtool", "prometheus"),
            "check",
            "rules",
            *map(str, sorted((tmp_path / "rules").glob("*.yml"))),
        ],
        [
            require_binary("amtool", "prometheus-alertmanager"),
            "check-config",
            str(tmp_path / "alertmanager" / "alertmanager.yml"),
        ],
    ]
    for command in checks:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    refused = _cli("generate", "--drill-factor", "0.1")
    assert refused.returncode == 2
    assert "--output" in refused.stderr


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yml")), ids=lambda p: p.stem)
def test_every_profile_is_a_valid_exporter_config(path: Path) -> None:
    config = load_file(path, env={})
    assert config.checks
    assert len({spec.name for spec in config.checks}) == len(config.checks)


BAD = [
    ({"bundle": {"title": "t"}}, "checks: required but missing"),
    ({"prefix": "lower"}, 'bundle.prefix: use CamelCase letters and digits, got "lower"'),
    ({"alerts[0].op": "=>"}, 'bundle.alerts[0].op: expected one of >, >=, <, <=, ==, !=, got "=>"'),
    (
        {"alerts[0].threshold": "soon"},
        'bundle.alerts[0].threshold: expected a number or a duration such as 2h, got "soon"',
    ),
    (
        {"alerts[0].severity": "urgent"},
        'bundle.alerts[0].severity: unknown severity "urgent" '
        "(routing defines: critical, info, warning)",
    ),
    (
        {"alerts[0].query": 'up{check="nope"}'},
        'bundle.alerts[0].query: selects check "nope", which the profile does not define',
    ),
    (
        {"alerts[0].depends_on": [{"alert": "Ghost", "equal": ["instance"]}]},
        'bundle.alerts[0].depends_on[0].alert: unknown alert "Ghost" in this profile',
    ),
    (
        {"alerts[0].depends_on": [{"alert": "WebDown", "equal": ["system"]}]},
        "bundle.alerts[0].depends_on[0].equal: system is always required equal; list the "
        "labels that tie this dependency to one service",
    ),
    (
        {"alerts[0].depends_on": ["WebDown"]},
        'bundle.alerts[0].depends_on[0]: expected a mapping, got "WebDown"',
    ),
    (
        {"alerts[0].name": "ExporterDown"},
        "bundle.alerts[0].name: ExporterDown is generated for every profile; give its "
        "runbook fields under bundle.exporter_down",
    ),
    (
        {"alerts[0].summary": "{{ $value }}"},
        "bundle.alerts[0].summary: the only template allowed is {{ $labels.NAME }}; "
        "write {value} and {threshold} for the numbers",
    ),
    (
        {"alerts[0].test.series[0].gauge.fire": "threshold ** 2"},
        "bundle.alerts[0].test.series[0].gauge.fire: only numbers, names and + - * / are allowed",
    ),
    (
        {"alerts[0].test.series[0].gauge.fire": "limit + 1"},
        "bundle.alerts[0].test.series[0].gauge.fire: unknown name limit (known: threshold)",
    ),
    ({"alerts[0].colour": "red"}, "bundle.alerts[0].colour: unknown key"),
    (
        {"alerts[0].test.series": []},
        "bundle.alerts[0].test.series: needs at least one input series",
    ),
    (
        {"assumptions": "table x"},
        'bundle.assumptions: expected a list of strings, got "table x"',
    ),
    (
        {"routing.severities[0].receivers": ["nobody"]},
        'bundle.routing.severities[0].receivers: unknown receiver "nobody" (known: chat, pager)',
    ),
]


def _minimal() -> dict[str, object]:
    return {
        # The check's own failing alert is renamed so that the hand-written WebDown
        # below (whose fields these tests vary) keeps its name.
        "checks": [
            {
                "name": "web",
                "kind": "tcp",
                "address": "127.0.0.1:80",
                "alerts": {"check_failing": {"name": "WebRefused"}},
            }
        ],
        "bundle": {
            "kind_defaults": "named",
            "title": "T",
            "runbook": "t.md",
            "prefix": "T",
            "routing": {
                "receivers": [
                    {"name": "pager", "type": "pagerduty"},
                    {"name": "chat", "type": "slack", "target": "#c"},
                ],
                "severities": [
                    {
                        "name": "critical",
                        "priority": "P1",
                        "response": "15m",
                        "receivers": ["pager"],
                    },
                    {"name": "warning", "priority": "P2", "response": "1h", "receivers": ["chat"]},
                    {"name": "info", "priority": "P4", "response": "24h", "receivers": ["chat"]},
                ],
            },
            "alerts": [
                {
                    "name": "WebDown",
                    "query": 'runbook_exporter_check_success{check="web"}',
                    "op": "<",
                    "threshold": 1,
                    "for": "1m",
                    "severity": "critical",
                    "unit": "bool",
                    "section": "s",
                    "quote": "q",
                    "summary": "down",
                    "description": "d",
                    "steps": ["restart"],
                    "test": {
                        "series": [
                            {
                                "series": 'runbook_exporter_check_success{check="web"}',
                                "gauge": {"quiet": "threshold", "fire": "0"},
                            }
                        ]
                    },
                }
            ],
        },
    }


def _set(data: dict[str, object], dotted: str, value: object) -> None:
    node: object = data
    parts = dotted.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


def test_minimal_profile_loads() -> None:
    profile = load_profile_data(_minimal(), "<test>", "t")
    names = [a.name for a in profile.alerts]
    assert names == ["TWebRefused", "TWebAbsent", "TWebDown", "TExporterDown"]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_profiles_name_the_path(change: dict[str, object], message: str) -> None:
    data = _minimal()
    for dotted, value in change.items():
        if dotted == "bundle":
            data = {"bundle": value}
        else:
            _set(data, f"bundle.{dotted}", value)
    with pytest.raises(ConfigError) as caught:
        load_profile_data(data, "<test>", "t")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_assumptions_are_listed_on_the_runbook_page() -> None:
    """``bundle.assumptions`` (a profile's guesses about the watched system) appear on its
    runbook page under "## Assumptions", in order; a page without any has no heading."""
    data = _minimal()
    guesses = ["Table `fleet_alert` (guessed)", "Mailbox ops@example.com | a placeholder"]
    _set(data, "bundle.assumptions", guesses)
    page = generate([load_profile_data(data, "<test>", "t")])["docs/runbooks/t.md"]
    listed = page.split("## Assumptions\n", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in listed.splitlines() if line.startswith("- ")]
    assert bullets == [
        "- Table `fleet_alert` (guessed)",
        "- Mailbox ops@example.com \\| a placeholder",
    ]
    plain = generate([load_profile_data(_minimal(), "<test>", "t")])["docs/runbooks/t.md"]
    assert "## Assumptions" not in plain
    for bad, message in (("one text", "expected a list of strings"), ([" "], "empty text")):
        _set(data, "bundle.assumptions", bad)
        with pytest.raises(ConfigError) as caught:
            load_profile_data(data, "<test>", "t")
        assert any(
            p.startswith("bundle.assumptions: ") and message in p for p in caught.value.problems
        ), caught.value.problems


def test_a_prefix_used_twice_names_the_file_where_it_is(tmp_path: Path) -> None:
    shutil.copytree(PROFILES, tmp_path / "elsewhere")
    copy = tmp_path / "elsewhere" / "smart-city.yml"
    copy.write_text(re.sub(r"(?m)^  prefix: .*$", "  prefix: RtaCctv", copy.read_text()))
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path / "elsewhere")
    assert caught.value.problems == [f'{copy}: bundle.prefix: "RtaCctv" already used by rta-cctv']


def test_cli_reports_bad_profiles_without_traceback(tmp_path: Path) -> None:
    shutil.copytree(PROFILES, tmp_path / "profiles")
    broken = tmp_path / "profiles" / "face-recognition.yml"
    broken.write_text(broken.read_text().replace('      op: ">"\n', '      op: "=>"\n', 1))
    result = _cli("generate", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("profiles/face-recognition.yml: bundle.alerts[")
    assert '.op: expected one of >, >=, <, <=, ==, !=, got "=>"' in result.stderr
    assert not (tmp_path / "rules").exists()


def test_a_profile_without_runbook_fields_gets_defaults_and_generates(
    tmp_path: Path,
) -> None:
    """No section, quote, summary, description, steps, panel or exporter_down: the
    bundle is generated with the generator's own texts (the issue's `steps` left out
    crashed with TypeError), and the profile still gets its ExporterDown."""
    data = _minimal()
    alert = data["bundle"]["alerts"][0]  # type: ignore[index]
    for key in ("section", "quote", "summary", "description", "steps"):
        del alert[key]
    profile = load_profile_data(data, "<test>", "t")
    web_down, exporter_down = profile.alert("WebDown"), profile.alert("ExporterDown")
    assert web_down.summary == "TWebDown is below {threshold}"
    assert web_down.steps
    assert "runbook_exporter_check_success" in web_down.steps[0]
    assert exporter_down.name == "TExporterDown"
    assert exporter_down.severity == "critical"
    files = generate([profile])
    rules = yaml.safe_load(files["rules/t.rules.yml"])
    summaries = {
        r["alert"]: r["annotations"]["summary"]
        for g in rules["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert summaries["TWebDown"] == "TWebDown is below 1"
    assert "### TWebDown" in files["docs/runbooks/t.md"]


def test_every_problem_of_a_profile_is_listed_with_its_path() -> None:
    """Wrong fields in several places: one error listing each, never a traceback."""
    data = _minimal()
    _set(data, "bundle.alerts[0].steps", 5)
    _set(data, "bundle.alerts[0].op", None)
    _set(data, "bundle.alerts[0].test", "later")
    _set(data, "bundle.routing.severities[1].response", "soonish")
    _set(data, "bundle.exporter_down", {"severity": "urgent", "colour": "red"})
    with pytest.raises(ConfigError) as caught:
        load_profile_data(data, "<test>", "t")
    problems = caught.value.problems
    for path in (
        "bundle.alerts[0].steps: expected a list of strings",
        "bundle.alerts[0].op: ",
        "bundle.alerts[0].test: expected a mapping",
        "bundle.routing.severities[1].response: ",
        'bundle.exporter_down.severity: unknown severity "urgent"',
        "bundle.exporter_down.colour: unknown key",
    ):
        assert any(p.startswith(path) for p in problems), (path, problems)


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, spaces to -, no
    punctuation but - and _)."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_url_points_at_a_generated_page_and_heading(
    generated: dict[str, str], profiles: list[Profile]
) -> None:
    """Each rule's runbook_url (alerts and guards) is <docs_url>/<page>#<anchor> where
    docs/runbooks/<page> is a generated file with that heading."""
    urls = 0
    for profile in profiles:
        rules = yaml.safe_load(generated[f"rules/{profile.slug}.rules.yml"])
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                url = rule["annotations"]["runbook_url"]
                page, _, fragment = url.removeprefix(profile.docs_url + "/").partition("#")
                text = generated.get(f"docs/runbooks/{page}")
                assert text is not None, url
                anchors = {_github_anchor(h) for h in re.findall(r"(?m)^#+ (.*)$", text)}
                assert fragment in anchors, url
                urls += 1
    assert urls > 90


def test_docs_url_sets_the_base_of_every_link(tmp_path: Path) -> None:
    result = _cli(
        "generate", "--docs-url", "https://runbooks.example/ops/", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    rules = (tmp_path / "rules" / "smart-city.rules.yml").read_text()
    assert "runbook_url: https://runbooks.example/ops/smart-city.md#smartcityapidown" in rules
    assert "github.com" not in rules
    dashboard = (tmp_path / "dashboards" / "smart-city.json").read_text()
    assert "https://runbooks.example/ops/smart-city.md#" in dashboard
