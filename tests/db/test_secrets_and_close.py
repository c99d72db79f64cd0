"""Review checks for the database kinds: failure reasons carry no secret (not even one the
runner would mask: ``<secret>`` in a reason means the kind leaked it), close() leaves no
connection behind after a failed and after a successful run (counted by the server), and
a database file that blocks on open does not pile up threads.

The mongodb tests use the wire-protocol peer (no MongoDB server on these registries).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from exporter.config import load_data
from exporter.redact import MASK, REDACTOR
from exporter.runner import CheckResult
from tests.db.conftest import Bouncer, PgCluster
from tests.db.mongo_peer import MongoPeer
from tests.leaks import ODD_PASSWORD, assert_clean, polled
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    run_checks,
    running,
    value,
)


async def run(check: dict[str, Any], env: dict[str, str]) -> CheckResult:
    (result,) = await run_checks([check], env=env)
    return result


# --- postgres --------------------------------------------------------------------------


@pytest.fixture
def odd_role(pg: PgCluster) -> str:
    role = f"mon_{uuid.uuid4().hex[:8]}"
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{ODD_PASSWORD}'; GRANT pg_monitor TO {role}")
    return role


async def test_postgres_odd_password_works_and_wrong_one_is_not_in_the_reason(
    pg: PgCluster, odd_role: str
) -> None:
    dsn = f"postgresql://{odd_role}:${{PW}}@127.0.0.1:{pg.port}/app"
    check = {"name": "pg", "kind": "postgres", "dsn": dsn, "timeout": "10s"}
    good = await run(check, {"PW": quote(ODD_PASSWORD, safe="")})
    assert good.success, good.error
    wrong = ODD_PASSWORD.replace("rd", "RD")
    bad = await run(check, {"PW": quote(wrong, safe="")})
    reason = assert_clean(bad, wrong, ODD_PASSWORD)
    assert reason == f'connect: password authentication failed for user "{odd_role}"'


async def test_postgres_unreachable_reason_has_no_password() -> None:
    port = free_port()
    check = {
        "name": "pg",
        "kind": "postgres",
        "timeout": "10s",
        "dsn": f"postgresql://monitor:${{PW}}@127.0.0.1:{port}/app",
    }
    reason = assert_clean(await run(check, {"PW": "Unreachable-Pw-9"}), "Unreachable-Pw-9")
    assert reason == "connect: connection refused"


def exporter_backends(pg: PgCluster) -> int:
    return int(
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook-exporter'")
    )


async def test_postgres_close_after_success_and_failure_leaves_no_backend(
    pg: PgCluster,
) -> None:
    good = {"name": "ok", "kind": "postgres", "dsn": pg.dsn(), "timeout": "10s"}
    failing = {
        **good,
        "name": "bad",
        "queries": [{"name": "q", "type": "value", "sql": "SELECT * FROM no_such_t"}],
    }
    assert exporter_backends(pg) == 0
    async with running([good, failing]) as runner:
        ok, bad = await runner.scrape(30)
        assert ok.success, ok.error
        # a failing query is its own signal; the connection it ran on stays open
        assert bad.success, bad.error
        assert value(bad, "db_query_success", query="q") == 0
        assert exporter_backends(pg) >= 2  # each probe keeps its pool between scrapes
    await async_wait_until(polled(lambda: exporter_backends(pg) == 0), 30, "exporter backends gone")


# --- pgbouncer -------------------------------------------------------------------------


async def test_pgbouncer_wrong_password_and_unreachable_reasons_have_no_password(
    pgbouncer: Bouncer,
) -> None:
    check = {
        "name": "b",
        "kind": "pgbouncer",
        "timeout": "10s",
        "dsn": f"postgresql://stats:${{PW}}@127.0.0.1:{pgbouncer.port}/pgbouncer",
    }
    wrong = "Wrong-Bouncer-Pw"
    reason = assert_clean(await run(check, {"PW": wrong}), wrong)
    assert "SASL authentication failed" in reason
    port = free_port()
    gone = {**check, "dsn": f"postgresql://stats:${{PW}}@127.0.0.1:{port}/pgbouncer"}
    reason = assert_clean(await run(gone, {"PW": wrong}), wrong)
    assert "Connection refused" in reason


def test_pgbouncer_bad_dsn_error_masks_the_token_libpq_quotes() -> None:
    dsn = "postgresql://stats:Bad%zzSecret@127.0.0.1:6432/pgbouncer"
    # libpq says 'invalid percent-encoded token: "Bad%zzSecret"': the password itself.
    assert config_problems({"name": "b", "kind": "pgbouncer", "dsn": dsn}) == [
        f'checks[0].dsn: invalid connection string: invalid percent-encoded token: "{MASK}"'
    ]


async def admin_clients(bouncer: Bouncer) -> int:
    """Clients of the admin console besides the one asking."""
    async with await psycopg.AsyncConnection.connect(bouncer.dsn(), autocommit=True) as conn:
        cursor = await conn.execute("SHOW CLIENTS")
        columns = [c.name for c in cursor.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
    return sum(1 for row in rows if row["database"] == "pgbouncer") - 1


async def test_pgbouncer_close_after_success_and_failure_leaves_no_client(
    pgbouncer: Bouncer,
) -> None:
    good = {"name": "ok", "kind": "pgbouncer", "dsn": pgbouncer.dsn(), "timeout": "10s"}
    async with running([good]) as runner:
        (ok,) = await runner.scrape(30)
        assert ok.success, ok.error
        assert await admin_clients(pgbouncer) == 1  # kept between scrapes

    async def closed() -> bool:
        return await admin_clients(pgbouncer) == 0

    await async_wait_until(closed, 30, "pgbouncer client closed")

    # A failed run (the console stopped answering: PgBouncer restarted on another
    # config would be the same) leaves nothing either once closed.
    async with running([good]) as runner:
        (ok,) = await runner.scrape(30)
        assert ok.success, ok.error
        pgbouncer.stop()
        (down,) = await runner.scrape(30)
        assert not down.success
        pgbouncer.start()
    assert await admin_clients(pgbouncer) == 0


# --- mongodb ---------------------------------------------------------------------------


async def test_mongodb_unreachable_reason_has_no_password() -> None:
    port = free_port()
    # 2s: short enough that the driver must give up before the runner's timeout does.
    check = {
        "name": "m",
        "kind": "mongodb",
        "timeout": "2s",
        "url": f"mongodb://monitor:${{PW}}@127.0.0.1:{port}/faces?directConnection=true",
    }
    reason = assert_clean(await run(check, {"PW": quote(ODD_PASSWORD, safe="")}), ODD_PASSWORD)
    # "no server reachable: <address>: " is the exporter's; the rest is pymongo's and asyncio's.
    assert reason.startswith(f"no server reachable: 127.0.0.1:{port}: "), reason


async def test_mongodb_close_after_success_and_failure_leaves_no_connection(
    peer: MongoPeer,
) -> None:
    url = f"mongodb://127.0.0.1:{peer.port}/faces?directConnection=true"
    good = {"name": "ok", "kind": "mongodb", "url": url, "timeout": "5s"}
    failing = {
        **good,
        "name": "bad",
        "freshness": [{"name": "f", "collection": "none", "field": "at"}],
    }
    async with running([good, failing]) as runner:
        ok, bad = await runner.scrape(30)
        assert ok.success, ok.error
        assert bad.success, bad.error
        assert value(bad, "db_query_success", query="f") == 0
        assert peer.current_connections >= 2
    await async_wait_until(
        polled(lambda: peer.current_connections == 0), 30, "mongo connections closed"
    )


# --- sqlite ----------------------------------------------------------------------------


def open_fds_to(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(path))
    return count


async def test_sqlite_holds_no_file_open_after_success_or_failure(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "engine.sqlite"
    sqlite3.connect(db).close()
    good = {"name": "ok", "kind": "sqlite", "path": str(db)}
    failing = {
        **good,
        "name": "bad",
        "queries": [{"name": "q", "type": "value", "sql": "SELECT * FROM missing"}],
    }
    ok, bad = await run_checks([good, failing])
    assert ok.success, ok.error
    assert bad.success, bad.error
    assert value(bad, "db_query_success", query="q") == 0
    assert open_fds_to(db) == 0


async def test_sqlite_file_that_blocks_on_open_is_not_opened_again(tmp_path: Path) -> None:
    """A FIFO at the database path blocks open() like a hung network mount does; each
    scrape used to start another thread stuck in open()."""
    fifo = tmp_path / "engine.sqlite"
    os.mkfifo(fifo)
    check = {"name": "db", "kind": "sqlite", "path": str(fifo), "timeout": "1s"}
    stuck_before = threading.active_count()
    try:
        async with running([check]) as runner:
            (first,) = await runner.scrape(30)
            assert (first.error or "").startswith("timed out after")
            for _ in range(3):
                (again,) = await runner.scrape(30)
                assert (again.error or "").startswith(f"open {fifo}: still blocked in the call")
            assert threading.active_count() <= stuck_before + 1
    finally:
        # Release the thread: a writer opening the FIFO completes the reader's open().
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_mongodb_decoded_password_is_masked_too() -> None:
    # The URL holds the percent-encoded form; the driver sends (and could quote) the
    # decoded one, which must be masked as well.
    password = "Dec0ded/Pw@x"
    url = f"mongodb://monitor:{quote(password, safe='')}@127.0.0.1:27017/faces"
    load_data({"checks": [{"name": "m", "kind": "mongodb", "url": url}]}, "<test>", {})
    assert REDACTOR.redact(f"auth with {password} failed") == f"auth with {MASK} failed"


def test_process_exits_while_a_database_open_still_hangs(tmp_path: Path) -> None:
    """asyncio.run waits for the default executor's threads at exit: a call stuck there
    kept the exporter from stopping (until systemd's kill). It runs in a daemon thread."""
    fifo = tmp_path / "engine.sqlite"
    os.mkfifo(fifo)
    check = {"name": "db", "kind": "sqlite", "path": str(fifo), "timeout": "1s"}
    script = (
        "import asyncio\n"
        "from exporter.config import load_data\n"
        "from exporter.runner import Runner\n"
        "async def main():\n"
        "    runner = Runner()\n"
        f"    await runner.apply(load_data({{'checks': [{check!r}]}}, '<t>', {{}}))\n"
        "    (result,) = await runner.scrape(30)\n"
        "    print(result.error)\n"
        "    await runner.close()\n"
        "asyncio.run(main())\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("timed out after"), done.stdout
