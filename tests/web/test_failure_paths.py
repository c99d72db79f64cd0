"""Failure paths of the http, tcp, file and disk kinds found in review: unresolvable and
malformed host names and headers, secrets in failure reasons, connections left open by
close(), blocking filesystem calls that never return, and one reading of epoch numbers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks import KINDS
from exporter.checks._queries import to_unix_seconds
from exporter.checks._timestamps import parse_timestamp
from exporter.checks.base import CheckFailed
from exporter.checks.tcp import os_reason
from exporter.config import load_data
from exporter.samples import Sink
from tests.leaks import polled
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    run_check,
    run_checks,
    running,
)


def test_unresolvable_host_reason_is_the_resolver_message() -> None:
    """A real getaddrinfo failure, made locally (numeric-host lookup of a name)."""
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo("engine.internal", 80, flags=socket.AI_NUMERICHOST)
    reason = os_reason(caught.value)
    # os.strerror(-2) would say "Unknown error -2": gaierror codes are not errno values.
    assert reason == f"cannot resolve host: {caught.value.strerror}"
    assert "Unknown error" not in reason


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ({"kind": "tcp", "address": "db..local:5432"},
         'checks[0].address: a label of the host name is empty or longer than 63 characters: '
         '"db..local:5432"'),
        ({"kind": "http", "url": "http://engine..local/health"},
         'checks[0].url: a label of the host name is empty or longer than 63 characters: '
         '"engine..local"'),
        ({"kind": "tcp", "address": f"{'x' * 64}.example:80"},
         'checks[0].address: a label of the host name is empty or longer than 63 characters: '
         f'"{"x" * 64}.example:80"'),
        # aiohttp refused these on every request as "unexpected ValueError"; a token with
        # a trailing newline (a YAML block scalar) is the likely way to get one.
        ({"kind": "http", "url": "http://h/", "headers": {"Authorization": "Bearer t0k\n"}},
         "checks[0].headers.Authorization: control characters (such as a line break) in the "
         "value"),
        ({"kind": "http", "url": "http://h/", "headers": {"X Api Key": "k"}},
         "checks[0].headers.X Api Key: not a valid header name "
         "(letters, digits and !#$%&'*+.^_`|~-)"),
    ],
)
def test_values_that_fail_every_request_are_config_errors(
    check: dict[str, Any], problem: str
) -> None:
    # Before: every scrape failed with "unexpected UnicodeError: encoding with 'idna' codec".
    assert config_problems({"name": "c", **check}) == [problem]


async def test_http_password_in_url_is_not_in_the_reason() -> None:
    port = free_port()
    (result,) = await run_checks(
        [{"name": "e", "kind": "http", "url": f"http://monitor:${{PW}}@127.0.0.1:{port}/health"}],
        env={"PW": "Url-Pa55word"},
    )
    assert result.error == f"connect to 127.0.0.1:{port}: Connection refused"


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


async def test_http_close_after_success_and_failure_leaves_no_connection(
    http_listener: Listener,
) -> None:
    good = {"name": "ok", "kind": "http", "url": f"http://127.0.0.1:{http_listener.port}/"}
    bad = {"name": "bad", "kind": "http", "url": f"http://127.0.0.1:{http_listener.port}/",
           "valid_status_codes": [204]}
    async with running([good, bad]) as runner:
        ok, failed = await runner.scrape(30.0)
        assert ok.success, ok.error
        assert failed.error == "status 200, expected 204"
        assert http_listener.accepted == 2
    await async_wait_until(polled(lambda: http_listener.open == 0), what="http connections closed")


async def test_tcp_probe_hangs_up_after_each_run() -> None:
    listener = Listener(b"")
    listener.server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    async with listener.server:
        result = await run_check(
            {"name": "t", "kind": "tcp", "address": f"127.0.0.1:{listener.port}"}
        )
        assert result.success, result.error
        await async_wait_until(polled(lambda: listener.open == 0), what="tcp connection closed")
    assert listener.accepted == 1


async def test_hung_statvfs_is_not_started_again_while_it_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung NFS mount cannot be made here: os.statvfs is replaced by a call that blocks
    until the test releases it, which is what the kernel does on such a mount."""
    release = threading.Event()
    calls: list[str] = []
    real_statvfs = os.statvfs

    def hung_statvfs(path: Any) -> os.statvfs_result:
        calls.append(str(path))
        release.wait(60)
        return real_statvfs(path)

    monkeypatch.setattr("exporter.checks.disk.os.statvfs", hung_statvfs)
    spec = load_data(
        {"checks": [{"name": "d", "kind": "disk", "path": str(tmp_path), "timeout": "1s"}]},
        "<test>", {},
    ).checks[0]
    probe = KINDS["disk"].probe(spec)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await probe.collect(Sink("d", ()))
        for _ in range(3):
            with pytest.raises(CheckFailed, match=r"still blocked in the call started \d+s ago"):
                await probe.collect(Sink("d", ()))
        assert calls == [str(tmp_path)]  # one thread stuck, not one per scrape
    finally:
        release.set()

    async def collects() -> bool:
        sink = Sink("d", ())
        try:
            await probe.collect(sink)
        except CheckFailed:
            return False  # still blocked: the released thread has not returned yet
        return any(s.family.name == "disk_size_bytes" for s in sink.samples)

    # Once the stuck call returns, the next scrape runs normally.
    await async_wait_until(collects, what="disk probe usable again")
    assert len(calls) >= 2  # the stuck call, then the run that reported


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1_795_378_530, 1_795_378_530.0),  # seconds
        (1_795_378_530_250, 1_795_378_530.25),  # ms (Node's Date.now())
        (1_795_378_530_250_000, 1_795_378_530.25),  # µs
        (1_795_378_530_250_000_000, 1_795_378_530.25),  # ns
        ("1795378530250000", 1_795_378_530.25),
    ],
)
def test_http_and_database_kinds_read_one_epoch_number_as_one_time(
    raw: Any, seconds: float
) -> None:
    # The http kind used to read anything >= 1e11 as ms (µs became the year 58,000)
    # while the SQL and Mongo kinds scaled µs and ns: one helper now serves both.
    assert parse_timestamp(raw) == pytest.approx(seconds)
    assert to_unix_seconds(raw) == pytest.approx(seconds)
