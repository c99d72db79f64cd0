"""The coverage promise: every threshold, cadence, severity, window and channel a runbook
writes down is traced to an alert, a route and a panel, or said to be unmonitorable.

The runbooks are the only input read from outside the repository: from ``$RUNBOOKS_DIR``,
default ``../shared/runbooks`` beside it (CI clones the repository with shared/ next to it).
Without them the quote tests skip locally and fail in CI (``tests.support.unavailable``); the
rest of the suite needs nothing outside the clone. The table tested is the committed
docs/runbook-coverage.md itself, and the profiles' ``coverage`` entries it is made from."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from exporter.bundle.coverage import PATH, own_alerts, quote_occurs
from exporter.bundle.profile import Profile, load_profile_data
from exporter.fields import ConfigError
from tests.support import runbooks_dir, unavailable

from .conftest import ROOT
from .test_generate import _minimal

CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _runbook(name: str) -> str:
    path = runbooks_dir() / name
    if not path.is_file():
        unavailable(
            f"{path} missing: set RUNBOOKS_DIR to the folder holding the runbooks "
            "(default ../shared/runbooks beside the repository)"
        )
    return path.read_text(encoding="utf-8")


def _rule_alerts(slug: str) -> set[str]:
    data = yaml.safe_load((ROOT / "rules" / f"{slug}.rules.yml").read_text())
    return {r["alert"] for g in data["groups"] for r in g["rules"] if "alert" in r}


def _table_rows() -> list[list[str]]:
    """Data rows of every table in the committed docs/runbook-coverage.md, as cells."""
    rows = []
    for line in (ROOT / PATH).read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or line.startswith("| # ") or line.startswith("|---"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in CELL_SPLIT.split(line)[1:-1]]
        assert len(cells) == 8, line
        rows.append(cells)
    return rows


def _unquote(cell: str) -> str:
    """The text of a markdown code span: `x` or `` x `` (when x holds backticks)."""
    match = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
    assert match, cell
    return match[2]


def test_the_table_covers_every_profile_line(profiles: list[Profile]) -> None:
    rows = _table_rows()
    assert len(rows) == sum(len(p.coverage) for p in profiles)
    assert {row[0].rsplit("-", 1)[0] for row in rows} == {p.slug for p in profiles}
    for profile in profiles:
        assert len(profile.coverage) >= 10, f"{profile.slug}: too few runbook lines traced"


def test_every_quoted_line_occurs_in_its_runbook(profiles: list[Profile]) -> None:
    runbooks = {p.slug: _runbook(p.runbook) for p in profiles}
    missing = [
        f"{row[0]}: {row[2]}"
        for row in _table_rows()
        if not quote_occurs(_unquote(row[2]), runbooks[row[0].rsplit("-", 1)[0]])
    ]
    assert missing == []


def test_every_alert_quote_occurs_in_its_runbook(profiles: list[Profile]) -> None:
    runbooks = {p.slug: _runbook(p.runbook) for p in profiles}  # read once, not per alert
    missing = [
        f"{a.name}: {a.quote!r}"
        for p in profiles
        for a in p.alerts
        if a.quote and not quote_occurs(a.quote, runbooks[p.slug])
    ]
    assert missing == []


def test_every_listed_alert_exists_in_the_rules() -> None:
    unknown = []
    listed = 0
    rule_alerts: dict[str, set[str]] = {}
    for row in _table_rows():
        slug = row[0].rsplit("-", 1)[0]
        if row[4] == "not monitored":
            continue
        if slug not in rule_alerts:  # each rules file read once, not once per row
            rule_alerts[slug] = _rule_alerts(slug)
        existing = rule_alerts[slug]
        for entry in row[4].split("<br>"):
            if entry.startswith(("every ", "no ")):  # a routing line: by severity
                continue
            name = entry.split(" (", 1)[0]
            listed += 1
            if name not in existing:
                unknown.append(f"{row[0]}: {name}")
    assert listed > 50
    assert unknown == []


def _panels(slug: str) -> tuple[str, dict[int, str]]:
    dashboard = json.loads((ROOT / "dashboards" / f"{slug}.json").read_text())
    found: dict[int, str] = {}
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        found[panel["id"]] = panel["title"]
        stack.extend(panel.get("panels", []))
    return dashboard["uid"], found


PANEL = re.compile(r"(.+) \(`([^`]+)` #(\d+)\)")
ROW = re.compile(r"row “(.+)” of `([^`]+)`")


def test_every_listed_route_and_panel_exists() -> None:
    """The route cell names receivers alertmanager.yml has; the panel cell names panels
    (uid, id, title) the dashboards have, and severity rows of the dashboards."""
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}
    problems = []
    for row in _table_rows():
        if row[4] == "not monitored":
            continue
        slug = row[0].rsplit("-", 1)[0]
        for route in row[5].split("<br>"):
            name = route.split("`")[1]
            if name not in receivers or not name.startswith(f"{slug}-"):
                problems.append(f"{row[0]}: receiver {name}")
        uid, panels = _panels(slug)
        for cell in row[6].split("<br>"):
            panel, severity_row = PANEL.fullmatch(cell), ROW.match(cell)
            if cell == "—":  # a severity no alert uses: the row must say so
                ok = "(route only)" in row[4]
            elif panel is not None:
                ok = panel[2] == uid and panels.get(int(panel[3])) == panel[1]
            else:
                ok = (
                    severity_row is not None
                    and severity_row[2] == uid
                    and any(t.startswith(f"{severity_row[1]} (") for t in panels.values())
                )
            if not ok:
                problems.append(f"{row[0]}: panel {cell}")
    assert problems == []


def test_every_alert_traces_to_a_runbook_line(profiles: list[Profile]) -> None:
    """No alert without a coverage line, but for what the bundle adds on its own to every
    check (its failing alert and missing-data guards, listed on the coverage page)."""
    untraced = [
        a.name
        for p in profiles
        for a in p.alerts
        if not any(a.short in line.alerts for line in p.coverage) and a not in own_alerts(p)
    ]
    assert untraced == []


def test_unmonitored_lines_say_why(profiles: list[Profile]) -> None:
    for row in _table_rows():
        if row[4] == "not monitored":
            assert len(row[7]) > 20, row


def test_quote_matching() -> None:
    text = "| Queue | Alert on >0 for >15\u202fmin |\n```\n# 4. check deps\ndocker logs x\n```"
    assert quote_occurs("Alert on >0 for >15 min", text)
    assert quote_occurs("check deps ... docker logs x", text)
    assert not quote_occurs("docker logs x ... check deps", text)  # order matters
    assert not quote_occurs("Alert on >0 for >16 min", text)
    assert not quote_occurs("", text)


def _with_coverage(line: Mapping[str, object]) -> dict[str, object]:
    data = copy.deepcopy(_minimal())
    data["bundle"]["coverage"] = [line]  # type: ignore[index]
    return data


BASE = {"section": "s", "quote": "q", "kind": "threshold"}
BAD = [
    (
        {"alerts": ["WebDown"], "threshold": 2},
        "bundle.coverage[0].threshold: the runbook says 2 but WebDown has 1",
    ),
    (
        {"alerts": ["WebDown"], "for": "5m"},
        "bundle.coverage[0].for: the runbook says 5m but WebDown has for 1m",
    ),
    (
        {"severities": ["critical"], "response": "30m"},
        "bundle.coverage[0].response: the runbook says 30m but critical repeats every 15m",
    ),
    (
        {"severities": ["warning"], "channel": "pagerduty"},
        "bundle.coverage[0].channel: the runbook names pagerduty but warning goes to #c",
    ),
    ({"alerts": ["Nope"]}, 'bundle.coverage[0].alerts: unknown alert "Nope" in this profile'),
    (
        {},
        "bundle.coverage[0]: name the alerts or severities that implement this line, "
        "or say why it is not_monitored",
    ),
    (
        {"alerts": ["WebDown"], "not_monitored": "manual"},
        "bundle.coverage[0].not_monitored: a line is either covered",
    ),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_a_profile_that_disagrees_with_its_runbook_does_not_load(
    extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile_data(_with_coverage({**BASE, **extra}), "<test>", "t")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_agreeing_numbers_load() -> None:
    line = {**BASE, "alerts": ["WebDown"], "threshold": 1, "for": "1m"}
    profile = load_profile_data(_with_coverage(line), "<test>", "t")
    assert profile.coverage[0].alerts == ("WebDown",)
    routing = {
        **BASE,
        "kind": "window",
        "severities": ["critical"],
        "response": "15m",
        "channel": "pagerduty",
    }
    assert load_profile_data(_with_coverage(routing), "<test>", "t").coverage[0].channel


def test_committed_table_is_generated(generated: dict[str, str]) -> None:
    """docs/runbook-coverage.md is one of the generated files `bundle check` compares."""
    assert generated[PATH] == (ROOT / PATH).read_text(encoding="utf-8")


def _where_set(data: dict[str, Any], short: str, field: str) -> tuple[dict[str, Any], str]:
    """The mapping that sets alert ``short``'s numbers, and the key of ``field`` there:
    a ``bundle.alerts`` entry, or a check's ``alerts:`` setting (above/below/equal)."""
    for alert in data["bundle"].get("alerts") or []:
        if alert["name"] == short:
            return alert, field
    for check in data["checks"]:
        for value in (check.get("alerts") or {}).values():
            for setting in value if isinstance(value, list) else [value]:
                if isinstance(setting, dict) and setting.get("name") == short:
                    if field == "for":
                        return setting, "for"
                    sides = [k for k in ("above", "below", "equal") if k in setting]
                    return setting, sides[0] if sides else "equal"
    raise LookupError(short)


def test_moving_any_runbook_number_in_a_real_profile_fails_loading(
    profiles: list[Profile],
) -> None:
    """Every `threshold`/`for`/`response` a coverage line states binds: move the alert's
    (or severity's) number in the real profile and loading names that coverage line."""
    checked = 0
    for profile in profiles:
        # Parsed once; each change works on a deep copy (parsing is ~100x the copy's cost).
        parsed = yaml.safe_load((ROOT / "profiles" / f"{profile.slug}.yml").read_text())
        for index, line in enumerate(profile.coverage):
            for key, field in (("threshold", "threshold"), ("for", "for")):
                if getattr(line, "for_" if key == "for" else key) is None:
                    continue
                data = copy.deepcopy(parsed)
                alert, field = _where_set(data, line.alerts[0], field)
                current = alert.get(field, 0)
                alert[field] = "999d" if key == "for" or isinstance(current, str) else (current + 7)
                with pytest.raises(ConfigError) as caught:
                    load_profile_data(data, "<test>", profile.slug)
                prefix = f"bundle.coverage[{index}].{key}: the runbook says"
                assert any(p.startswith(prefix) for p in caught.value.problems), (
                    profile.slug,
                    index,
                    caught.value.problems,
                )
                checked += 1
            if line.response is not None:
                data = copy.deepcopy(parsed)
                severity = next(
                    s
                    for s in data["bundle"]["routing"]["severities"]
                    if s["name"] == line.severities[0]
                )
                severity["response"] = "999d"
                with pytest.raises(ConfigError) as caught:
                    load_profile_data(data, "<test>", profile.slug)
                prefix = f"bundle.coverage[{index}].response: the runbook says"
                assert any(p.startswith(prefix) for p in caught.value.problems)
                checked += 1
    assert checked >= 40
