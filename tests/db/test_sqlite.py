"""The sqlite kind against real SQLite files: plain, WAL, locked by another process, broken."""
# ruff: noqa: S608, ASYNC240 - SQL is test data; tests inspect files synchronously on purpose

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.db.conftest import query_failures
from tests.support import config_problems, run_check, value, values

NEWEST = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)


def make_db(path: Path, *, wal: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.executescript(
        "CREATE TABLE events (source TEXT, ingested_at TEXT, epoch_ms INTEGER, bytes REAL);"
        "INSERT INTO events VALUES ('gps', '2026-03-01 10:00:00', 1772359200000, 10);"
        f"INSERT INTO events VALUES ('gps', '{NEWEST:%Y-%m-%d %H:%M:%S}', "
        f"{int(NEWEST.timestamp() * 1000)}, 20.5);"
        "INSERT INTO events VALUES ('can', '2026-03-01T09:00:00Z', 1772355600000, 3);"
    )
    return conn


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "engine.sqlite"
    make_db(path).close()
    return path


def check(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "lite", "kind": "sqlite", "path": str(path), "timeout": "5s", **extra}


QUERIES = [
    {"name": "ingest", "type": "freshness", "sql": "SELECT max(ingested_at) FROM events"},
    {
        "name": "by_source",
        "type": "freshness",
        "labels": ["source"],
        "sql": "SELECT source, max(epoch_ms) FROM events GROUP BY source",
    },
    {
        "name": "volume",
        "type": "value",
        "labels": ["source"],
        "sql": "SELECT source, count(*) AS events, sum(bytes) AS bytes FROM events GROUP BY 1",
    },
]


async def test_plain_file_sizes_pages_and_queries_without_writing(db: Path) -> None:
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    mtime = db.stat().st_mtime_ns
    result = await run_check(check(db, queries=QUERIES))
    assert result.success, result.error
    assert value(result, "sqlite_database_size_bytes") == db.stat().st_size
    assert value(result, "sqlite_wal_size_bytes") == 0
    with sqlite3.connect(db) as conn:
        page_count, free, page_size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
    conn.close()
    assert value(result, "sqlite_pages") == page_count
    assert value(result, "sqlite_free_pages") == free
    assert value(result, "sqlite_page_size_bytes") == page_size
    assert value(result, "db_ping_duration_seconds") > 0
    assert value(result, "freshness_timestamp_seconds", item="ingest") == NEWEST.timestamp()
    assert value(result, "freshness_timestamp_seconds", item="by_source/gps") == NEWEST.timestamp()
    assert (
        value(result, "freshness_timestamp_seconds", item="by_source/can")
        == datetime(2026, 3, 1, 9, tzinfo=UTC).timestamp()
    )
    assert values(result, "db_query_value") == {
        (("query", "volume"), ("column", "events"), ("label", "can")): 1,
        (("query", "volume"), ("column", "bytes"), ("label", "can")): 3,
        (("query", "volume"), ("column", "events"), ("label", "gps")): 2,
        (("query", "volume"), ("column", "bytes"), ("label", "gps")): 30.5,
    }
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert db.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in db.parent.iterdir()) == ["engine.sqlite"]


async def test_writes_are_refused_and_bad_queries_fail_only_themselves(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    result = await run_check(
        check(
            db,
            queries=[
                {"name": "write", "type": "value", "sql": "DELETE FROM events RETURNING 1"},
                {"name": "missing", "type": "value", "sql": "SELECT count(*) FROM nope"},
                {"name": "text", "type": "value", "sql": "SELECT source FROM events LIMIT 1"},
                {"name": "bad_time", "type": "freshness", "sql": "SELECT 'yesterday'"},
                {
                    "name": "too_many",
                    "type": "value",
                    "labels": ["rowid"],
                    "max_rows": 2,
                    "sql": "SELECT rowid, bytes FROM events",
                },
                {"name": "ok", "type": "value", "sql": "SELECT count(*) AS n FROM events"},
            ],
        )
    )
    assert result.success, result.error  # the file is readable: only the queries failed
    assert query_failures(caplog) == {
        "write": "attempt to write a readonly database",
        "missing": "no such table: nope",
        "text": "column source is str, expected a number",
        "bad_time": 'expected an ISO 8601 time or epoch seconds, got "yesterday"',
        "too_many": "returned 3 rows, more than max_rows 2",
    }
    assert value(result, "db_query_value", query="ok", column="n", label="") == 3
    assert {dict(k)["query"]: v for k, v in values(result, "db_query_success").items()} == {
        "write": 0,
        "missing": 0,
        "text": 0,
        "bad_time": 0,
        "too_many": 0,
        "ok": 1,
    }
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    conn.close()


async def test_runaway_query_is_interrupted_before_the_check_timeout(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    result = await run_check(
        check(
            db,
            timeout="4s",
            queries=[
                {"name": "endless", "type": "value", "sql": endless},
            ],
        )
    )
    assert result.success, result.error
    assert value(result, "db_query_success", query="endless") == 0
    assert query_failures(caplog) == {"endless": "interrupted: the check timeout was near"}
    assert value(result, "sqlite_pages") > 0


async def test_wal_database_is_read_while_a_writer_keeps_it_open(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite"
    writer = make_db(path, wal=True)
    try:
        writer.execute("INSERT INTO events VALUES ('new', '2026-04-01 00:00:00', 0, 1)")
        wal_size = (tmp_path / "wal.sqlite-wal").stat().st_size
        assert wal_size > 0
        result = await run_check(check(path, queries=QUERIES))
        assert result.success, result.error
        assert value(result, "sqlite_wal_size_bytes") == wal_size
        assert (
            value(result, "freshness_timestamp_seconds", item="ingest")
            == datetime(2026, 4, 1, tzinfo=UTC).timestamp()
        )
        # the writer is not blocked by the exporter having read
        writer.execute("INSERT INTO events VALUES ('more', '2026-04-02 00:00:00', 0, 1)")
    finally:
        writer.close()


async def test_closed_wal_database_is_read_without_creating_wal_or_shm(tmp_path: Path) -> None:
    """A read-only SQLite connection would create -wal/-shm owned by the exporter's user."""
    path = tmp_path / "wal.sqlite"
    make_db(path, wal=True).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wal.sqlite"]
    result = await run_check(check(path, queries=QUERIES))
    assert result.success, result.error
    assert value(result, "freshness_timestamp_seconds", item="ingest") == NEWEST.timestamp()
    assert value(result, "sqlite_wal_size_bytes") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wal.sqlite"]


@pytest.fixture
def exclusively_locked(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding BEGIN EXCLUSIVE on ``db`` (rollback-journal mode)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    yield holder
    holder.stdin.close()
    holder.wait(30)
    holder.stdout.close()


async def test_exclusively_locked_file_fails_then_recovers(
    db: Path, exclusively_locked: subprocess.Popen[str]
) -> None:
    result = await run_check(check(db, busy_timeout="200ms"))
    assert not result.success
    assert result.error == "database is locked (another process held a lock for over 0.2s)"
    assert exclusively_locked.stdin is not None
    exclusively_locked.stdin.close()
    exclusively_locked.wait(30)
    again = await run_check(check(db))
    assert again.success, again.error


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("these are not the pages you are looking for\n" * 200)
    result = await run_check(check(path))
    assert not result.success
    assert result.error == f"{path}: file is not an SQLite database"


async def test_missing_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "gone.sqlite"
    result = await run_check(check(path))
    assert not result.success
    assert result.error == f"{path}: no such file"
    assert not path.exists()


# Root reads files whatever their mode (CI runs as root): the check then runs in a child
# without the capabilities that override file permissions.
NO_DAC_OVERRIDE = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-dac_override,-dac_read_search",
    "--",
]


def test_permission_denied(db: Path) -> None:
    script = (
        "import asyncio\nfrom tests.support import run_check\n"
        f"result = asyncio.run(run_check({check(db)!r}))\n"
        "print(result.success, result.error)\n"
    )
    db.chmod(0)
    try:
        done = subprocess.run(
            [*(NO_DAC_OVERRIDE if os.geteuid() == 0 else []), sys.executable, "-c", script],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        db.chmod(0o644)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"False {db}: permission denied"


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].path: required but missing"]),
        (
            {"path": "/x.db", "busy_timeout": "soon", "queries": [{"name": "q", "sql": "x"}]},
            [
                'checks[0].busy_timeout: expected a duration such as 5s, got "soon"',
                "checks[0].queries[0].type: required but missing",
            ],
        ),
    ],
)
def test_bad_options(options: dict[str, Any], problems: list[str]) -> None:
    assert config_problems({"name": "lite", "kind": "sqlite", **options}) == problems
