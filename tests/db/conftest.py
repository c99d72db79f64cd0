"""Real database servers for the db kinds: a throwaway PostgreSQL cluster and a PgBouncer.

PostgreSQL and PgBouncer refuse to run as root, so when the tests run as root (CI) both
run as ``nobody`` in a temp directory that ``nobody`` owns. Both listen on free loopback
ports only (no Unix sockets).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.db.mongo_peer import MongoPeer
from tests.support import free_port, require_binary, wait_until

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "su-pw-4417"
MONITOR_USER = "monitor"
MONITOR_PASSWORD = "mon-pw-9d2f1c"
APP_USER = "app_user"
APP_PASSWORD = "app-pw-61b0"
STATS_USER = "stats"
STATS_PASSWORD = "stats-pw-5c3a"
MAX_CONNECTIONS = 30
SUPERUSER_RESERVED = 3


def _owner_kwargs() -> dict[str, Any]:
    """Run a server binary as ``nobody`` when we are root (Postgres refuses root)."""
    if os.geteuid() == 0:
        return {"user": "nobody", "group": "nogroup"}
    return {}


def _owned_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "nobody", "nogroup")
    return path


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class PgCluster:
    bin_dir: Path
    data: Path
    port: int
    log: Path

    def dsn(self, user: str = MONITOR_USER, password: str = MONITOR_PASSWORD,
            database: str = "app") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args],
            check=True, capture_output=True, timeout=120, **_owner_kwargs(),
        )

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   "-c unix_socket_directories='' "
                   f"-c max_connections={MAX_CONNECTIONS} "
                   f"-c superuser_reserved_connections={SUPERUSER_RESERVED} "
                   "-c fsync=off -c full_page_writes=off")
        self._ctl("-w", "-t", "120", "-o", options, "start")
        wait_until(lambda: _port_open(self.port), 60, "postgres to listen")

    def stop(self) -> None:
        self._ctl("-w", "-t", "120", "-m", "fast", "stop")

    def psql(self, sql: str, database: str = "app") -> str:
        """Run SQL as the superuser (setup only; the tests talk through asyncpg)."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
             "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    initdb = Path(require_binary("initdb", "postgresql")).resolve()
    bin_dir = initdb.parent
    root = _owned_tempdir("rbx-pg-")
    password_file = root / "pw"
    password_file.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(password_file, "nobody", "nogroup")
    data = root / "data"
    subprocess.run(
        [str(initdb), "-D", str(data), "-U", SUPERUSER, "--auth=scram-sha-256",
         f"--pwfile={password_file}", "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True, timeout=180, **_owner_kwargs(),
    )
    cluster = PgCluster(bin_dir=bin_dir, data=data, port=free_port(), log=root / "log")
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
    if not _port_open(pg_cluster.port):
        pg_cluster.start()
    return pg_cluster


class Bouncer:
    """A PgBouncer process in front of the cluster: database ``app`` with pool_size 1."""

    pool_size = 1

    def __init__(self, pg_cluster: PgCluster) -> None:
        self.binary = require_binary("pgbouncer", "pgbouncer")
        self.root = _owned_tempdir("rbx-pgb-")
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

    def dsn(self, user: str = STATS_USER, password: str = STATS_PASSWORD,
            database: str = "pgbouncer") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        process = subprocess.Popen(
            [self.binary, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_owner_kwargs(),
        )
        self.process = process
        wait_until(lambda: process.poll() is not None or _port_open(self.port), 30,
                   "pgbouncer to listen")
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


@pytest.fixture
async def peer() -> AsyncIterator[MongoPeer]:
    """The MongoDB wire-protocol peer on a free loopback port (no mongod on the registries)."""
    server = MongoPeer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
