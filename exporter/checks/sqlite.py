"""``sqlite``: opens a database file read-only, reports size, WAL size, pages, named queries.

The file is opened as ``file:<path>?mode=ro`` with ``PRAGMA query_only``, so the exporter
can never create, change or lock it for writing. A fresh connection per run: no lock or
file handle is held between scrapes, and a file replaced by a restore is seen at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from exporter.alerting import QUERY_FAILING, QUERY_SUCCESS_PANEL, QUERY_VALUE, Panel, down, stale
from exporter.checks._blocking import OffLoop
from exporter.checks._net import error_reason
from exporter.checks._queries import (
    DB_PING_SECONDS,
    QUERY_FAMILIES,
    NamedQuery,
    QueryFailed,
    QueryLog,
    parse_queries,
    run_queries,
)
from exporter.checks.base import (
    WAIT_SHARE,
    BaseProbe,
    CheckFailed,
    CheckSpec,
    Kind,
    driver_timeout,
)
from exporter.fields import Reader
from exporter.samples import Family, Sink

if TYPE_CHECKING:  # aiosqlite is imported where a probe uses it (docs/architecture.md)
    import aiosqlite

DATABASE_BYTES = Family("sqlite_database_size_bytes", "gauge", "Size of the database file.")
WAL_BYTES = Family("sqlite_wal_size_bytes", "gauge", "Size of the -wal file; 0 when there is none.")
PAGES = Family("sqlite_pages", "gauge", "Pages in the database (PRAGMA page_count).")
FREE_PAGES = Family(
    "sqlite_free_pages", "gauge", "Unused pages on the freelist (PRAGMA freelist_count)."
)
PAGE_BYTES = Family("sqlite_page_size_bytes", "gauge", "Page size (PRAGMA page_size).")

DEFAULT_BUSY_TIMEOUT = 1.0
_PROGRESS_STEPS = 1000  # SQLite VM steps between deadline checks


@dataclass(frozen=True)
class SqliteOptions:
    path: str
    busy_timeout: float
    queries: tuple[NamedQuery, ...]


def parse(reader: Reader) -> SqliteOptions:
    path = reader.str("path")
    busy_timeout = reader.duration("busy_timeout", DEFAULT_BUSY_TIMEOUT)
    return SqliteOptions(path=path, busy_timeout=busy_timeout, queries=parse_queries(reader))


@dataclass(frozen=True)
class _FileState:
    database_bytes: int
    wal_bytes: int
    wal_mode: bool  # header bytes 18-19 say WAL
    shm_exists: bool


def _file_state(path: str) -> _FileState:
    """Sizes and journal mode; raises :class:`CheckFailed` when the file cannot be read."""
    try:
        size = os.stat(path).st_size
        # Opening tells "permission denied" apart from "missing" before SQLite's
        # catch-all "unable to open database file".
        with open(path, "rb") as file:
            header = file.read(20)
    except FileNotFoundError:
        raise CheckFailed(f"{path}: no such file") from None
    except PermissionError:
        raise CheckFailed(f"{path}: permission denied") from None
    except OSError as exc:
        raise CheckFailed(f"{path}: {exc.strerror or exc}") from None
    try:
        wal = os.stat(path + "-wal").st_size
    except OSError:
        wal = 0
    return _FileState(
        database_bytes=size,
        wal_bytes=wal,
        wal_mode=header.startswith(b"SQLite format 3\0") and header[18:20] == b"\x02\x02",
        shm_exists=os.path.exists(path + "-shm"),
    )


class SqliteProbe(BaseProbe[SqliteOptions]):
    def __init__(self, spec: CheckSpec[SqliteOptions]) -> None:
        super().__init__(spec)
        self._query_log = QueryLog(spec.name, spec.kind)
        self._path = os.path.abspath(spec.options.path)
        self._uri = f"file:{quote(self._path)}?mode=ro"
        # SQLite's busy handler sleeps outside the progress handler's reach: keep it
        # well inside the check timeout.
        self._busy = min(spec.options.busy_timeout, spec.timeout * WAIT_SHARE)
        self._off_loop = OffLoop(f"open {self._path}")

    def _reason(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return f"database is locked (another process held a lock for over {self._busy:g}s)"
        if "not a database" in text:
            return f"{self._path}: file is not an SQLite database"
        if text == "interrupted":
            return "interrupted: the check timeout was near"
        return error_reason(exc)

    async def collect(self, out: Sink) -> None:
        import aiosqlite

        state = await self._off_loop.run(_file_state, self._path)
        uri = self._uri
        if state.wal_mode and not state.shm_exists:
            # A WAL database nobody has open: even a read-only SQLite connection would
            # create -wal and -shm owned by the exporter's user, which can lock the
            # engine out of its own database. Read the quiescent file as immutable.
            uri += "&immutable=1"
        deadline = time.monotonic() + driver_timeout(self.spec.timeout)
        started = time.perf_counter()
        try:
            conn = await aiosqlite.connect(
                uri,
                uri=True,
                timeout=self._busy,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise CheckFailed(f"open: {self._reason(exc)}") from None
        try:
            await conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
            try:
                await conn.execute("PRAGMA query_only = 1")
                await conn.execute("SELECT 1")
                # Reading the schema takes a shared lock and checks the header: the
                # cheapest statement that fails on a locked or foreign file.
                await conn.execute("SELECT count(*) FROM sqlite_master")
                ping = time.perf_counter() - started
                pages = await self._pragma(conn, "page_count")
                free_pages = await self._pragma(conn, "freelist_count")
                page_bytes = await self._pragma(conn, "page_size")
            except sqlite3.Error as exc:
                raise CheckFailed(self._reason(exc)) from None
            out.add(DB_PING_SECONDS, ping)
            out.add(DATABASE_BYTES, state.database_bytes)
            out.add(WAL_BYTES, state.wal_bytes)
            out.add(PAGES, pages)
            out.add(FREE_PAGES, free_pages)
            out.add(PAGE_BYTES, page_bytes)
            failures = await run_queries(
                self.options.queries, lambda query: self._execute(conn, query), out
            )
        finally:
            await conn.close()
        self._query_log.report(failures)

    async def _pragma(self, conn: aiosqlite.Connection, name: str) -> int:
        async with conn.execute(f"PRAGMA {name}") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def _execute(
        self, conn: aiosqlite.Connection, query: NamedQuery
    ) -> tuple[list[str], list[Any]]:
        try:
            async with conn.execute(query.sql) as cursor:
                columns = [d[0] for d in cursor.description or ()]
                # one row more than allowed is enough to report "too many"
                rows = await cursor.fetchmany(query.max_rows + 1)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CheckFailed(self._reason(exc)) from None  # the next query would wait too
            raise QueryFailed(self._reason(exc)) from None
        except (sqlite3.Error, ValueError) as exc:
            raise QueryFailed(
                self._reason(exc) if isinstance(exc, sqlite3.Error) else str(exc)
            ) from None
        return columns, list(rows)


KIND = Kind(
    name="sqlite",
    summary="SQLite file opened read-only: opens and answers, size, WAL size, named queries.",
    parse=parse,
    probe=SqliteProbe,
    families=(
        DB_PING_SECONDS,
        DATABASE_BYTES,
        WAL_BYTES,
        PAGES,
        FREE_PAGES,
        PAGE_BYTES,
        *QUERY_FAMILIES,
    ),
    target="path",
    alerts=(
        down(
            "SQLite database",
            300.0,
            (
                "ls -l the file: does it exist, is it readable by the exporter's user?",
                "sqlite3 FILE 'PRAGMA quick_check' on a copy when the file may be corrupt.",
            ),
            name="Unreadable",
            state="unreadable (cannot open or read the file)",
        ),
        QUERY_FAILING,
        QUERY_VALUE,
        stale("query", 3600.0, from_queries=True),
    ),
    panels=(
        Panel("Database size", 'sqlite_database_size_bytes{check=~"$check"}', "bytes"),
        QUERY_SUCCESS_PANEL,
    ),
)
