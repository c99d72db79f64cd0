"""The pgbouncer kind against a real PgBouncer (pool_size 1) in front of the test cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from exporter.runner import CheckResult
from tests.db.conftest import APP_PASSWORD, APP_USER, Bouncer
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    run_check,
    running,
    value,
    values,
)

POOL = {"database": "app", "user": APP_USER}


def check(bouncer: Bouncer, **extra: Any) -> dict[str, Any]:
    return {"name": "bouncer", "kind": "pgbouncer", "dsn": bouncer.dsn(), "timeout": "10s", **extra}


def states(result: CheckResult) -> dict[str, float]:
    return {dict(k)["state"]: v for k, v in values(result, "db_pool_connections").items()}


def installed_version(bouncer: Bouncer) -> str:
    """``1.18.0`` from ``PgBouncer 1.18.0`` as printed by ``pgbouncer --version``."""
    done = subprocess.run([bouncer.binary, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.split()[1]


async def client(bouncer: Bouncer) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        bouncer.dsn(APP_USER, APP_PASSWORD, "app"), autocommit=True
    )


async def test_no_pools_yet_reports_zeros_and_version(pgbouncer: Bouncer) -> None:
    result = await run_check(check(pgbouncer))
    assert result.success, result.error
    assert set(states(result).values()) == {0}
    assert set(states(result)) == {
        "client_active",
        "client_waiting",
        "server_active",
        "server_idle",
        "server_used",
        "server_tested",
        "server_login",
    }
    assert value(result, "db_pool_max_connections") == 0
    assert value(result, "pgbouncer_version_info", version=installed_version(pgbouncer)) == 1
    assert value(result, "db_ping_duration_seconds") > 0


async def test_clients_waiting_for_the_single_server_connection(pgbouncer: Bouncer) -> None:
    holder = await client(pgbouncer)
    await holder.execute("SELECT 1")
    waiting: asyncio.Task[Any] | None = None
    try:
        held = await run_check(check(pgbouncer))
        assert held.success, held.error
        assert value(held, "pgbouncer_pools_client_active_connections", **POOL) == 1
        assert value(held, "pgbouncer_pools_server_active_connections", **POOL) == 1
        assert value(held, "pgbouncer_pools_pool_size", **POOL) == 1
        assert value(held, "db_pool_max_connections") == 1
        assert states(held)["client_waiting"] == 0

        async def second_client() -> None:
            conn = await client(pgbouncer)
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()

        waiting = asyncio.create_task(second_client())

        async def one_waits() -> CheckResult | None:
            result = await run_check(check(pgbouncer))
            return result if states(result)["client_waiting"] == 1 else None

        result = await async_wait_until(one_waits, 30, "the second client to wait")
        assert result.success, result.error
        assert value(result, "pgbouncer_pools_client_waiting_connections", **POOL) == 1
        assert value(result, "pgbouncer_pools_client_maxwait_seconds", **POOL) >= 0
        assert states(result)["server_active"] == 1
        assert value(result, "db_pool_max_connections") == 1
    finally:
        await holder.close()
        if waiting is not None:
            await asyncio.wait_for(waiting, 30)  # it got the connection once the holder left

    after = await run_check(check(pgbouncer))
    assert states(after)["client_waiting"] == 0
    assert states(after)["client_active"] == 0


async def test_wrong_password_and_no_listener(pgbouncer: Bouncer) -> None:
    wrong = "wrong-pw-0x5f"
    result = await run_check(check(pgbouncer, dsn=pgbouncer.dsn(password=wrong)))
    assert not result.success
    assert "FATAL: SASL authentication failed" in (result.error or "")
    assert wrong not in (result.error or "")

    port = free_port()
    closed = await run_check(
        check(pgbouncer, dsn=f"postgresql://stats@127.0.0.1:{port}/pgbouncer", timeout="3s")
    )
    assert not closed.success
    assert (closed.error or "").startswith("connect: ")
    assert "Connection refused" in (closed.error or "")


async def test_pgbouncer_restart_is_survived(pgbouncer: Bouncer) -> None:
    async with running([check(pgbouncer, timeout="5s")]) as runner:
        (first,) = await runner.scrape(30)
        assert first.success, first.error
        pgbouncer.stop()
        (down,) = await runner.scrape(30)
        assert not down.success
        pgbouncer.start()
        (back,) = await runner.scrape(30)
        assert back.success, back.error
        # restarted between two scrapes: the stale connection is replaced at once
        pgbouncer.stop()
        pgbouncer.start()
        (again,) = await runner.scrape(30)
        assert again.success, again.error


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].dsn: required but missing"]),
        (
            {"dsn": "postgresql://stats@127.0.0.1:6432/app"},
            ['checks[0].dsn: connect to the admin console database "pgbouncer", got "app"'],
        ),
        (
            {"dsn": "postgresql://stats:pw-x@127.0.0.1:6432/pgbouncer?colour=blue"},
            ['checks[0].dsn: invalid connection string: invalid URI query parameter: "colour"'],
        ),
    ],
)
def test_bad_options(options: dict[str, Any], problems: list[str]) -> None:
    assert config_problems({"name": "b", "kind": "pgbouncer", **options}) == problems


def test_without_psycopg_the_config_validates_and_the_check_says_what_to_install() -> None:
    """psycopg hidden from the interpreter (an install without the extra): validating a
    config never needs a driver (bundle generate/check validate every profile), and the
    pgbouncer check fails at run time with a reason naming the extra."""
    script = (
        "import asyncio, sys\n"
        "sys.modules['psycopg'] = None  # import psycopg now raises ImportError\n"
        "from exporter.cli import run_once\n"
        "from exporter.config import load_data\n"
        "config = load_data({'checks': [{'name': 'b', 'kind': 'pgbouncer',\n"
        "                    'dsn': 'postgresql://s@127.0.0.1:6432/pgbouncer'}]}, 'x', {})\n"
        "(result,) = asyncio.run(run_once(config))\n"
        "print(result.success, result.error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "False the pgbouncer kind needs psycopg 3: pip install 'runbook-exporter[pgbouncer]'"
    )
