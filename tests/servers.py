"""Real servers shared by several test areas and by the bench (bench/harness.py,
bench/hostile.py), started from Debian binaries on loopback; and the exporter itself as a
process (:class:`ExporterProcess`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import redis

from tests.support import async_wait_until, free_port, require_binary, wait_until


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """One redis-server process on 127.0.0.1:``port``; ``kill``/``start`` keep the port."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *args: str,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # The TLS certificate names localhost; the plain server is reached by address.
        if self.tls:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's process id (the bench measures its CPU)."""
        assert self.process is not None, "redis-server is not running"
        return self.process.pid

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        command = [
            self.binary,
            *ports,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
            *self.args,
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(self._answers, timeout=20, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server exited with {self.process.returncode}: {log}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        """A synchronous client for arranging data (use as a context manager)."""
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            host="localhost" if self.tls else "127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=10,
            **tls,
        )

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator's ``systemctl stop`` would."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start servers with extra arguments (``--maxmemory 512mb``) or a password."""
    binary = require_binary("redis-server", "redis-server")
    servers: list[RedisServer] = []

    def start(*args: str, password: str | None = None, tls: TlsFiles | None = None) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        workdir.mkdir()
        server = RedisServer(binary, workdir, *args, password=password, tls=tls)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


# --- PostgreSQL ------------------------------------------------------------------------

POSTGRES_SUPERUSER = "postgres"


def run_as_nobody() -> dict[str, Any]:
    """subprocess keywords that run a server binary as ``nobody`` when we are root
    (PostgreSQL and PgBouncer refuse to run as root)."""
    if os.geteuid() == 0:
        return {"user": "nobody", "group": "nogroup"}
    return {}


def owned_tempdir(prefix: str) -> Path:
    """A new temp directory the server's user (``nobody`` when we are root) owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "nobody", "nogroup")
    return path


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PostgresServer:
    """A throwaway PostgreSQL cluster in ``root`` (which ``nobody`` must own when we are
    root), listening on 127.0.0.1:``port`` only (no Unix socket), started and stopped with
    pg_ctl. ``password=None`` means trust authentication (the bench); otherwise the
    superuser has that password and every login needs SCRAM (the db tests).
    ``settings`` are extra ``name=value`` server settings (``log_statement=all``).
    """

    def __init__(
        self, initdb: str, root: Path, *, password: str | None, settings: Sequence[str] = ()
    ) -> None:
        self.initdb = Path(initdb).resolve()
        self.bin_dir = self.initdb.parent
        self.root = root
        self.data = root / "data"
        self.log = root / "log"  # the server's stderr
        self.port = free_port()
        self.password = password
        self.settings = tuple(settings)

    def init(self) -> None:
        """initdb: UTF8, C locale, no fsync; the superuser is ``postgres``."""
        auth = ["--auth=trust"]
        if self.password is not None:
            password_file = self.root / "pw"
            password_file.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(password_file, "nobody", "nogroup")
            auth = ["--auth=scram-sha-256", f"--pwfile={password_file}"]
        subprocess.run(
            [str(self.initdb), "-D", str(self.data), "-U", POSTGRES_SUPERUSER, *auth,
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, timeout=180, **run_as_nobody(),
        )  # fmt: skip

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args],
            check=True, capture_output=True, timeout=120, **run_as_nobody(),
        )  # fmt: skip

    def start(self) -> None:
        """Start and wait until it accepts queries (pg_ctl -w), not only connections."""
        options = " ".join(
            f"-c {setting}"
            for setting in (
                "listen_addresses=127.0.0.1",
                f"port={self.port}",
                "unix_socket_directories=''",
                "fsync=off",
                *self.settings,
            )
        )
        self._ctl("-w", "-t", "120", "-o", options, "start")
        wait_until(lambda: port_open(self.port), 60, "postgres to listen")

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, then the server exits."""
        self._ctl("-w", "-t", "120", "-m", "fast", "stop")

    @property
    def pid(self) -> int:
        """The postmaster's process id (its tree's CPU is the server's)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def dsn(
        self,
        user: str = POSTGRES_SUPERUSER,
        password: str | None = None,
        database: str = "postgres",
        **params: str,
    ) -> str:
        """A libpq URL to 127.0.0.1:``port``; ``params`` become its query (sslmode=...)."""
        login = user if password is None else f"{user}:{password}"
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}{query}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser (setup only; the tests talk through asyncpg)."""
        password = {} if self.password is None else {"PGPASSWORD": self.password}
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", POSTGRES_SUPERUSER,
             "-d", database, "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=60,
            env={**os.environ, **password},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@dataclass
class ExporterProcess:
    """``python -m exporter`` serving one config file on a loopback port, as its own
    process: what an operator runs, watched from outside (tests/hostile, bench/hostile.py).
    """

    config: Path
    port: int
    extra: tuple[str, ...] = ()
    fd_limit: int | None = None  # RLIMIT_NOFILE, soft and hard, of the exporter
    proc: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None
    # Run the exporter from this checkout instead of the one imported here (the bench
    # compares a commit with another).
    code: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.stderr_path is not None
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "--config.file",
                    str(self.config),
                    "--web.listen-address",
                    f"127.0.0.1:{self.port}",
                    *self.extra,
                ],
                cwd=self.code,
                env={**os.environ, "PYTHONPATH": str(self.code)} if self.code else None,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                preexec_fn=self._limit_fds if self.fd_limit is not None else None,
            )

    def _limit_fds(self) -> None:
        assert self.fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    async def ready(self) -> None:
        """Wait until ``/-/ready`` answers (fails at once if the process exits)."""

        async def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.log()}")
            return await self.answers("/-/ready", timeout=2.0)

        await async_wait_until(up, 60, "exporter ready")

    async def answers(self, path: str, timeout: float) -> bool:
        """Whether ``path`` answers 200 within ``timeout`` (no answer: False)."""
        try:
            status, _ = await self.get(path, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    def idle_flood(self, count: int) -> list[socket.socket]:
        """``count`` connections that never send a byte (close them when done)."""
        flood = []
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", self.port))
            flood.append(sock)
        return flood

    async def get(
        self, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(self.base + path, headers=headers or {}) as response,
        ):
            return response.status, await response.text()

    async def post(self, path: str, **kwargs: object) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(self.base + path, **kwargs) as response,  # type: ignore[arg-type]
        ):
            return response.status, await response.text()

    async def scrape(self, timeout: float) -> tuple[float, str]:
        """(seconds taken, body) of one /metrics scrape with Prometheus' timeout header."""
        started = time.monotonic()
        status, body = await self.get(
            "/metrics",
            timeout=timeout * 10,
            headers={"X-Prometheus-Scrape-Timeout-Seconds": str(timeout)},
        )
        assert status == 200, body
        return time.monotonic() - started, body

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        assert self.stderr_path is not None
        return self.stderr_path.read_text()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (returned as -9); the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
                return -9
        return self.proc.returncode


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LoopbackServers:
    """Raw asyncio servers on 127.0.0.1, each serving a ``Handler`` (hostile Redis and
    HTTP peers in tests/hostile and bench/hostile.py). A client that leaves ends its
    handler quietly; :meth:`close` stops the servers and cancels handlers still running."""

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, handler: Handler) -> int:
        """Serve ``handler`` on a new port; the port."""

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self._tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)


async def read_command(reader: asyncio.StreamReader) -> list[str]:
    """One RESP command (an array of bulk strings) as sent by a client."""
    header = await reader.readline()
    if not header:
        raise ConnectionError("client left")
    assert header.startswith(b"*"), header
    args = []
    for _ in range(int(header[1:])):
        size = int((await reader.readline())[1:])
        args.append((await reader.readexactly(size + 2))[:-2].decode())
    return args
