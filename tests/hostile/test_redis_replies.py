"""The ``redis`` kind against hostile Redis servers: endless replies, huge INFO, wrong
reply types, and a Redis 5 that does not know HELLO.

No real Redis sends these replies, so the servers here are small RESP peers written for
the attack; the real Redis (tests/redis) covers the good path.
"""

from __future__ import annotations

import asyncio

from exporter.checks._redis_limits import MAX_REPLY_BYTES
from exporter.redact import MAX_REASON
from tests.hostile.conftest import (
    Handler,
    StartExporter,
    TcpServers,
    read_command,
    watching_health,
)
from tests.support import run_check

# A handler answers one command; it returns False to stop serving the connection.
Answer = dict[str, bytes]


def resp_server(answers: Answer, seen: list[list[str]] | None = None) -> Handler:
    """A RESP peer answering each command by name from ``answers``; unknown commands
    get Redis' own error."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            command = await read_command(reader)
            if seen is not None:
                seen.append(command)
            name = command[0].upper()
            reply = answers.get(name)
            if reply is None:
                reply = f"-ERR unknown command '{command[0]}'\r\n".encode()
            writer.write(reply)
            await writer.drain()

    return handle


def endless_bulk() -> Handler:
    """Announces a 4 EiB bulk reply to INFO and streams bytes until the client leaves."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * (1 << 20)
        while True:
            command = await read_command(reader)
            if command[0].upper() == "PING":
                writer.write(b"+PONG\r\n")
                continue
            writer.write(b"$4611686018427387904\r\n")
            while True:
                writer.write(chunk)
                await writer.drain()

    return handle


def huge_info(size: int) -> Handler:
    """Answers INFO with a well-formed reply of ``size`` bytes of INFO lines."""
    line = b"used_memory:1\r\n"
    body = line * (size // len(line))
    reply = b"$%d\r\n%s\r\n" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            command = await read_command(reader)
            writer.write(b"+PONG\r\n" if command[0].upper() == "PING" else reply)
            await writer.drain()

    return handle


def check(port: int, timeout: str = "5s") -> dict[str, object]:
    return {
        "name": "cache",
        "kind": "redis",
        "url": f"redis://127.0.0.1:{port}/0",
        "timeout": timeout,
    }


async def test_endless_bulk_reply_is_refused_at_the_limit_and_memory_stays_bounded(
    tcp_servers: TcpServers, exporter_process: StartExporter
) -> None:
    port = await tcp_servers(endless_bulk())
    exporter = await exporter_process(
        f'checks:\n  - {{name: cache, kind: redis, url: "redis://127.0.0.1:{port}/0", '
        "timeout: 5s}\n"
    )
    before = exporter.rss_bytes()
    async with watching_health(exporter) as health:
        took, body = await exporter.scrape(6)
    grown = exporter.rss_bytes() - before
    assert 'check_success{check="cache",kind="redis"} 0.0' in body
    assert "reply larger than the limit of 256 KiB" in exporter.log()
    # Before: 2.3 GB after 5 s, 3.4 GB kept. Now: the limit (256 KiB) plus buffers.
    assert grown < 64 * 1024 * 1024, f"grew {grown / 2**20:.0f} MiB"
    assert took < 6 * 1.5
    assert health.worst < 1.0, f"/-/healthy took {health.worst:.3f}s"


async def test_huge_info_fails_fast_without_blocking_the_event_loop(
    tcp_servers: TcpServers, exporter_process: StartExporter
) -> None:
    port = await tcp_servers(huge_info(200 * 1024 * 1024))
    exporter = await exporter_process(
        f'checks:\n  - {{name: cache, kind: redis, url: "redis://127.0.0.1:{port}/0", '
        "timeout: 5s}\n"
    )
    async with watching_health(exporter) as health:
        took, body = await exporter.scrape(6)
    assert 'check_success{check="cache",kind="redis"} 0.0' in body
    # Before: ok after 21 s, /-/healthy blocked 23.3 s.
    assert took < 5.0
    assert health.worst < 1.0, f"/-/healthy took {health.worst:.3f}s"


async def test_info_just_under_the_limit_is_read(tcp_servers: TcpServers) -> None:
    port = await tcp_servers(huge_info(MAX_REPLY_BYTES - 1024))
    result = await run_check(check(port))
    assert result.success, result.error


async def test_endless_simple_string_and_huge_arrays_are_refused(tcp_servers: TcpServers) -> None:
    endless_line = await tcp_servers(
        resp_server({"PING": b"+PONG\r\n", "INFO": b"+" + b"x" * (1 << 20) + b"\r\n"})
    )
    result = await run_check(check(endless_line))
    assert not result.success
    assert (
        result.error == f"redis 127.0.0.1:{endless_line}: reply line longer than 64 KiB; "
        "connection dropped"
    )
    many = await tcp_servers(
        resp_server({"PING": b"+PONG\r\n", "INFO": b"*100000000\r\n" + b":1\r\n" * 5000})
    )
    result = await run_check(check(many))
    assert not result.success
    assert "reply array of more than 4096 elements" in (result.error or "")


async def test_wrong_reply_types_give_a_clear_reason(tcp_servers: TcpServers) -> None:
    integer_info = await tcp_servers(resp_server({"PING": b"+PONG\r\n", "INFO": b":5\r\n"}))
    result = await run_check(check(integer_info))
    assert result.error == f"redis 127.0.0.1:{integer_info}: unexpected reply to INFO"
    array_info = await tcp_servers(
        resp_server({"PING": b"+PONG\r\n", "INFO": b"*1\r\n$3\r\nabc\r\n"})
    )
    result = await run_check(check(array_info))
    assert result.error == f"redis 127.0.0.1:{array_info}: unexpected reply to INFO"
    not_pong = await tcp_servers(resp_server({"PING": b"+NOPE\r\n", "INFO": b"$0\r\n\r\n"}))
    result = await run_check(check(not_pong))
    assert result.error == f"redis 127.0.0.1:{not_pong}: PING did not answer PONG"


async def test_long_error_line_is_cut_and_does_not_stall(tcp_servers: TcpServers) -> None:
    port = await tcp_servers(resp_server({"PING": b"-ERR " + b"a" * 40_000 + b"\r\n"}))
    result = await run_check(check(port))
    assert not result.success
    assert len(result.error or "") < MAX_REASON + 60
    assert "more characters" in (result.error or "")


async def test_speaks_resp2_with_ping_and_info_only_like_redis_5(tcp_servers: TcpServers) -> None:
    """Redis 5 answers HELLO with an error: the kind must never send it."""
    seen: list[list[str]] = []
    info = b"redis_version:5.0.14\r\nused_memory:100\r\nrole:master\r\n"
    port = await tcp_servers(
        resp_server(
            {
                "PING": b"+PONG\r\n",
                "INFO": b"$%d\r\n%s\r\n" % (len(info), info),
                "AUTH": b"+OK\r\n",
                "SELECT": b"+OK\r\n",
            },
            seen,
        )
    )
    result = await run_check(
        {"name": "old", "kind": "redis", "url": f"redis://:hunter22@127.0.0.1:{port}/3"}
    )
    assert result.success, result.error
    assert [c[0].upper() for c in seen] == ["AUTH", "SELECT", "PING", "PING", "INFO"]
