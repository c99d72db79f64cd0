"""A real exporter process under attack: hostile HTTP and Redis servers on loopback.

The exporter runs as its own process (``python -m exporter``), so that the test can watch
what an operator sees while a hostile target does its worst: how long ``/-/healthy``
takes, whether a scrape keeps its deadline, how large the process grows (VmRSS).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.support import async_wait_until, free_port
from tests.web.conftest import serve

__all__ = ["serve"]


@dataclass
class ExporterProcess:
    """``python -m exporter`` serving one config file on a loopback port."""

    config: Path
    port: int
    extra: tuple[str, ...] = ()
    fd_limit: int | None = None  # RLIMIT_NOFILE, soft and hard, of the exporter
    proc: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None

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
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                preexec_fn=self._limit_fds if self.fd_limit is not None else None,
            )

    def _limit_fds(self) -> None:
        assert self.fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    async def ready(self) -> None:
        async def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.log()}")
            try:
                status, _ = await self.get("/-/ready", timeout=2.0)
            except (aiohttp.ClientError, TimeoutError):
                return False
            return status == 200

        await async_wait_until(up, 60, "exporter ready")

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

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
                return -9
        return self.proc.returncode


StartExporter = Callable[..., Awaitable[ExporterProcess]]


@pytest.fixture
async def exporter_process(tmp_path: Path) -> AsyncIterator[StartExporter]:
    started: list[ExporterProcess] = []

    async def start(config: str, *extra: str, fd_limit: int | None = None) -> ExporterProcess:
        path = tmp_path / f"config{len(started)}.yml"
        path.write_text(config)
        process = ExporterProcess(
            path, free_port(), extra, fd_limit, stderr_path=tmp_path / f"stderr{len(started)}.log"
        )
        process.start()
        started.append(process)
        await process.ready()
        return process

    yield start
    for process in started:
        assert process.proc is not None
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)


@dataclass
class HealthWatch:
    """Latencies of /-/healthy, asked every 50 ms while an attack runs."""

    latencies: list[float] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


@contextlib.asynccontextmanager
async def watching_health(process: ExporterProcess) -> AsyncIterator[HealthWatch]:
    watch = HealthWatch()
    stop = asyncio.Event()

    async def poll() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            while not stop.is_set():
                started = time.monotonic()
                async with session.get(process.base + "/-/healthy") as response:
                    await response.read()
                    assert response.status == 200
                watch.latencies.append(time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

    task = asyncio.create_task(poll())
    try:
        yield watch
    finally:
        stop.set()
        await task
    assert watch.latencies, "no /-/healthy answer while the attack ran"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TcpServers = Callable[[Handler], Awaitable[int]]


@pytest.fixture
async def tcp_servers() -> AsyncIterator[TcpServers]:
    """Start raw asyncio servers on 127.0.0.1 (hostile Redis and HTTP peers); port out."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
    for task in list(tasks):
        task.cancel()
    for server in servers:
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
