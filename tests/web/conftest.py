"""Fixtures for the http and tcp kinds: real aiohttp servers on loopback, a test CA, and a
listener that counts the connections a probe leaves open."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiohttp import web

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 (optionally TLS, a given port); returns its base
    URL."""
    runners: list[web.AppRunner] = []

    async def start(
        app: web.Application, ssl_context: ssl.SSLContext | None = None, port: int = 0
    ) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        host, port = runner.addresses[0][:2]
        scheme = "https" if ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def release() -> AsyncIterator[asyncio.Event]:
    """Set at teardown: slow handlers wait on it, so no server outlives its test."""
    event = asyncio.Event()
    yield event
    event.set()


@dataclass(frozen=True)
class LoopbackCA:
    ca: trustme.CA
    ca_file: Path

    def server_context(self, *, expired: bool = False) -> tuple[ssl.SSLContext, float]:
        """A server context for 127.0.0.1/localhost and its certificate's notAfter.

        ``expired`` makes a certificate that ended yesterday.
        """
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        not_after = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=90)
        cert = self.ca.issue_cert(
            "127.0.0.1", "localhost", not_before=now - dt.timedelta(days=30), not_after=not_after
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context, not_after.timestamp()


@pytest.fixture
def test_ca(tmp_path: Path) -> LoopbackCA:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return LoopbackCA(ca, ca_file)


class Listener:
    """A loopback server that answers each HTTP request (or nothing, for tcp) and keeps
    the connection open: only the client can close it, so ``open`` shows whether it did."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.open = 0
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        try:
            while True:
                if self.reply:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(self.reply)
                    await writer.drain()
                elif not await reader.read(1024):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def http_listener() -> AsyncIterator[Listener]:
    listener = Listener(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    listener.server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    async with listener.server:
        yield listener
