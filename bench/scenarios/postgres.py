"""Postgres pool stats: ours vs postgres_exporter, per scrape, on a throwaway cluster."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from bench.harness import (
    Context,
    Unavailable,
    fetch,
    ours,
    peer,
    postgres_cluster,
    samples_of,
    series_count,
    tree_cpu_seconds,
)
from bench.report import Section, cpu_ms, mib, ms, ratio
from bench.scenarios.common import Summary, check_successes, measure_many, scrape
from tests.servers import PostgresServer

TITLE = "Postgres pool stats"
WHAT = (
    "A throwaway PostgreSQL cluster (initdb as `nobody`, loopback, trust auth, "
    "`log_statement=all`) with 4 idle, 2 idle-in-transaction and 2 active sessions. This "
    "exporter: one `postgres` check (connections by state vs max_connections, ping, "
    "version, recovery). postgres_exporter: its default collectors, which include "
    "`pg_stat_activity_count` by state and `pg_settings_max_connections`, plus much "
    "more. Per scrape: exporter wall and CPU, server CPU (postmaster and every backend), "
    "SQL statements the server logged, exporter RSS."
)
IDLE, IDLE_IN_TX, ACTIVE = 4, 2, 2
_STATEMENT = re.compile(rb"LOG:  (statement|execute)")


def run(ctx: Context) -> Section:
    try:
        import psycopg
    except ImportError:
        raise Unavailable("psycopg not installed: .venv/bin/pip install -e '.[test]'") from None
    section = Section("postgres", TITLE, WHAT, header=[
        "exporter", "wall / scrape", "CPU / scrape", "server CPU / scrape",
        "SQL statements / scrape", "series", "RSS",
    ])  # fmt: skip
    with postgres_cluster(ctx.workdir, "log_statement=all") as pg, sessions(psycopg, pg):
        log = pg.log
        stats = server_stats(pg, log)
        dsn = pg.dsn(sslmode="disable")  # no TLS on the throwaway cluster
        env = {"DATA_SOURCE_NAME": dsn}
        config = {"checks": [{"name": "db", "kind": "postgres", "dsn": dsn}]}
        with (
            ours(ctx.workdir, config) as exporter,
            peer("prometheus-postgres-exporter", "prometheus-postgres-exporter", [],
                 ctx.workdir, env=env) as peer_exporter,
        ):  # fmt: skip
            url = f"{exporter.base}/metrics"
            body = fetch(url)
            verify_ours(body)
            mine_series = series_count(body)
            peer_url = f"{peer_exporter.base}/metrics"
            body = fetch(peer_url)
            if (samples_of(body, "pg_up") or [("", 0.0)])[0][1] != 1.0:
                raise RuntimeError(f"postgres_exporter is not up: {peer_exporter.tail()}")
            their_series = series_count(body)
            found = measure_many({
                "ours": (exporter, scrape(url)),
                "postgres_exporter": (peer_exporter, scrape(peer_url)),
            }, ctx.repeat, server=stats)  # fmt: skip
            mine, theirs = found["ours"], found["postgres_exporter"]
    section.rows.append(_row("runbook-exporter", mine, mine_series))
    section.rows.append(_row("postgres_exporter (defaults)", theirs, their_series))
    section.rows.append([
        "ratio (postgres_exporter ÷ ours)", ratio(theirs.wall, mine.wall),
        ratio(theirs.cpu, mine.cpu), ratio(theirs.server_cpu, mine.server_cpu),
        ratio(theirs.commands, mine.commands), "", "",
    ])  # fmt: skip
    section.notes.append(
        "Server CPU is the postmaster's and all backends' user+system time (/proc, 10 ms "
        "ticks, exited backends included through the postmaster's children counters)."
    )
    return section


def _row(label: str, summary: Summary, series: int) -> list[str]:
    return [label, ms(summary.wall), cpu_ms(summary.cpu), cpu_ms(summary.server_cpu),
            f"{summary.commands:,.1f}", f"{series:,}", mib(summary.rss)]  # fmt: skip


def verify_ours(body: bytes) -> None:
    ok, total = check_successes(body)
    states = {labels: value for labels, value in samples_of(body, "db_pool_connections")}
    idle = next((v for k, v in states.items() if 'state="idle"' in k), -1)
    if ok != 1 or total != 1 or idle < IDLE:
        raise RuntimeError(f"ours: check ok {ok}/{total}, connections by state {states}")


def server_stats(pg: PostgresServer, log: Path):  # type: ignore[no-untyped-def]
    def read() -> tuple[float, float, float]:
        statements = len(_STATEMENT.findall(log.read_bytes()))
        return tree_cpu_seconds(pg.pid), float(statements), float("nan")

    return read


@contextlib.contextmanager
def sessions(psycopg, pg: PostgresServer) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Idle, idle-in-transaction and active client sessions for the exporters to count."""
    dsn = pg.dsn(sslmode="disable")
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(IDLE + IDLE_IN_TX)]
    for conn in conns[IDLE:]:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
    sleepers = [psycopg.connect(dsn, autocommit=True) for _ in range(ACTIVE)]
    pids = [c.info.backend_pid for c in sleepers]

    def sleep(conn) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_sleep(3600)")

    threads = [threading.Thread(target=sleep, args=(c,), daemon=True) for c in sleepers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        for thread in threads:
            thread.join(10)
        for conn in conns + sleepers:
            conn.close()
