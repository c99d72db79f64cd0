"""Real database servers for the db kinds: a throwaway PostgreSQL cluster and a PgBouncer.

PostgreSQL and PgBouncer refuse to run as root, so when the tests run as root (CI) both
run as ``nobody`` in a temp directory that ``nobody`` owns. Both listen on free loopback
ports only (no Unix sockets).
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.db.mongo_peer import MongoPeer
from tests.servers import (
    POSTGRES_SUPERUSER,
    PostgresServer,
    owned_tempdir,
    port_open,
    run_as_nobody,
)
from tests.support import free_port, require_binary, wait_until

SUPERUSER = POSTGRES_SUPERUSER
SUPERUSER_PASSWORD = "su-pw-4417"
MONITOR_USER = "monitor"
MONITOR_PASSWORD = "mon-pw-9d2f1c"
APP_USER = "app_user"
APP_PASSWORD = "app-pw-61b0"
STATS_USER = "stats"
STATS_PASSWORD = "stats-pw-5c3a"
MAX_CONNECTIONS = 30
SUPERUSER_RESERVED = 3


class PgCluster(PostgresServer):
    """The db tests' cluster: SCRAM logins, a monitor and an app role, database ``app``."""

    def dsn(
        self,
        user: str = MONITOR_USER,
        password: str | None = MONITOR_PASSWORD,
        database: str = "app",
        **params: str,
    ) -> str:
        return super().dsn(user, password, database, **params)

    def psql(self, sql: str, database: str = "app") -> str:
        return super().psql(sql, database)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    root = owned_tempdir("rbx-pg-")
    cluster = PgCluster(
        require_binary("initdb", "postgresql"),
        root,
        password=SUPERUSER_PASSWORD,
        settings=(
            f"max_connections={MAX_CONNECTIONS}",
            f"superuser_reserved_connections={SUPERUSER_RESERVED}",
            "full_page_writes=off",
        ),
    )
    cluster.init()
    cluster.start()
    try:
        cluster.psql(
            f"CREATE ROLE {MONITOR_USER} LOGIN PASSWORD '{MONITOR_PASSWORD}' IN ROLE pg_monitor;"
            f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';"
            f"CREATE DATABASE app OWNER {APP_USER};",
            database="postgres",
        )
        cluster.psql(
            f"SET ROLE {APP_USER};"
            "CREATE TABLE telemetry (source text, received_at timestamptz, value float8);"
            "CREATE TABLE locked (id int);"
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MONITOR_USER};"
        )
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg(pg_cluster: PgCluster) -> PgCluster:
    """The session cluster, running (a test that stopped it restarts it)."""
    if not port_open(pg_cluster.port):
        pg_cluster.start()
    return pg_cluster


class Bouncer:
    """A PgBouncer process in front of the cluster: database ``app`` with pool_size 1."""

    pool_size = 1

    def __init__(self, pg_cluster: PgCluster) -> None:
        self.binary = require_binary("pgbouncer", "pgbouncer")
        self.root = owned_tempdir("rbx-pgb-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        (self.root / "userlist.txt").write_text(
            f'"{APP_USER}" "{APP_PASSWORD}"\n"{STATS_USER}" "{STATS_PASSWORD}"\n'
        )
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"app = host=127.0.0.1 port={pg_cluster.port} dbname=app pool_size={self.pool_size}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {self.root}/userlist.txt\n"
            f"admin_users = {STATS_USER}\nstats_users = {STATS_USER}\n"
            "pool_mode = session\ndefault_pool_size = 1\nmax_client_conn = 50\n"
            f"logfile = {self.root}/pgbouncer.log\npidfile = {self.root}/pgbouncer.pid\n"
        )
        if os.geteuid() == 0:
            for name in ("userlist.txt", "pgbouncer.ini"):
                shutil.chown(self.root / name, "nobody", "nogroup")

    def dsn(
        self, user: str = STATS_USER, password: str = STATS_PASSWORD, database: str = "pgbouncer"
    ) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        process = subprocess.Popen(
            [self.binary, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as_nobody(),
        )
        self.process = process
        wait_until(
            lambda: process.poll() is not None or port_open(self.port), 30, "pgbouncer to listen"
        )
        if process.poll() is not None:
            log = self.root / "pgbouncer.log"
            pytest.fail(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pgbouncer(pg: PgCluster) -> Iterator[Bouncer]:
    """A fresh PgBouncer per test (it starts in milliseconds): pools start empty."""
    bouncer = Bouncer(pg)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.remove()


# PyMongo 4.20 (pool_shared._async_create_connection) closes a socket it is connecting
# only on OSError or a timeout, not on cancellation: a client closed while one of its
# monitors is reconnecting (the hung/restarted peer tests) leaves that socket to the
# garbage collector, whose ResourceWarning then fails whichever test is running (CI run of
# stop 21: an unrelated mongodb test). The exporter is unaffected in service (the finalizer
# closes the descriptor; ResourceWarning is ignored by default). Tests that use the peer
# ignore exactly that warning and collect at teardown, so none reaches a later test.
PYMONGO_CONNECT_LEAK = "ignore:unclosed <socket.socket:ResourceWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "peer" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.filterwarnings(PYMONGO_CONNECT_LEAK))


@pytest.fixture
async def peer() -> AsyncIterator[MongoPeer]:
    """The MongoDB wire-protocol peer on a free loopback port (no mongod on the registries)."""
    server = MongoPeer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        gc.collect()  # finalise sockets PyMongo dropped while this test's filter applies


def query_failures(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """``{query name: reason}`` of every "query failed" line logged so far."""
    return {
        record.__dict__["fields"]["query"]: record.__dict__["fields"]["reason"]
        for record in caplog.records
        if record.getMessage() == "query failed"
    }
