"""Inhibitions as a real Alertmanager evaluates them.

The generated ``alertmanager.yml`` runs in Debian's ``prometheus-alertmanager`` on a
loopback port; the test posts alerts through its API (``POST /api/v2/alerts``) and reads
which ones it holds suppressed and by what (``status.inhibitedBy``). For every
dependency a profile declares (and every check's down alert over its missing-data
guards): the cause mutes the dependent when the labels that make the dependency real
agree, and never when one of them differs (another system, instance, check, job,
service, component). Each case runs under its own ``system`` value, so cases cannot
mute each other (every inhibition requires ``system`` equal).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.bundle.alertmanager import check_down_alerts
from exporter.bundle.defaults import SOURCE
from exporter.bundle.guards import guards, required_of
from exporter.bundle.profile import (
    ALWAYS_EQUAL,
    EXPORTER_JOB,
    SYSTEM_LABEL,
    Alert,
    Dependency,
    Profile,
)
from exporter.bundle.rules import alert_labels, all_alerts
from tests.e2e.stack import ManagedProcess, rewrite_receivers, wait_http_ok, write_yaml
from tests.support import free_port, require_binary

TIMEOUT = 60.0
EXPORTER_TARGET = {"instance": "exporter:9711", "job": EXPORTER_JOB}


@dataclass
class Alertmanager:
    url: str
    session: aiohttp.ClientSession

    async def post(self, alerts: list[dict[str, str]]) -> None:
        now = datetime.now(UTC)
        body = [
            {
                "labels": labels,
                "annotations": {},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
            for labels in alerts
        ]
        async with self.session.post(f"{self.url}/api/v2/alerts", json=body) as response:
            assert response.status == 200, await response.text()

    async def states(self) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
        """Every alert Alertmanager holds: its labels -> its status (state, inhibitedBy),
        plus its fingerprint under ``fingerprint``."""
        async with self.session.get(f"{self.url}/api/v2/alerts") as response:
            data = await response.json()
        return {
            tuple(sorted(a["labels"].items())): {**a["status"], "fingerprint": a["fingerprint"]}
            for a in data
        }


@pytest.fixture
async def alertmanager(bundle: Path, tmp_path: Path) -> AsyncIterator[Alertmanager]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    generated = yaml.safe_load((bundle / "alertmanager" / "alertmanager.yml").read_text())
    # Nothing is delivered within the test (group_wait); the receivers point nowhere.
    config = rewrite_receivers(generated, lambda name: f"http://127.0.0.1:9/{name}")
    assert config["inhibit_rules"] == generated["inhibit_rules"]
    path = write_yaml(tmp_path / "alertmanager.yml", config)
    port = free_port()
    process = ManagedProcess(
        "alertmanager",
        [
            binary,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path,
    )
    process.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            await wait_http_ok(session, f"{url}/-/ready", process)
            yield Alertmanager(url, session)
    finally:
        process.stop()


def _keeps(alert: Alert, label: str) -> bool:
    """Whether the alert's query keeps ``label`` of its input series (every ``by (...)``
    list names it, or there is none)."""
    lists = re.findall(r"\bby\s*\(([^)]*)\)", alert.query)
    return all(label in [x.strip() for x in labels.split(",")] for labels in lists)


def runtime_labels(profile: Profile, alert: Alert, system: str) -> dict[str, str]:
    """The labels the alert carries in production: its test's series labels, the
    exporter's target labels where the query keeps them, the generated labels."""
    labels: dict[str, str] = {}
    if alert.guarded is not None:
        required = required_of(profile, alert)[0]
        labels.update(EXPORTER_TARGET)
        labels.update({"missing": required.selector(), **dict(required.labels)})
    else:
        if alert.exporter in (EXPORTER_JOB, SOURCE):  # SOURCE: the kinds' defaults
            labels.update({k: v for k, v in EXPORTER_TARGET.items() if _keeps(alert, k)})
        labels.update(dict(alert.test.labels))
    labels.update(alert_labels(profile, alert))
    labels.update({"alertname": alert.name, SYSTEM_LABEL: system})
    # An empty label is no label, in Prometheus as in Alertmanager (a query value's
    # `label=""`).
    return {k: v for k, v in labels.items() if v}


@dataclass(frozen=True)
class Case:
    name: str
    source: dict[str, str]
    target: dict[str, str]
    unrelated: tuple[dict[str, str], ...]  # must stay active: another system, service...


def _case(profile: Profile, index: int, source: Alert, target: Alert, dep: Dependency) -> Case:
    system = f"case-{profile.slug}-{index}"
    src = runtime_labels(profile, source, system)
    dst = runtime_labels(profile, target, system)
    for label in dep.equal:
        # The dependency must be expressible: both sides carry the label.
        what = f"{profile.slug}: {source.name} -> {target.name} requires {label} equal"
        assert src.get(label), f"{what}, which {source.name} does not carry"
        assert dst.get(label), f"{what}, which {target.name} does not carry"
        dst[label] = src[label]
    dst.update(dict(dep.when))
    unrelated = [dst | {SYSTEM_LABEL: system + "-other"}]
    unrelated += [dst | {label: dst[label] + "-other"} for label in dep.equal]
    unrelated += [dst | {label: value + "-other"} for label, value in dep.when]
    return Case(f"{source.name} mutes {target.name}", src, dst, tuple(unrelated))


def cases(profiles: list[Profile]) -> list[Case]:
    out: list[Case] = []
    for profile in profiles:
        for target in all_alerts(profile):
            for dep in target.depends_on:
                out.append(_case(profile, len(out), profile.alert(dep.alert), target, dep))
        for guard_alert in guards(profile):
            checks = {
                v for r in required_of(profile, guard_alert) for k, v in r.labels if k == "check"
            }
            for check in sorted(checks):
                for source in check_down_alerts(profile, check):
                    if any(d.alert == source.short for d in guard_alert.depends_on):
                        continue  # a declared dependency, a case above
                    dep = Dependency(source.short, ("instance", "check"))
                    case = _case(profile, len(out), source, guard_alert, dep)
                    out.append(case)
    return out


async def _until(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = await condition()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {TIMEOUT}s")
        await asyncio.sleep(0.2)


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_each_dependency_mutes_only_where_its_labels_agree(
    alertmanager: Alertmanager, profiles: list[Profile]
) -> None:
    all_cases = cases(profiles)
    assert len(all_cases) >= 60, len(all_cases)
    await alertmanager.post([a for c in all_cases for a in (c.source, c.target, *c.unrelated)])

    async def settled() -> dict[tuple[tuple[str, str], ...], dict[str, Any]] | None:
        states = await alertmanager.states()
        targets = [states.get(_key(c.target)) for c in all_cases]
        if all(t is not None and t["state"] == "suppressed" for t in targets):
            return states
        return None

    try:
        states = await _until(settled, "not every dependent alert is suppressed")
    except AssertionError:
        last = await alertmanager.states()
        active = [
            c.name
            for c in all_cases
            if (last.get(_key(c.target)) or {}).get("state") != "suppressed"
        ]
        raise AssertionError(f"still active after {TIMEOUT}s: {active}") from None
    failures = []
    for case in all_cases:
        source = states[_key(case.source)]
        target = states[_key(case.target)]
        if source["fingerprint"] not in target["inhibitedBy"]:
            failures.append(f"{case.name}: suppressed by {target['inhibitedBy']}, not the cause")
        if source["state"] != "active":
            failures.append(f"{case.name}: the cause itself is {source['state']}")
        for other in case.unrelated:
            state = states[_key(other)]
            if state["state"] != "active":
                changed = {k: v for k, v in other.items() if case.target.get(k) != v}
                failures.append(f"{case.name}: also mutes the unrelated {changed}")
    assert failures == []


def test_issue_examples_are_among_the_cases(profiles: list[Profile]) -> None:
    """The two mutes the issue reported are now cases whose unrelated alert (another
    job; another component) must stay active."""
    names = {c.name: c for c in cases(profiles)}
    error_rate = names["FaceRecognitionServiceDown mutes FaceRecognitionHighErrorRate"]
    assert [o["job"] for o in error_rate.unrelated] == ["backend", "backend-other"]
    component = names["SurveillanceTrackerRedisDown mutes SurveillanceTrackerComponentError"]
    assert {o.get("component") for o in component.unrelated} == {"redis", "redis-other"}
    assert ALWAYS_EQUAL == ("runbook", SYSTEM_LABEL)
