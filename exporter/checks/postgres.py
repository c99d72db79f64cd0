"""``postgres``: server connections by state, availability, version, named queries.

Read-only towards the server: every statement runs in a ``READ ONLY`` transaction with
``SET LOCAL statement_timeout`` below the check timeout, so a slow query is cancelled by
the server itself rather than abandoned on the wire.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.alerting import (
    POOL_PANEL,
    QUERY_FAILING,
    QUERY_SUCCESS_PANEL,
    QUERY_VALUE,
    DefaultAlert,
    TestInput,
    down,
    pool_near_max,
    stale,
)
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
    BaseProbe,
    CheckFailed,
    CheckSpec,
    ConnectionLost,
    Kind,
    driver_timeout,
    once_more_if_kept,
)
from exporter.families import DB_POOL_CONNECTIONS, DB_POOL_MAX_CONNECTIONS
from exporter.fields import Reader
from exporter.samples import Family, Sink

if TYPE_CHECKING:  # asyncpg is imported where a probe uses it (docs/architecture.md)
    import asyncpg

VERSION_INFO = Family(
    "postgres_server_version_info",
    "gauge",
    "Always 1; the version label is the server's server_version.",
    ("version",),
)
IN_RECOVERY = Family(
    "postgres_in_recovery",
    "gauge",
    "1 when the server is a standby replaying WAL (pg_is_in_recovery), else 0.",
)

# pg_stat_activity.state values as label values without spaces; "waiting" (on a lock)
# is taken out of "active" so that the states add up to the client connections.
STATES = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
    "fastpath function call": "fastpath_function_call",
    "disabled": "disabled",
    "waiting": "waiting",
    "unknown": "unknown",  # state is NULL for other users' sessions without pg_monitor
}
ALWAYS_REPORTED = (
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "waiting",
)

CONNECTIONS_SQL = """
SELECT CASE WHEN wait_event_type = 'Lock' THEN 'waiting' ELSE coalesce(state, 'unknown') END,
       count(*)::int
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1
"""
SERVER_SQL = """
SELECT current_setting('server_version'),
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int
         - coalesce(current_setting('reserved_connections', true)::int, 0),
       pg_is_in_recovery()
"""

MIN_STATEMENT_MS = 10


@dataclass(frozen=True)
class PostgresOptions:
    dsn: str
    queries: tuple[NamedQuery, ...]


def parse(reader: Reader) -> PostgresOptions:
    dsn = reader.url("dsn", ("postgresql", "postgres"))
    return PostgresOptions(dsn=dsn, queries=parse_queries(reader))


class PostgresProbe(BaseProbe[PostgresOptions]):
    def __init__(self, spec: CheckSpec[PostgresOptions]) -> None:
        super().__init__(spec)
        self._pool: asyncpg.Pool | None = None
        self._query_log = QueryLog(spec.name, spec.kind)

    async def collect(self, out: Sink) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + driver_timeout(self.spec.timeout)
        written = len(out.samples)
        try:
            await once_more_if_kept(
                lambda: self._collect_once(out, deadline),
                kept=self._pool is not None,
                drop=self._drop_pool,
                repeatable=lambda _: len(out.samples) == written,
            )
        except ConnectionLost as lost:
            raise CheckFailed(f"connection lost: {lost}") from None

    async def _collect_once(self, out: Sink, deadline: float) -> None:
        import asyncpg

        pool = await self._connect()
        try:
            async with pool.acquire() as conn:
                await self._server_stats(conn, out, deadline)
                failures = await run_queries(
                    self.options.queries,
                    lambda query: self._execute(conn, query.sql, deadline),
                    out,
                )
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            raise ConnectionLost(error_reason(exc)) from None
        self._query_log.report(failures)

    async def _connect(self) -> asyncpg.Pool:
        import asyncpg

        if self._pool is not None:
            return self._pool
        try:
            pool = await asyncpg.create_pool(
                self.options.dsn,
                min_size=1,
                max_size=2,
                timeout=driver_timeout(self.spec.timeout),
                server_settings={"application_name": "runbook-exporter"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise CheckFailed(f"connect: {error_reason(exc)}") from None
        self._pool = pool
        return pool

    async def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def _server_stats(self, conn: Any, out: Sink, deadline: float) -> None:
        import asyncpg

        try:
            async with conn.transaction(readonly=True):
                await self._limit(conn, deadline)
                started = time.perf_counter()
                await conn.fetchval("SELECT 1")
                out.add(DB_PING_SECONDS, time.perf_counter() - started)
                version, max_connections, in_recovery = await conn.fetchrow(SERVER_SQL)
                by_state = dict.fromkeys(ALWAYS_REPORTED, 0)
                for state, count in await conn.fetch(CONNECTIONS_SQL):
                    label = STATES.get(state, "unknown")
                    by_state[label] = by_state.get(label, 0) + count
        except asyncpg.PostgresError as exc:
            if conn.is_closed() or isinstance(exc, asyncpg.PostgresConnectionError):
                raise ConnectionLost(error_reason(exc)) from None
            raise CheckFailed(f"reading server statistics: {error_reason(exc)}") from None
        except QueryFailed as exc:
            raise CheckFailed(f"reading server statistics: {exc}") from None
        out.add(VERSION_INFO, 1, version=str(version))
        out.add(IN_RECOVERY, 1 if in_recovery else 0)
        out.add(DB_POOL_MAX_CONNECTIONS, max_connections)
        for state, count in by_state.items():
            out.add(DB_POOL_CONNECTIONS, count, state=state)

    async def _limit(self, conn: Any, deadline: float) -> int:
        """``SET LOCAL statement_timeout`` to the time left; fails the query when none is."""
        left_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
        if left_ms < MIN_STATEMENT_MS:
            raise QueryFailed("not started: the check timeout is used up by earlier queries")
        # An integer we computed, not user text: safe to format into the statement.
        await conn.execute(f"SET LOCAL statement_timeout = {left_ms}")
        return left_ms

    async def _execute(self, conn: Any, sql: str, deadline: float) -> tuple[list[str], list[Any]]:
        import asyncpg

        limit_ms = 0
        try:
            async with conn.transaction(readonly=True):
                limit_ms = await self._limit(conn, deadline)
                statement = await conn.prepare(sql)
                columns = [attribute.name for attribute in statement.get_attributes()]
                rows = await statement.fetch()
        except asyncpg.QueryCanceledError:
            raise QueryFailed(f"cancelled by statement_timeout ({limit_ms}ms)") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            if conn.is_closed() or isinstance(exc, asyncpg.PostgresConnectionError):
                raise ConnectionLost(error_reason(exc)) from None
            raise QueryFailed(error_reason(exc)) from None
        return columns, list(rows)

    async def close(self) -> None:
        import asyncpg

        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), 3.0)
        except (TimeoutError, OSError, asyncpg.InterfaceError):
            pool.terminate()


KIND = Kind(
    name="postgres",
    summary="PostgreSQL connections by state vs max_connections, version, named queries.",
    parse=parse,
    probe=PostgresProbe,
    families=(
        DB_POOL_CONNECTIONS,
        DB_POOL_MAX_CONNECTIONS,
        DB_PING_SECONDS,
        VERSION_INFO,
        IN_RECOVERY,
        *QUERY_FAMILIES,
    ),
    target="dsn",
    alerts=(
        down(
            "PostgreSQL",
            60.0,
            (
                "pg_isready -h HOST -p PORT; check the server process and its log.",
                "A refused password or a missing role shows in the reason on the status page.",
            ),
        ),
        pool_near_max("PostgreSQL"),
        DefaultAlert(
            key="clients_waiting",
            name="LockWaits",
            query='db_pool_connections{$sel,state="waiting"}',
            op=">",
            threshold=0,
            unit="count",
            for_=300.0,
            severity="warning",
            summary="{value} sessions of {{ $labels.check }} have waited on a lock for 5 minutes",
            description="Sessions block on locks: a long transaction or a migration holds them.",
            steps=(
                "SELECT pid, pg_blocking_pids(pid), state, query FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock';",
                "End the blocking transaction when it is safe to.",
            ),
            reads='db_pool_connections{$sel,state="waiting"}',
            test=(
                TestInput(
                    'db_pool_connections{$sel,state="waiting"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("state", "waiting"),),
        ),
        DefaultAlert(
            key="connections",
            name="Connections",
            query=(
                "sum without (state) "
                '(db_pool_connections{$sel,state=~"active|idle|idle_in_transaction"})'
            ),
            op=">",
            # An application pool's size ("pg Pool with 20 connections") is the config's
            # to give; the server's own maximum is pool_near_max's.
            threshold=None,
            unit="count",
            for_=600.0,
            severity="warning",
            summary="{{ $labels.check }} has {value} client connections (more than {threshold})",
            description=(
                "More sessions than the application's pool holds: another instance, a "
                "leak, or time for a connection pooler."
            ),
            steps=(
                "SELECT application_name, client_addr, state, count(*) FROM pg_stat_activity "
                "GROUP BY 1, 2, 3 ORDER BY 4 DESC;",
            ),
            reads='db_pool_connections{$sel,state="active"}',
            test=(
                TestInput(
                    'db_pool_connections{$sel,state="active"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
        ),
        QUERY_FAILING,
        QUERY_VALUE,
        stale("query", 3600.0, from_queries=True),
    ),
    panels=(
        POOL_PANEL,
        QUERY_SUCCESS_PANEL,
    ),
)
