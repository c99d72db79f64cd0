"""``pgbouncer``: ``SHOW POOLS`` of PgBouncer's admin console, per database/user and summed.

asyncpg cannot read the admin console's rows (it answers the simple query protocol
only), so this kind alone uses psycopg 3: imported lazily, so the exporter runs without
the ``pgbouncer`` extra as long as no check uses this kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from exporter.alerting import POOL_PANEL, DefaultAlert, Panel, TestInput, down, pool_near_max
from exporter.checks._net import error_reason
from exporter.checks._queries import DB_PING_SECONDS
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
from exporter.redact import REDACTOR
from exporter.samples import Family, Sink

ADMIN_DATABASE = "pgbouncer"
POOL_LABELS = ("database", "user")


def _pool_family(name: str, help_text: str) -> Family:
    return Family(f"pgbouncer_pools_{name}", "gauge", help_text, POOL_LABELS)


# SHOW POOLS column -> (db_pool_connections state, raw per-pool family)
POOL_COLUMNS = {
    "cl_active": (
        "client_active",
        _pool_family("client_active_connections", "Clients linked to a server connection or idle."),
    ),
    "cl_waiting": (
        "client_waiting",
        _pool_family(
            "client_waiting_connections", "Clients that sent a query and wait for a server."
        ),
    ),
    "sv_active": (
        "server_active",
        _pool_family("server_active_connections", "Server connections linked to a client."),
    ),
    "sv_idle": (
        "server_idle",
        _pool_family(
            "server_idle_connections", "Server connections unused and ready for a client."
        ),
    ),
    "sv_used": (
        "server_used",
        _pool_family(
            "server_used_connections", "Server connections idle longer than server_check_delay."
        ),
    ),
    "sv_tested": (
        "server_tested",
        _pool_family(
            "server_tested_connections", "Server connections running server_reset/check_query."
        ),
    ),
    "sv_login": (
        "server_login",
        _pool_family("server_login_connections", "Server connections logging in."),
    ),
}
MAXWAIT = _pool_family(
    "client_maxwait_seconds", "How long the oldest waiting client of the pool has waited."
)
POOL_SIZE = _pool_family("pool_size", "Server connections the pool opens at most (pool_size).")
VERSION_INFO = Family(
    "pgbouncer_version_info", "gauge", "Always 1; the version label is PgBouncer's.", ("version",)
)
EXTRA_HINT = "pip install 'runbook-exporter[pgbouncer]'"


@dataclass(frozen=True)
class PgbouncerOptions:
    dsn: str


def parse(reader: Reader) -> PgbouncerOptions:
    dsn = reader.url("dsn", ("postgresql", "postgres"))
    if dsn:
        try:
            database = urlsplit(dsn).path.lstrip("/")
        except ValueError:
            database = ADMIN_DATABASE  # reader.url reported it
        if database != ADMIN_DATABASE:
            reader.error(
                "dsn", f'connect to the admin console database "{ADMIN_DATABASE}", got "{database}"'
            )
        problem = _libpq_problem(dsn)
        if problem is not None:
            reader.error("dsn", f"invalid connection string: {problem}")
    return PgbouncerOptions(dsn=dsn)


def _libpq_problem(dsn: str) -> str | None:
    """What libpq's own parser finds wrong with ``dsn`` (unknown parameters, bad quoting).

    Validation never needs the driver (bundle generate/check run without the extra):
    without psycopg this says nothing and the check fails at run time, naming the extra
    to install. With it, the string is checked now, as the connection would later.
    """
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        conninfo_to_dict(dsn)
    except Error as exc:
        # libpq quotes the offending token, which may be the password itself
        # ("invalid percent-encoded token"); config errors are not redacted later.
        return REDACTOR.redact(error_reason(exc))
    return None


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


class PgbouncerProbe(BaseProbe[PgbouncerOptions]):
    def __init__(self, spec: CheckSpec[PgbouncerOptions]) -> None:
        super().__init__(spec)
        self._conn: Any = None  # psycopg.AsyncConnection, imported lazily

    async def collect(self, out: Sink) -> None:
        try:
            rows = await once_more_if_kept(
                self._read, kept=self._conn is not None, drop=self._discard
            )
        except ConnectionLost as lost:
            raise CheckFailed(f"connection lost: {lost}") from None
        self._write(out, *rows)

    async def _read(self) -> tuple[float, str, list[dict[str, Any]], list[dict[str, Any]]]:
        try:
            import psycopg  # the optional extra: imported by this kind only, when used
        except ImportError:
            raise CheckFailed(f"the pgbouncer kind needs psycopg 3: {EXTRA_HINT}") from None

        try:
            conn = await self._connect()
            started = time.perf_counter()
            version_rows = await self._show(conn, "VERSION")
            ping = time.perf_counter() - started
            pools = await self._show(conn, "POOLS")
            databases = await self._show(conn, "DATABASES")
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            raise ConnectionLost(error_reason(exc)) from None
        except psycopg.Error as exc:
            raise CheckFailed(error_reason(exc)) from None
        except asyncio.CancelledError:
            await self._discard()  # cancelled mid-command: the connection's state is unknown
            raise
        version = str(version_rows[0].get("version", "")) if version_rows else ""
        return ping, version.removeprefix("PgBouncer ").strip(), pools, databases

    async def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        import psycopg

        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self.options.dsn,
                autocommit=True,  # the admin console knows no transactions
                prepare_threshold=None,  # nor prepared statements
                # libpq takes whole seconds and treats less than 2 as 2.
                connect_timeout=max(2, int(driver_timeout(self.spec.timeout))),
            )
        except (psycopg.Error, OSError) as exc:
            raise CheckFailed(f"connect: {error_reason(exc)}") from None
        return self._conn

    @staticmethod
    async def _show(conn: Any, what: str) -> list[dict[str, Any]]:
        # No parameters: psycopg sends it with the simple query protocol, the only one
        # the admin console answers.
        cursor = await conn.execute(f"SHOW {what}")
        columns = [column.name for column in cursor.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]

    def _write(
        self,
        out: Sink,
        ping: float,
        version: str,
        pools: Sequence[dict[str, Any]],
        databases: Sequence[dict[str, Any]],
    ) -> None:
        pool_size = {str(db.get("name")): _int(db.get("pool_size")) for db in databases}
        totals = {state: 0 for state, _ in POOL_COLUMNS.values()}
        max_connections = 0
        out.add(DB_PING_SECONDS, ping)
        out.add(VERSION_INFO, 1, version=version)
        for pool in pools:
            database, user = str(pool.get("database")), str(pool.get("user"))
            if database == ADMIN_DATABASE:
                continue  # the console's own clients, ourselves included
            labels = {"database": database, "user": user}
            for column, (state, family) in POOL_COLUMNS.items():
                count = _int(pool.get(column))
                totals[state] += count
                out.add(family, count, **labels)
            waited = _int(pool.get("maxwait")) + _int(pool.get("maxwait_us")) / 1e6
            out.add(MAXWAIT, waited, **labels)
            size = pool_size.get(database, 0)
            out.add(POOL_SIZE, size, **labels)
            max_connections += size
        for state, count in totals.items():
            out.add(DB_POOL_CONNECTIONS, count, state=state)
        out.add(DB_POOL_MAX_CONNECTIONS, max_connections)

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                await asyncio.wait_for(conn.close(), 2.0)

    async def close(self) -> None:
        await self._discard()


KIND = Kind(
    name="pgbouncer",
    summary="PgBouncer SHOW POOLS: clients active/waiting, server connections vs pool_size.",
    parse=parse,
    probe=PgbouncerProbe,
    families=(
        DB_POOL_CONNECTIONS,
        DB_POOL_MAX_CONNECTIONS,
        DB_PING_SECONDS,
        VERSION_INFO,
        *(family for _, family in POOL_COLUMNS.values()),
        MAXWAIT,
        POOL_SIZE,
    ),
    target="dsn",
    alerts=(
        down(
            "PgBouncer",
            60.0,
            ("Check the pgbouncer process and its log; psql to its admin database.",),
        ),
        pool_near_max("PgBouncer"),
        DefaultAlert(
            key="clients_waiting",
            name="ClientsWaiting",
            query="pgbouncer_pools_client_waiting_connections{$sel}",
            op=">",
            threshold=0,
            unit="count",
            for_=120.0,
            severity="warning",
            summary="{value} clients wait for a server connection in pool "
            "{{ $labels.database }}/{{ $labels.user }} ({{ $labels.check }})",
            description="The pool is exhausted: clients queue until a server connection frees.",
            steps=(
                "SHOW POOLS; SHOW CLIENTS; on the admin console: who holds the servers?",
                "Find long transactions on the database, or raise pool_size deliberately.",
            ),
            reads="pgbouncer_pools_client_waiting_connections{$sel}",
            test=(
                TestInput(
                    'pgbouncer_pools_client_waiting_connections{$sel,database="d",user="u"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("database", "d"), ("user", "u")),
        ),
    ),
    panels=(
        POOL_PANEL,
        Panel(
            "Clients waiting",
            'pgbouncer_pools_client_waiting_connections{check=~"$check"}',
            "count",
            "{{check}} {{database}}/{{user}}",
        ),
    ),
)
