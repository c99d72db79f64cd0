"""A profile's checks produce the series its alerts select: run the surveillance-tracker
profile's HTTP checks against a loopback server shaped like the runbook's API and compare
the labels with the ones the alerts' promtool tests assume."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from exporter.bundle.profile import Profile
from exporter.config import load_file
from exporter.runner import CheckResult
from tests.db.conftest import MONITOR_USER, PgCluster
from tests.support import async_wait_until, run_checks, value, values
from tests.web.conftest import Serve

from .conftest import PROFILES

INGESTED = 1_790_000_000.0
DAILY = INGESTED - 20 * 3600
GENERATED = INGESTED + 30


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


HEALTH_STATUS = {"value": "ok"}


@pytest.fixture
async def tracker_api(serve: Serve) -> str:
    """The engine's /health, /api/sources and /api/dataset/latest, as §4 and §5 show."""
    HEALTH_STATUS["value"] = "ok"

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": HEALTH_STATUS["value"],
                "components": {
                    "ingestion": {"status": "ok", "lastIngestedAt": _iso(INGESTED)},
                    "redis": {"status": "error"},
                    "database": {"status": "ok"},
                },
            }
        )

    async def sources(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": "redlightcameralist", "lastIngestedAt": _iso(INGESTED), "totalRecords": 5},
                {
                    "id": "atlas-of-surveillance",
                    "lastIngestedAt": _iso(INGESTED),
                    "totalRecords": 7,
                },
                {"id": "overpass-alpr", "lastIngestedAt": _iso(DAILY), "totalRecords": 9},
            ]
        )

    async def dataset(_: web.Request) -> web.Response:
        return web.json_response({"generatedAt": _iso(GENERATED), "sources": []})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/sources", sources)
    app.router.add_get("/api/dataset/latest", dataset)
    return await serve(app)


def _http_checks(url: str) -> list[dict[str, Any]]:
    import yaml

    data = yaml.safe_load((PROFILES / "surveillance-tracker.yml").read_text())
    checks = [c for c in data["checks"] if c["kind"] == "http"]
    for check in checks:
        check["url"] = check["url"].replace("${TRACKER_API_URL:-http://127.0.0.1:3000}", url)
    return checks


async def test_tracker_http_checks_emit_what_the_alerts_select(
    tracker_api: str, profiles: list[Profile]
) -> None:
    assert load_file(PROFILES / "surveillance-tracker.yml", env={}).checks
    health, sources, dataset = await run_checks(_http_checks(tracker_api))
    assert [r.error for r in (health, sources, dataset)] == [None, None, None]
    assert all(r.success for r in (health, sources, dataset))

    # ComponentError's test series: http_component_up{component="redis"} at 0.
    assert value(health, "http_component_up", component="redis") == 0
    assert value(health, "http_component_up", component="database") == 1
    # IngestionStale: freshness_timestamp_seconds{item="ingestion"}.
    assert value(health, "freshness_timestamp_seconds", item="ingestion") == INGESTED
    # Hourly/DailySourceLagging select items by source id.
    freshness = values(sources, "freshness_timestamp_seconds")
    by_item = {dict(k)["item"]: v for k, v in freshness.items()}
    assert by_item == {
        "redlightcameralist": INGESTED,
        "atlas-of-surveillance": INGESTED,
        "overpass-alpr": DAILY,
    }
    assert value(dataset, "freshness_timestamp_seconds", item="dataset") == GENERATED

    tracker = next(p for p in profiles if p.slug == "surveillance-tracker")
    # Each freshness alert selects the items this check exports, by the names it exports.
    expected_items = {
        "IngestionStale": ("ingestion",),
        "HourlySourceLagging": ("redlightcameralist", "atlas-of-surveillance"),
        "DailySourceLagging": ("overpass-alpr",),
        "DatasetNotAdvancing": ("dataset",),
    }
    for short, items in expected_items.items():
        expr = tracker.alert(short).expr()
        for item in items:
            assert item.replace("-", "\\\\-") in expr or f'"{item}"' in expr, (short, expr)
    # ComponentError watches every component the health endpoint lists (redis is at 0).
    component = tracker.alert("ComponentError").expr()
    assert "http_component_up{" in component
    assert "component=" not in component


async def test_status_not_ok_reaches_the_health_alert(
    tracker_api: str, profiles: list[Profile]
) -> None:
    """`status != ok` is data (http_probe_up 0), not a failed check: the health alert's
    signal must read http_probe_up as well as the check's success."""
    HEALTH_STATUS["value"] = "degraded"
    (health,) = await run_checks(_http_checks(tracker_api)[:1])
    assert health.success
    assert value(health, "http_probe_up") == 0
    tracker = next(p for p in profiles if p.slug == "surveillance-tracker")
    # status != ok pages as EngineHealthNotOk; a health endpoint that does not answer
    # fails the check, which pages as EngineHealthDown.
    assert tracker.alert("EngineHealthNotOk").query.startswith("http_probe_up{")
    assert tracker.alert("EngineHealthDown").query.startswith("runbook_exporter_check_success{")


AGE = {"query": "vacuum-age", "column": "vacuum_age_seconds", "label": ""}


async def test_smart_city_vacuum_query_against_postgres(
    pg_cluster: PgCluster, profiles: list[Profile]
) -> None:
    """The smart-city database check with its queries as written (only the DSN swapped)
    against a real PostgreSQL holding the runbook's three high-volume tables: a table
    never vacuumed reads as decades old (VacuumOverdue fires); after the weekly
    VACUUM ANALYZE all three are fresh (quiet), and the check itself stays successful."""
    import yaml

    pg_cluster.psql(
        "DROP DATABASE IF EXISTS smartcity; CREATE DATABASE smartcity;", database="postgres"
    )
    pg_cluster.psql(
        "CREATE TABLE telemetry_records (device_id int, timestamp timestamptz);"
        "CREATE TABLE alerts (id int, created_at timestamptz);"
        "CREATE TABLE device_daily_stats (device_id int, day date);"
        "INSERT INTO telemetry_records VALUES (1, now());",
        database="smartcity",
    )
    grant = "GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + MONITOR_USER
    pg_cluster.psql(grant, database="smartcity")
    data = yaml.safe_load((PROFILES / "smart-city.yml").read_text())
    check = next(c for c in data["checks"] if c["name"] == "smartcity-db")
    check["dsn"] = pg_cluster.dsn(database="smartcity")
    threshold = next(p for p in profiles if p.slug == "smart-city").alert("VacuumOverdue").threshold

    (never,) = await run_checks([check])
    assert never.error is None
    assert never.success
    assert value(never, "db_query_value", **AGE) > threshold

    pg_cluster.psql(
        "VACUUM ANALYZE telemetry_records, alerts, device_daily_stats;", database="smartcity"
    )

    async def vacuumed() -> float:
        (result,) = await run_checks([check])
        assert result.success, result.error
        return value(result, "db_query_value", **AGE)

    # The statistics collector reports the vacuum asynchronously: poll, never sleep.
    await async_wait_until(lambda: _below(vacuumed, 3600.0), 60, "vacuum to show in stats")


async def _below(read: Callable[[], Awaitable[float]], limit: float) -> bool:
    return await read() < limit


def _database_check(slug: str, name: str, dsn: str, queries: set[str]) -> dict[str, Any]:
    """A profile's database check as written, with only the DSN swapped and the named
    queries kept (the others read tables this test does not build)."""
    import yaml

    data = yaml.safe_load((PROFILES / f"{slug}.yml").read_text())
    check: dict[str, Any] = next(c for c in data["checks"] if c["name"] == name)
    check["dsn"] = dsn
    check["queries"] = [q for q in check["queries"] if q["name"] in queries]
    # Its alert severities name the profile's bundle.routing, which is not loaded here.
    del check["alerts"]
    assert {q["name"] for q in check["queries"]} == queries
    return check


def _missing(result: CheckResult) -> dict[str, float]:
    """The schema rows of opsconductor's queries: label -> 1 when the object is missing."""
    assert result.success, result.error
    return {
        dict(labels)["label"]: sample
        for labels, sample in values(result, "db_query_value").items()
        if dict(labels)["column"] == "missing"
    }


async def test_opsconductor_schema_queries_against_postgres(pg_cluster: PgCluster) -> None:
    """Migrations 058 and 066 are proven by their schema objects: on an empty database
    every row reads missing; once the objects exist (owned by another role, read through
    a grant as the monitoring role) every row reads present. When the escalation column
    lives in another table than the guessed fleet_alert, only the assumed row reads
    missing (066 is applied); dropping the 058 column turns its row only."""
    pg_cluster.psql(
        "DROP DATABASE IF EXISTS iotcloud; CREATE DATABASE iotcloud;", database="postgres"
    )
    queries = {"schema-migrations", "assumed-schema"}
    check = _database_check(
        "opsconductor-pulse", "iotcloud", pg_cluster.dsn(database="iotcloud"), queries
    )
    rows = {
        "066/table escalation_policies",
        "066/column next_escalation_at",
        "066/column alert_rules.escalation_policy_id",
        "058/column *decommission*",
        "column fleet_alert.next_escalation_at",
    }

    (empty,) = await run_checks([check])
    assert _missing(empty) == dict.fromkeys(rows, 1.0)

    pg_cluster.psql(
        "CREATE TABLE escalation_policies (id int);"
        "CREATE TABLE alert_rules (id int, escalation_policy_id int);"
        "CREATE TABLE fleet_alert (id int, status text, next_escalation_at timestamptz);"
        "CREATE TABLE device (id int, decommissioned_at timestamptz);"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR_USER};",
        database="iotcloud",
    )
    (applied,) = await run_checks([check])
    assert _missing(applied) == dict.fromkeys(rows, 0.0)

    pg_cluster.psql(
        "CREATE TABLE alert (id int, next_escalation_at timestamptz);"
        f"GRANT SELECT ON alert TO {MONITOR_USER};"
        "DROP TABLE fleet_alert; ALTER TABLE device DROP COLUMN decommissioned_at;",
        database="iotcloud",
    )
    (guess_wrong,) = await run_checks([check])
    assert {label for label, missing in _missing(guess_wrong).items() if missing} == {
        "058/column *decommission*",
        "column fleet_alert.next_escalation_at",
    }


async def test_rta_cctv_cameras_query_against_postgres(pg_cluster: PgCluster) -> None:
    """The runbook's integrity check `SELECT COUNT(*) FROM cameras` as the profile's
    query: the row count, and a failed query (CamerasQueryFailing) without the table."""
    pg_cluster.psql("DROP DATABASE IF EXISTS cctv; CREATE DATABASE cctv;", database="postgres")
    check = _database_check("rta-cctv", "postgres", pg_cluster.dsn(database="cctv"), {"cameras"})

    (no_table,) = await run_checks([check])
    assert no_table.success
    assert value(no_table, "db_query_success", query="cameras") == 0

    pg_cluster.psql(
        "CREATE TABLE cameras (id int); INSERT INTO cameras SELECT generate_series(1, 12);"
        f"GRANT SELECT ON cameras TO {MONITOR_USER};",
        database="cctv",
    )
    (counted,) = await run_checks([check])
    assert value(counted, "db_query_success", query="cameras") == 1
    assert value(counted, "db_query_value", query="cameras", column="cameras", label="") == 12
