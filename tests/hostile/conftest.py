"""A real exporter process under attack: hostile HTTP and Redis servers on loopback.

The exporter runs as its own process (``python -m exporter``), so that the test can watch
what an operator sees while a hostile target does its worst: how long ``/-/healthy``
takes, whether a scrape keeps its deadline, how large the process grows (VmRSS).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.servers import ExporterProcess, Handler, LoopbackServers, read_command
from tests.support import free_port
from tests.web.conftest import serve

__all__ = ["ExporterProcess", "Handler", "read_command", "serve"]


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


TcpServers = Callable[[Handler], Awaitable[int]]


@pytest.fixture
async def tcp_servers() -> AsyncIterator[TcpServers]:
    """Start raw asyncio servers on 127.0.0.1 (hostile Redis and HTTP peers); port out."""
    servers = LoopbackServers()
    yield servers.start
    await servers.close()
