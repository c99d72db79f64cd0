"""Fixtures of the fire drills: real Redis, exporter, Prometheus, Alertmanager on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.e2e.stack import REPO, Stack, Webhook
from tests.redis.conftest import require_bullmq
from tests.support import free_port, require_binary

# Every `for`, interval and freshness window of the bundle is multiplied by this in the
# drills (thresholds unchanged); the promtool unit tests cover the real durations.
DRILL_FACTOR = os.environ.get("E2E_DRILL_FACTOR", "0.005")
TIMINGS_FILE = Path(os.environ.get("E2E_TIMINGS_FILE", REPO / "build" / "e2e-drill-timings.json"))

_timings: dict[str, dict[str, float]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _timings:
        return
    terminalreporter.section("fire drills: seconds from fault to webhook")
    for name, numbers in sorted(_timings.items()):
        terminalreporter.line(
            f"{name:50s} " + "  ".join(f"{k}={v:.1f}s" for k, v in numbers.items())
        )
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(_timings, indent=2, sort_keys=True) + "\n")
    terminalreporter.line(f"written to {TIMINGS_FILE}")


@pytest.fixture
def record_timing(request: pytest.FixtureRequest) -> Any:
    """``record_timing("page", seconds)``: kept for the summary and the timings file."""

    def record(what: str, seconds: float) -> None:
        _timings.setdefault(request.node.name, {})[what] = round(seconds, 2)
        print(f"{request.node.name}: {what} {seconds:.1f}s after the fault")

    return record


# --- binaries and the generated bundle -------------------------------------------------


@pytest.fixture(scope="session")
def binaries() -> None:
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")


@dataclass(frozen=True)
class Bundle:
    """The bundle generated with the drill factor into a temporary directory."""

    root: Path

    def rules(self, profile: str) -> list[Path]:
        found = sorted((self.root / "rules").glob(f"{profile}*.yml"))
        assert found, f"no generated rule file for profile {profile} in {self.root / 'rules'}"
        return found

    def alertmanager(self) -> dict[str, Any]:
        data = yaml.safe_load((self.root / "alertmanager" / "alertmanager.yml").read_text())
        assert isinstance(data, dict)
        return data


@pytest.fixture(scope="session")
def drill_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("bundle")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter.bundle",
            "generate",
            "--drill-factor",
            DRILL_FACTOR,
            "--output",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"bundle generate failed:\n{result.stdout}\n{result.stderr}"
    return Bundle(out)


def generate_for_config(config: Path, out: Path) -> None:
    """``bundle generate --config`` with the drill factor: the bundle a new user gets for
    their own config (each check kind's default alerts), drilled."""
    done = subprocess.run(
        [sys.executable, "-m", "exporter.bundle", "generate", "--config", str(config),
         "--output", str(out), "--drill-factor", DRILL_FACTOR],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def load_profile(profile: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "profiles" / f"{profile}.yml").read_text())
    assert isinstance(data, dict)
    return data


# --- the stack ------------------------------------------------------------------------


@pytest.fixture
async def stack(
    binaries: None, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """Not started: the drill calls ``await stack.start(checks, rules, alertmanager)``."""
    async with aiohttp.ClientSession() as session:
        running = Stack(workdir=tmp_path, webhook=Webhook(), session=session)
        try:
            yield running
        finally:
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                print(running.logs())
            await running.stop()


# --- monitored things ----------------------------------------------------------------


@dataclass
class TcpServer:
    """A listening socket standing in for a device gateway; stop() closes the port."""

    port: int = field(default_factory=free_port)
    server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self.server = await asyncio.start_server(greet, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def tcp_server() -> AsyncIterator[TcpServer]:
    server = TcpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class ServiceApp:
    """An aiohttp app standing in for a monitored service.

    ``/health`` answers ``{"status", "components": {name: {"status"}}, ...}`` and
    ``/api/sources`` a list of ``{"id", "lastIngestedAt", "totalRecords"}``. ``status``
    is the service's own verdict, kept apart from the components: the runbook's Redis
    outage shows as ``components.redis.status=error`` first. A source in ``frozen`` keeps
    the ``lastIngestedAt`` it had when frozen, the others report "just ingested" on
    every request.
    """

    status: str = "ok"
    components: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    frozen: dict[str, float] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ingested_at(self, source: str) -> float:
        return self.frozen.get(source, time.time())

    def freeze(self, source: str) -> None:
        self.frozen[source] = time.time()

    def thaw(self, source: str) -> None:
        self.frozen.pop(source, None)

    def iso(self, ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"

    async def _health(self, _: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": self.status,
            "timestamp": self.iso(time.time()),
            "components": {name: {"status": state} for name, state in self.components.items()},
        }
        # The engine always reports its ingestion component (the newest source run).
        newest = max((self.ingested_at(s) for s in self.sources), default=time.time())
        body["components"]["ingestion"] = {"status": "ok", "lastIngestedAt": self.iso(newest)}
        return web.json_response(body)

    async def _sources(self, _: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": s, "lastIngestedAt": self.iso(self.ingested_at(s)), "totalRecords": 100}
                for s in self.sources
            ]
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/sources", self._sources)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """The service stops answering: its port refuses connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def service_app() -> AsyncIterator[ServiceApp]:
    app = ServiceApp()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture(scope="session")
def bullmq_python() -> Path:
    """Python of the side venv with the official ``bullmq`` package (BullMQ 6 layout)."""
    return require_bullmq("v6").python
