"""The postgres kind against a real throwaway PostgreSQL cluster (see conftest.py)."""
# ruff: noqa: S608 - the SQL is test data built from table names the tests generate

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from exporter.runner import CheckResult
from tests.db.conftest import (
    APP_PASSWORD,
    APP_USER,
    MAX_CONNECTIONS,
    MONITOR_PASSWORD,
    SUPERUSER_RESERVED,
    PgCluster,
    query_failures,
)
from tests.support import (
    async_wait_until,
    config_problems,
    run_check,
    run_checks,
    running,
    value,
    values,
)


def check(pg: PgCluster, **extra: Any) -> dict[str, Any]:
    return {"name": "pg", "kind": "postgres", "dsn": pg.dsn(), "timeout": "10s", **extra}


def states(result: CheckResult) -> dict[str, float]:
    return {dict(k)["state"]: v for k, v in values(result, "db_pool_connections").items()}


@pytest.fixture
async def table(pg: PgCluster) -> AsyncIterator[str]:
    """A fresh telemetry-like table the monitor user may read."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg.psql(
        f"SET ROLE {APP_USER}; CREATE TABLE {name} "
        "(source text, received_at timestamptz, value float8, note text);"
        f"GRANT SELECT ON {name} TO monitor;"
    )
    yield name
    pg.psql(f"DROP TABLE {name}")


async def test_connections_by_state_max_and_version(pg: PgCluster) -> None:
    # One runner (one pool) for the whole test: no closed pool's backend lingers in
    # pg_stat_activity between the baseline and the later runs.
    app_dsn = pg.dsn(APP_USER, APP_PASSWORD)
    conns: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    async with running([check(pg)]) as runner:
        try:
            (before,) = await runner.scrape(30)
            assert before.success, before.error
            assert value(before, "db_pool_max_connections") == MAX_CONNECTIONS - SUPERUSER_RESERVED
            version = pg.psql("SHOW server_version")
            assert value(before, "postgres_server_version_info", version=version) == 1
            assert value(before, "postgres_in_recovery") == 0
            assert value(before, "db_ping_duration_seconds") > 0
            base = states(before)
            assert set(base) >= {"active", "idle", "idle_in_transaction", "waiting"}

            conns.extend([await asyncpg.connect(app_dsn) for _ in range(5)])
            _idle, sleeper, in_tx, holder, waiter = conns
            tasks.append(asyncio.create_task(sleeper.execute("SELECT pg_sleep(600)")))
            await in_tx.execute("BEGIN; SELECT 1")
            await holder.execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            tasks.append(asyncio.create_task(waiter.execute("SELECT count(*) FROM locked")))

            expected = {
                "idle": base["idle"] + 1,
                # the sleeper; the exporter's own connection is active in both runs
                "active": base["active"] + 1,
                "idle_in_transaction": base["idle_in_transaction"] + 2,
                "waiting": base["waiting"] + 1,
            }

            async def settled() -> CheckResult | None:
                (result,) = await runner.scrape(30)
                seen = states(result)
                return result if all(seen[s] == n for s, n in expected.items()) else None

            result = await async_wait_until(settled, 30, "the five connections in their states")
            assert result.success, result.error
            assert sum(states(result).values()) == sum(base.values()) + 5
        finally:
            for conn in conns:
                conn.terminate()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_named_queries_freshness_and_values(pg: PgCluster, table: str) -> None:
    newest_a = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    newest_b = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    pg.psql(
        f"INSERT INTO {table} VALUES "
        "('a', '2026-03-01 11:00:00+00', 1.5, 'x'),"
        f"('a', '{newest_a.isoformat()}', 2.5, 'y'),"
        f"('b', '{newest_b.isoformat()}', 7, 'z')"
    )
    result = await run_check(
        check(
            pg,
            queries=[
                {
                    "name": "telemetry",
                    "type": "freshness",
                    "sql": f"SELECT max(received_at) FROM {table}",
                },
                {
                    "name": "by_source",
                    "type": "freshness",
                    "labels": ["source"],
                    "sql": f"SELECT source, max(received_at) FROM {table} GROUP BY source",
                },
                {
                    "name": "per_source",
                    "type": "value",
                    "labels": ["source"],
                    "sql": (
                        "SELECT source, count(*) AS rows, sum(value) AS total "
                        f"FROM {table} GROUP BY 1"
                    ),
                },
                {
                    "name": "epoch",
                    "type": "freshness",
                    "sql": f"SELECT extract(epoch FROM min(received_at)) FROM {table}",
                },
            ],
        )
    )
    assert result.success, result.error
    assert value(result, "freshness_timestamp_seconds", item="telemetry") == newest_b.timestamp()
    assert value(result, "freshness_timestamp_seconds", item="by_source/a") == newest_a.timestamp()
    assert value(result, "freshness_timestamp_seconds", item="by_source/b") == newest_b.timestamp()
    assert (
        value(result, "freshness_timestamp_seconds", item="epoch")
        == datetime(2026, 3, 1, 11, tzinfo=UTC).timestamp()
    )
    assert values(result, "db_query_value") == {
        (("query", "per_source"), ("column", "rows"), ("label", "a")): 2,
        (("query", "per_source"), ("column", "total"), ("label", "a")): 4.0,
        (("query", "per_source"), ("column", "rows"), ("label", "b")): 1,
        (("query", "per_source"), ("column", "total"), ("label", "b")): 7.0,
    }
    assert all(v == 1 for v in values(result, "db_query_success").values())


async def test_failing_queries_fail_only_themselves_not_the_connection(
    pg: PgCluster, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken query is its own signal (db_query_success 0, one log line), never a
    failed check: the database is up, and "PostgreSQL down" must not page for it."""
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    pg.psql(f"INSERT INTO {table} VALUES ('a', now(), 1, 'text')")
    result = await run_check(
        check(
            pg,
            queries=[
                {"name": "good", "type": "value", "sql": f"SELECT count(*) AS n FROM {table}"},
                {"name": "missing", "type": "value", "sql": "SELECT count(*) FROM no_such_table"},
                {"name": "text", "type": "value", "sql": f"SELECT note FROM {table}"},
                {
                    "name": "two_ts",
                    "type": "freshness",
                    "sql": f"SELECT now(), max(received_at) FROM {table}",
                },
                {"name": "many", "type": "value", "sql": "SELECT g FROM generate_series(1, 3) g"},
                {
                    "name": "empty",
                    "type": "freshness",
                    "sql": f"SELECT received_at FROM {table} WHERE false",
                },
                {
                    "name": "null",
                    "type": "freshness",
                    "sql": f"SELECT max(received_at) FROM {table} WHERE false",
                },
                {
                    "name": "write",
                    "type": "value",
                    "sql": f"INSERT INTO {table} (source) VALUES ('evil') RETURNING 1",
                },
            ],
        )
    )
    assert result.success, result.error
    assert query_failures(caplog) == {
        "missing": 'relation "no_such_table" does not exist',
        "text": "column note is str, expected a number",
        "two_ts": "expected one timestamp column besides labels, got 2 (now, max)",
        "many": "returned 3 rows, expected one (or name label columns)",
        "empty": "returned no rows, expected one timestamp",
        "null": "expected a timestamp, got NULL",
        "write": "cannot execute INSERT in a read-only transaction",
    }
    assert value(result, "db_query_value", query="good", column="n", label="") == 1
    assert {dict(k)["query"]: v for k, v in values(result, "db_query_success").items()} == {
        "good": 1,
        "missing": 0,
        "text": 0,
        "two_ts": 0,
        "many": 0,
        "empty": 0,
        "null": 0,
        "write": 0,
    }
    assert value(result, "db_pool_max_connections") == MAX_CONNECTIONS - SUPERUSER_RESERVED
    assert pg.psql(f"SELECT count(*) FROM {table}") == "1"  # nothing was written


async def test_hung_query_is_cancelled_by_the_server_within_the_timeout(
    pg: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    marker = uuid.uuid4().hex
    result = await run_check(
        check(
            pg,
            timeout="6s",
            queries=[
                {
                    "name": "hung",
                    "type": "value",
                    "sql": f"SELECT pg_sleep(600) IS NULL AS hung_{marker}",
                },
            ],
        )
    )
    assert result.success, result.error  # the server answers: only the query failed
    assert value(result, "db_query_success", query="hung") == 0
    assert query_failures(caplog)["hung"].startswith("cancelled by statement_timeout")
    # (the server cancelled it: the runner's own timeout would say "timed out after")
    # nothing left running on the server
    assert (
        pg.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%hung_{marker}%'"
            " AND pid <> pg_backend_pid()"
        )
        == "0"
    )


async def test_password_from_environment_and_wrong_password_not_in_reason(
    pg: PgCluster,
) -> None:
    dsn = f"postgresql://monitor:${{PG_MONITOR_PASSWORD}}@127.0.0.1:{pg.port}/app"
    (good,) = await run_checks([check(pg, dsn=dsn)], env={"PG_MONITOR_PASSWORD": MONITOR_PASSWORD})
    assert good.success, good.error
    wrong = "not-the-pw-31337"
    (bad,) = await run_checks([check(pg, dsn=dsn)], env={"PG_MONITOR_PASSWORD": wrong})
    assert not bad.success
    assert 'password authentication failed for user "monitor"' in (bad.error or "")
    assert wrong not in (bad.error or "")
    assert bad.samples == ()


async def test_server_stopped_mid_run_fails_then_recovers(pg: PgCluster) -> None:
    async with running([check(pg, timeout="5s")]) as runner:
        (first,) = await runner.scrape(30)
        assert first.success, first.error

        # Restarted between two scrapes: the stale pool is replaced within the scrape.
        pg.stop()
        pg.start()
        (after_restart,) = await runner.scrape(30)
        assert after_restart.success, after_restart.error

        pg.stop()
        (down,) = await runner.scrape(30)
        assert not down.success
        assert "connection" in (down.error or "")
        (still_down,) = await runner.scrape(30)
        assert still_down.error == "connect: connection refused"

        pg.start()
        (back,) = await runner.scrape(30)
        assert back.success, back.error
        assert value(back, "db_pool_max_connections") == MAX_CONNECTIONS - SUPERUSER_RESERVED


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].dsn: required but missing"]),
        (
            {"dsn": "mysql://h/db"},
            [
                "checks[0].dsn: expected a URL starting with postgresql:// or postgres://, "
                'got "mysql://h/db"'
            ],
        ),
        (
            {"dsn": "postgresql://h/db", "queries": {"a": 1}},
            ["checks[0].queries: expected a list, got a mapping"],
        ),
        (
            {
                "dsn": "postgresql://h/db",
                "queries": [
                    {"name": "a", "type": "count", "sql": "SELECT 1"},
                    {"name": "a", "type": "value", "sql": "SELECT 1", "labels": 3, "extra": 1},
                    {"name": "b c", "type": "value"},
                    {
                        "name": "d",
                        "type": "value",
                        "sql": "SELECT 1",
                        "labels": ["x", "x"],
                        "max_rows": 0,
                    },
                ],
            },
            [
                'checks[0].queries[0].type: expected one of freshness, value, got "count"',
                'checks[0].queries[1].name: duplicate query name "a", first used at '
                "checks[0].queries[0]",
                "checks[0].queries[1].labels: expected a list of strings, got 3",
                "checks[0].queries[1].extra: unknown key (known keys here: labels, max_rows, "
                "name, sql, type)",
                'checks[0].queries[2].name: use letters, digits and _.:- only, got "b c"',
                "checks[0].queries[2].sql: required but missing",
                "checks[0].queries[3].labels: lists a column twice",
                "checks[0].queries[3].max_rows: must be at least 1, got 0",
            ],
        ),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "pg", "kind": "postgres", **options}) == problems
