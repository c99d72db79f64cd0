"""Fire drills: a real fault on loopback must page the right receiver, then resolve.

Each drill runs the exporter with a profile's own checks (only their addresses come from
the environment, as in production), Prometheus with the profile's generated rules and
Alertmanager with the generated routing tree, all from a bundle generated with the drill
factor (every `for`, interval and freshness window scaled, thresholds unchanged). The
receivers deliver to a local webhook; everything else is as generated. Each drill
asserts alert name, severity, receiver and runbook_url at the webhook, then the resolved
notification once the fault is removed, and records how long the page took.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.bundle.profile import load_profile as read_profile
from exporter.bundle.rules import all_alerts
from tests.e2e.conftest import (
    Bundle,
    ServiceApp,
    TcpServer,
    generate_for_config,
    load_profile,
)
from tests.e2e.stack import REPO, Delivery, Stack
from tests.servers import RedisServer

# The one driver of the real bullmq package (tests/redis and the bench use it too).
BULLMQ_DRIVER = REPO / "tests" / "redis" / "bullmq_driver.py"


@dataclass(frozen=True)
class Expected:
    """What the on-call must receive for one profile alert."""

    alertname: str
    severity: str
    receiver: str
    runbook_url: str


def _of(alert: dict[str, Any], check: str) -> bool:
    """Whether a firing alert (Alertmanager's API form) is about ``check``."""
    labels: dict[str, str] = alert["labels"]
    return labels.get("check") == check


def expected(bundle: Bundle, profile: str, short: str) -> Expected:
    """From the profile (as the generator reads it: ExporterDown and the missing-data
    guards are generated): the alert's name and severity; the receiver the generated
    tree has for that profile and severity; the runbook_url its generated rule carries."""
    loaded = read_profile(REPO / "profiles" / f"{profile}.yml")
    alert = next(a for a in all_alerts(loaded) if a.short == short)
    urls = [
        rule["annotations"]["runbook_url"]
        for path in bundle.rules(profile)
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == alert.name
    ]
    assert len(urls) == 1, f"{alert.name}: {len(urls)} rules in the generated bundle"
    assert f"/{profile}.md#" in urls[0], urls[0]
    receiver = f"{profile}-{alert.severity}"
    assert receiver in {r["name"] for r in bundle.alertmanager()["receivers"]}
    return Expected(alert.name, alert.severity, receiver, urls[0])


def drill_rules(stack: Stack, bundle: Bundle, profile: str, checks: list[str]) -> list[Path]:
    """The profile's generated rule files without the missing-data guards of checks the
    drill does not run: those guards would rightly page (their series are missing), but
    each drill runs a few of the profile's checks. Every other rule is as generated."""
    out = []
    for path in bundle.rules(profile):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            group["rules"] = [
                rule
                for rule in group["rules"]
                if not str(rule.get("alert", "")).endswith("NoData")
                or any(f'check="{name}"' in rule["expr"] for name in checks)
            ]
        copy = stack.workdir / "drill-rules" / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml.safe_dump(data, sort_keys=False))
        out.append(copy)
    return out


def profile_checks(profile: str, *names: str) -> list[dict[str, Any]]:
    """The profile's own check entries (unchanged) with these names."""
    checks = {c["name"]: c for c in load_profile(profile)["checks"]}
    return [checks[name] for name in names]


async def start(
    stack: Stack,
    bundle: Bundle,
    profile: str,
    checks: list[str] | list[dict[str, Any]],
    env: dict[str, str],
) -> None:
    """The profile's checks (names, or entries already taken from the profile) in one
    exporter scraped as the profile's system, with the profile's generated rules."""
    entries = [c for c in checks if isinstance(c, dict)] or profile_checks(
        profile, *(c for c in checks if isinstance(c, str))
    )
    await stack.start(
        entries,
        drill_rules(stack, bundle, profile, [c["name"] for c in entries]),
        bundle.alertmanager(),
        env=env,
        system=profile,
    )
    await stack.wait_scraped()


async def assert_page(
    stack: Stack,
    want: Expected,
    fault: float,
    **labels: Any,  # label values (str); Any as wait_for also takes float keywords
) -> tuple[Delivery, float]:
    """``want`` firing at its receiver; the delivery and its delay after ``fault``."""
    page = await stack.webhook.wait_for(want.alertname, "firing", since=fault, **labels)
    assert (page.receiver, page.path_receiver) == (want.receiver, want.receiver)
    assert page.labels["severity"] == want.severity
    assert page.annotations["runbook_url"] == want.runbook_url
    return page, page.received_at - fault


async def assert_resolved(stack: Stack, want: Expected, fixed: float, **labels: Any) -> float:
    resolved = await stack.webhook.wait_for(want.alertname, "resolved", since=fixed, **labels)
    assert resolved.receiver == want.receiver
    return resolved.received_at - fixed


async def assert_not_firing(stack: Stack, alertname: str) -> None:
    """Before the fault: Prometheus holds no such alert, so the page is the fault's."""
    active = [a for a in await stack.firing() if a["labels"]["alertname"] == alertname]
    assert active == [], json.dumps(active)


def bullmq(python: Path, action: str, url: str, queue: str, count: int) -> dict[str, Any]:
    """A real BullMQ worker on ``queue``: ``count`` connector runs that ``fail`` or
    ``complete`` (kept in the queue's history), or the failed ones ``recover`` (retried
    with the connector fixed). The driver's JSON result, with the queue's job counts."""
    command = {
        "fail": ["finish", "0", str(count), "keep"],
        "complete": ["finish", str(count), "0", "keep"],
        "recover": ["retry", str(count)],
    }[action]
    result = subprocess.run(
        [str(python), str(BULLMQ_DRIVER), command[0], url, "bull", queue, *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


async def start_queue_drill(
    stack: Stack, bundle: Bundle, redis_server: RedisServer, python: Path
) -> None:
    """The ingest queue with some history, watched by the profile's queue and Redis checks.

    The queue exists before the exporter first reads it, as in production: the exporter
    counts finished jobs from the events stream from the moment it first sees a queue,
    so failures of a queue created in the same instant would start its counter instead.
    """
    bullmq(python, "complete", redis_server.url, "ingest", 1)
    await start(stack, bundle, TRACKER, ["ingest-queue", "redis"], {"REDIS_URL": redis_server.url})
    await stack.wait_series('bullmq_jobs_failed_total{check="ingest-queue",queue="ingest"}')


# --- the drills ------------------------------------------------------------------------

TRACKER = "surveillance-tracker"


async def test_bullmq_jobs_fail_pages(
    stack: Stack,
    drill_bundle: Bundle,
    redis_server: RedisServer,
    bullmq_python: Path,
    record_timing: Any,
) -> None:
    """Drill 1: a real BullMQ worker's connector runs fail → the consecutive-failures page.

    The warning about failed jobs left in the queue (its declared dependency on the
    consecutive failures of that queue) is held back by Alertmanager while those fire;
    once the runs succeed again the page resolves after its lookback window and the
    warning was never sent."""
    page = expected(drill_bundle, TRACKER, "IngestFailuresConsecutive")
    lingering = expected(drill_bundle, TRACKER, "IngestJobsFailed")
    await start_queue_drill(stack, drill_bundle, redis_server, bullmq_python)
    await assert_not_firing(stack, page.alertname)

    fault = time.monotonic()
    failed = bullmq(bullmq_python, "fail", redis_server.url, "ingest", 3)
    assert failed["counts"]["failed"] == 3
    first, delay = await assert_page(stack, page, fault, queue="ingest", prefix="bull")
    assert first.labels["check"] == "ingest-queue"
    record_timing("page", delay)
    await stack.wait_inhibited(lingering.alertname, by=page.alertname)

    fixed = time.monotonic()
    recovered = bullmq(bullmq_python, "recover", redis_server.url, "ingest", 3)
    assert recovered["counts"]["failed"] == 0
    record_timing("page resolved", await assert_resolved(stack, page, fixed))
    assert not stack.webhook.matching(lingering.alertname, "firing")


async def test_redis_down_pages_and_inhibits_queue_alerts(
    stack: Stack,
    drill_bundle: Bundle,
    redis_server: RedisServer,
    bullmq_python: Path,
    record_timing: Any,
) -> None:
    """Drill 2: Redis stops → Redis-down pages; the BullMQ alerts depending on it are
    inhibited in Alertmanager (still firing in Prometheus, never delivered)."""
    down = expected(drill_bundle, TRACKER, "RedisDown")
    queue = expected(drill_bundle, TRACKER, "IngestFailuresConsecutive")
    await start_queue_drill(stack, drill_bundle, redis_server, bullmq_python)
    # The queue alert fires first (failures counted over a window survive the outage:
    # the rate still sees the samples scraped before Redis went away).
    bullmq(bullmq_python, "fail", redis_server.url, "ingest", 3)
    await stack.webhook.wait_for(queue.alertname, "firing")
    await assert_not_firing(stack, down.alertname)

    fault = time.monotonic()
    redis_server.stop()
    _, delay = await assert_page(stack, down, fault, check="redis")
    record_timing("page", delay)
    await stack.wait_inhibited(queue.alertname, by=down.alertname)
    # Inhibited, not gone: Prometheus still holds it firing.
    assert any(
        a["labels"]["alertname"] == queue.alertname and a["state"] == "firing"
        for a in await stack.firing()
    )

    fixed = time.monotonic()
    redis_server.start()
    record_timing("page resolved", await assert_resolved(stack, down, fixed, check="redis"))


class Scheduler:
    """tests/redis/bullmq_driver.py ``scheduled``: a real job scheduler and the worker
    running it, kept up; ``ask`` sends one command line and returns its JSON answer."""

    def __init__(self, python: Path, url: str, queue: str, every_ms: int) -> None:
        self.process = subprocess.Popen(
            [str(python), str(BULLMQ_DRIVER), "scheduled", url, "bull", queue, "poll-sources",
             str(every_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        assert line, f"bullmq_driver.py scheduled: no answer to {command!r}"
        return dict(json.loads(line))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


async def test_repeatable_job_removed_pages_schedulers_overdue(
    stack: Stack,
    tmp_path: Path,
    redis_server: RedisServer,
    bullmq_python: Path,
    record_timing: Any,
) -> None:
    """Drill 2b: a repeatable job's pending run is removed while its worker runs: the
    schedule stays and never advances again. The bullmq kind's default SchedulersOverdue
    alert (``bundle generate --config``: no profile has it) pages at the warning receiver
    once the run is more than ``schedule_grace`` late, and resolves when the job scheduler
    is upserted again (the worker runs it and it advances)."""
    slug, grace = "scheduled-ingest", 3.0
    check = {"name": "ingest-queue", "kind": "bullmq", "url": redis_server.url,
             "queues": ["ingest"], "schedule_grace": f"{grace:g}s"}  # fmt: skip
    config = tmp_path / f"{slug}.yml"
    config.write_text(yaml.safe_dump({"checks": [check]}, sort_keys=False))
    out = tmp_path / "bundle"
    generate_for_config(config, out)
    alertmanager = yaml.safe_load((out / "alertmanager" / "alertmanager.yml").read_text())
    overdue = "IngestQueueSchedulersOverdue"
    scheduler = Scheduler(bullmq_python, redis_server.url, "ingest", 2000)
    try:
        assert scheduler.ask("runs") == {"runs": 2}  # the worker runs it: it advances
        await stack.start([check], [out / "rules" / f"{slug}.rules.yml"], alertmanager)
        await stack.wait_scraped()
        await stack.wait_series('bullmq_queue_schedulers{check="ingest-queue"} == 1')
        await assert_not_firing(stack, overdue)

        fault = time.monotonic()
        removed = scheduler.ask("remove")
        assert removed["removed"].startswith("repeat:poll-sources:")
        page = await stack.webhook.wait_for(overdue, since=fault, queue="ingest")
        # Not before the removed run was due plus the grace: the threshold is the grace.
        assert time.time() >= removed["due"] / 1000 + grace
        assert (page.receiver, page.path_receiver) == (f"{slug}-warning", f"{slug}-warning")
        assert page.labels["severity"] == "warning"
        assert page.labels["check"] == "ingest-queue"
        record_timing("page", page.received_at - fault)
        # The worker is connected and nothing waits: only the schedule is wrong.
        for quiet in ("IngestQueueNoWorkers", "IngestQueueJobsStalled", "IngestQueueFailing"):
            assert not stack.webhook.matching(quiet, "firing"), quiet

        fixed = time.monotonic()
        assert scheduler.ask("reschedule") == {"schedulers": 1}
        resolved = await stack.webhook.wait_for(overdue, "resolved", since=fixed)
        record_timing("page resolved", resolved.received_at - fixed)
    finally:
        scheduler.close()


async def test_health_component_error_then_service_down(
    stack: Stack, drill_bundle: Bundle, service_app: ServiceApp, record_timing: Any
) -> None:
    """Drill 3: a /health component reports `error` → the component alert; the service
    stops answering → the service-down page.

    The component fault is shaped as NestJS Terminus reports it: the top-level status
    turns `error` too. The tree then holds the generic health alert back (the component
    alert names the cause), and the health alert pages once nothing answers at all."""
    component = expected(drill_bundle, TRACKER, "ComponentError")
    service = expected(drill_bundle, TRACKER, "EngineHealthNotOk")
    # A service that stops answering fails the check as a whole: its Down alert pages.
    down = expected(drill_bundle, TRACKER, "EngineHealthDown")
    service_app.components.update(redis="ok", database="ok")
    await service_app.start()
    await start(
        stack, drill_bundle, TRACKER, ["engine-health"], {"TRACKER_API_URL": service_app.url}
    )
    await assert_not_firing(stack, component.alertname)

    fault = time.monotonic()
    service_app.components["redis"] = "error"
    service_app.status = "error"
    first, delay = await assert_page(stack, component, fault, component="redis")
    assert first.labels["check"] == "engine-health"
    record_timing("component page", delay)
    await stack.wait_inhibited(service.alertname, by=component.alertname)
    assert not stack.webhook.matching(component.alertname, "firing", fault, component="database")
    assert not stack.webhook.matching(service.alertname, "firing")

    fixed = time.monotonic()
    service_app.components["redis"] = "ok"
    service_app.status = "ok"
    record_timing(
        "component resolved", await assert_resolved(stack, component, fixed, component="redis")
    )

    fault = time.monotonic()
    await service_app.stop()
    _, delay = await assert_page(stack, down, fault, check="engine-health")
    record_timing("service-down page", delay)

    fixed = time.monotonic()
    await service_app.start()
    record_timing(
        "service-down resolved",
        await assert_resolved(stack, down, fixed, check="engine-health"),
    )


async def test_one_source_stops_ingesting(
    stack: Stack, drill_bundle: Bundle, service_app: ServiceApp, record_timing: Any
) -> None:
    """Drill 4: one source's lastIngestedAt stops moving → the freshness alert for that
    source only; the sources still ingesting stay quiet."""
    lagging = expected(drill_bundle, TRACKER, "HourlySourceLagging")
    service_app.sources = ["redlightcameralist", "atlas-of-surveillance", "overpass-alpr"]
    await service_app.start()
    await start(stack, drill_bundle, TRACKER, ["sources"], {"TRACKER_API_URL": service_app.url})
    await assert_not_firing(stack, lagging.alertname)

    fault = time.monotonic()
    service_app.freeze("atlas-of-surveillance")
    first, delay = await assert_page(stack, lagging, fault, item="atlas-of-surveillance")
    assert first.labels["check"] == "sources"
    record_timing("page", delay)
    # Only the frozen source: the other hourly source is fresh in Prometheus too.
    # (The checks this drill does not run page as Absent: not this check's.)
    active = {a["labels"].get("item") for a in await stack.firing() if _of(a, "sources")}
    assert active == {"atlas-of-surveillance"}, active
    # Pages since the fault: on a loaded machine the first scrape can take longer than
    # the drill's scaled ExporterDown `for` (6 s), whose start-up page and resolution are
    # not part of this drill.
    paged = [
        d
        for d in stack.webhook.deliveries
        if d.received_at >= fault and d.status == "firing" and d.labels.get("check") == "sources"
    ]
    assert {d.labels.get("item") for d in paged} == {"atlas-of-surveillance"}, [
        d.labels for d in paged
    ]

    fixed = time.monotonic()
    service_app.thaw("atlas-of-surveillance")
    record_timing(
        "resolved", await assert_resolved(stack, lagging, fixed, item="atlas-of-surveillance")
    )
    # Pages since the fault: on a loaded machine the first scrape can take longer than
    # the drill's scaled ExporterDown `for` (6 s), whose start-up page and resolution are
    # not part of this drill.
    paged = [
        d
        for d in stack.webhook.deliveries
        if d.received_at >= fault and d.status == "firing" and d.labels.get("check") == "sources"
    ]
    assert {d.labels.get("item") for d in paged} == {"atlas-of-surveillance"}, [
        d.labels for d in paged
    ]


async def test_disk_crosses_usage_threshold(
    stack: Stack, drill_bundle: Bundle, tmpfs: Path, record_timing: Any
) -> None:
    """Drill 6: a data volume (a 4 MiB tmpfs) fills past the profile's threshold → the
    disk alert; deleting the file resolves it."""
    disk = expected(drill_bundle, TRACKER, "DiskUsageHigh")
    threshold = read_profile(REPO / "profiles" / f"{TRACKER}.yml").alert("DiskUsageHigh").threshold
    exports = tmpfs / "exports"
    exports.mkdir()
    await start(
        stack,
        drill_bundle,
        TRACKER,
        ["volumes"],
        {"DATA_DIR": str(tmpfs), "EXPORTS_DIR": str(exports)},
    )
    await assert_not_firing(stack, disk.alertname)

    fault = time.monotonic()
    filler = tmpfs / "engine.sqlite"
    fs = os.statvfs(tmpfs)
    # Halfway between the threshold and full: crosses it whatever tmpfs rounds.
    filler.write_bytes(b"\0" * int(fs.f_blocks * fs.f_frsize * (float(threshold) + 1) / 2))
    first, delay = await assert_page(stack, disk, fault, path=str(tmpfs))
    assert first.labels["mountpoint"] == str(tmpfs)
    record_timing("page", delay)

    fixed = time.monotonic()
    filler.unlink()
    record_timing("resolved", await assert_resolved(stack, disk, fixed, path=str(tmpfs)))


SMART_CITY = "smart-city"


async def test_tcp_server_stops_listening(
    stack: Stack, drill_bundle: Bundle, tcp_server: TcpServer, record_timing: Any
) -> None:
    """Drill 5: the Teltonika TCP gateway stops listening → the port alert."""
    port = expected(drill_bundle, SMART_CITY, "TcpServerDown")
    await start(
        stack,
        drill_bundle,
        SMART_CITY,
        ["teltonika"],
        {"SMARTCITY_TCP_ADDRESS": tcp_server.address},
    )
    await assert_not_firing(stack, port.alertname)

    fault = time.monotonic()
    await tcp_server.stop()
    first, delay = await assert_page(stack, port, fault, check="teltonika")
    assert first.labels["kind"] == "tcp"
    record_timing("page", delay)

    fixed = time.monotonic()
    await tcp_server.start()
    record_timing("resolved", await assert_resolved(stack, port, fixed, check="teltonika"))


async def test_exporter_dies(
    stack: Stack, drill_bundle: Bundle, tcp_server: TcpServer, record_timing: Any
) -> None:
    """Drill 7: the exporter itself stops → the exporter-down page (the scrape job name of
    compose/prometheus.yml is the one the generated rules watch)."""
    down = expected(drill_bundle, SMART_CITY, "ExporterDown")
    await start(
        stack,
        drill_bundle,
        SMART_CITY,
        ["teltonika"],
        {"SMARTCITY_TCP_ADDRESS": tcp_server.address},
    )
    await assert_not_firing(stack, down.alertname)
    exporter = next(p for p in stack.processes if p.name == "exporter")

    fault = time.monotonic()
    exporter.stop()
    first, delay = await assert_page(stack, down, fault, job="runbook-exporter")
    assert first.labels["instance"] == f"127.0.0.1:{stack.exporter_port}"
    record_timing("page", delay)

    fixed = time.monotonic()
    exporter.start()
    record_timing("resolved", await assert_resolved(stack, down, fixed, job="runbook-exporter"))


# --- missing data and isolation --------------------------------------------------------


async def test_backup_glob_stops_matching(
    stack: Stack, drill_bundle: Bundle, tmp_path: Path, record_timing: Any
) -> None:
    """Drill 8: the backup directory loses its last dump (the glob matches nothing: the
    check fails and writes only file_matches 0) → the backup age alert cannot fire; the
    check's failing alert pages saying its data is missing; a new dump resolves it.

    The profile's own check, but without its min_interval (5m): the drill must not
    wait five minutes for the next real read."""
    loaded = read_profile(REPO / "profiles" / f"{SMART_CITY}.yml")
    failing = next(
        g.alert.short
        for g in loaded.generated
        if g.check.name == "db-backup" and g.default and g.default.key == "check_failing"
    )
    guard = expected(drill_bundle, SMART_CITY, failing)
    backups = tmp_path / "backups"
    backups.mkdir()
    dump = backups / "smartcity_20250101_020000.sql.gz"
    dump.write_bytes(b"dump")
    (check,) = profile_checks(SMART_CITY, "db-backup")
    check = {k: v for k, v in check.items() if k != "min_interval"}
    await start(stack, drill_bundle, SMART_CITY, [check], {"BACKUP_DIR": str(backups)})
    await stack.wait_series('freshness_timestamp_seconds{check="db-backup"}')
    await assert_not_firing(stack, guard.alertname)

    fault = time.monotonic()
    dump.unlink()
    page, delay = await assert_page(stack, guard, fault, check="db-backup")
    assert page.annotations["summary"].endswith("its data is missing"), page.annotations
    assert await stack.query('file_matches{check="db-backup"} == 0')  # what is left
    record_timing("page", delay)

    fixed = time.monotonic()
    dump.write_bytes(b"dump")
    record_timing("resolved", await assert_resolved(stack, guard, fixed, check="db-backup"))


async def test_source_leaves_the_sources_list(
    stack: Stack, drill_bundle: Bundle, service_app: ServiceApp, record_timing: Any
) -> None:
    """Drill 9: one hourly source drops out of /api/sources (its series vanishes; the
    lag alert cannot fire) → the guard pages for that item only."""
    guard = expected(drill_bundle, TRACKER, "HourlySourceLaggingNoData")
    service_app.sources = ["redlightcameralist", "atlas-of-surveillance", "overpass-alpr"]
    await service_app.start()
    await start(stack, drill_bundle, TRACKER, ["sources"], {"TRACKER_API_URL": service_app.url})
    await assert_not_firing(stack, guard.alertname)

    fault = time.monotonic()
    service_app.sources.remove("atlas-of-surveillance")
    page, delay = await assert_page(stack, guard, fault, item="atlas-of-surveillance")
    assert page.labels["check"] == "sources"
    record_timing("page", delay)
    assert {d.labels.get("item") for d in stack.webhook.matching(guard.alertname, "firing")} == {
        "atlas-of-surveillance"
    }

    fixed = time.monotonic()
    service_app.sources.append("atlas-of-surveillance")
    record_timing(
        "resolved", await assert_resolved(stack, guard, fixed, item="atlas-of-surveillance")
    )


async def test_two_systems_one_prometheus_fault_in_one(
    stack: Stack,
    drill_bundle: Bundle,
    redis_factory: Any,
    record_timing: Any,
) -> None:
    """Drill 10: smart-city and surveillance-tracker in one Prometheus, each with its own
    exporter and its own Redis behind a check of the same name ("redis"). smart-city's
    Redis stops → smart-city's RedisDown pages, surveillance-tracker's never; then
    smart-city's exporter dies → one ExporterDown, smart-city's."""
    smart_redis, tracker_redis = redis_factory(), redis_factory()
    down = expected(drill_bundle, SMART_CITY, "RedisDown")
    other = expected(drill_bundle, TRACKER, "RedisDown")
    exporter_down = expected(drill_bundle, SMART_CITY, "ExporterDown")
    await stack.start(
        profile_checks(SMART_CITY, "redis"),
        [
            *drill_rules(stack, drill_bundle, SMART_CITY, ["redis"]),
            *drill_rules(stack, drill_bundle, TRACKER, ["redis"]),
        ],
        drill_bundle.alertmanager(),
        env={"REDIS_URL": smart_redis.url},
        system=SMART_CITY,
        others={TRACKER: (profile_checks(TRACKER, "redis"), {"REDIS_URL": tracker_redis.url})},
    )
    await stack.wait_scraped()
    await assert_not_firing(stack, down.alertname)

    fault = time.monotonic()
    smart_redis.stop()
    page, delay = await assert_page(stack, down, fault, check="redis")
    assert page.labels["system"] == SMART_CITY
    record_timing("page", delay)
    assert [a for a in await stack.firing() if a["labels"]["alertname"] == other.alertname] == []
    assert not stack.webhook.matching(other.alertname, "firing")

    fault = time.monotonic()
    next(p for p in stack.processes if p.name == "exporter").stop()
    page, delay = await assert_page(stack, exporter_down, fault, job="runbook-exporter")
    assert page.labels["system"] == SMART_CITY
    record_timing("exporter-down page", delay)
    # Since the fault: at start-up, before Prometheus' first scrape, every system's
    # target is absent for longer than the drill-scaled `for` (0.6 s; 2 min in production).
    pages = {
        (d.labels["alertname"], d.labels.get("system"))
        for d in stack.webhook.deliveries
        if d.status == "firing"
        and d.labels["alertname"].endswith("ExporterDown")
        and d.received_at >= fault
    }
    assert pages == {(exporter_down.alertname, SMART_CITY)}
