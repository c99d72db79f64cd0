"""The tcp kind: real loopback listeners (plain and TLS with a test CA), a real Redis for
``PING`` -> ``+PONG``, and closed ports."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.checks._net import error_reason
from tests.leaks import polled
from tests.servers import RedisServer
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    run_check,
    run_checks,
    value,
    values,
)
from tests.web.conftest import Listener, LoopbackCA

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: Handler, **kwargs: Any) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


def replying(reply: bytes, *, after: bytes = b"") -> Handler:
    """A server that waits for ``after`` (if any), then sends ``reply`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if after:
                await reader.readuntil(after)
            writer.write(reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


def ping_pong(address: str) -> dict[str, Any]:
    """A tcp check that sends Redis' PING and expects +PONG."""
    return {
        "name": "t",
        "kind": "tcp",
        "address": address,
        "send": "PING\r\n",
        "expect": r"^\+PONG",
    }


async def test_send_expect_matches_the_reply() -> None:
    server, address = await listen(replying(b"+PONG\r\n", after=b"PING\r\n"))
    async with server:
        result = await run_check(ping_pong(address))
    assert result.success, result.error
    assert value(result, "tcp_expect_matched") == 1
    assert value(result, "tcp_connect_duration_seconds") > 0


async def test_expect_without_send_reads_the_banner() -> None:
    server, address = await listen(replying(b"SSH-2.0-OpenSSH_9.2\r\n"))
    async with server:
        result = await run_check(
            {"name": "t", "kind": "tcp", "address": address, "expect": "^SSH-2\\.0-"}
        )
    assert result.success, result.error
    assert value(result, "tcp_expect_matched") == 1


async def test_wrong_reply_fails_and_shows_what_was_received() -> None:
    server, address = await listen(replying(b"-NOAUTH Authentication required.\r\n", after=b"\n"))
    async with server:
        result = await run_check(ping_pong(address))
    assert result.error == (
        "expect /^\\+PONG/ did not match (connection closed); received 34 bytes: "
        "'-NOAUTH Authentication required.\\r\\n'"
    )
    assert value(result, "tcp_expect_matched") == 0


async def test_silent_server_is_cut_by_the_timeout(release: asyncio.Event) -> None:
    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+PO")  # a partial answer, then nothing
        await release.wait()
        writer.close()

    server, address = await listen(silent)
    async with server:
        result = await run_check(
            {"name": "t", "kind": "tcp", "address": address, "timeout": "1s", "expect": r"\+PONG"}
        )
        release.set()
    assert result.error == "expect /\\+PONG/ did not match within 0.9s; received 3 bytes: '+PO'"
    assert value(result, "tcp_expect_matched") == 0
    assert result.duration < 15  # bounded by the timeout, not by the server


async def test_closed_port_fails_with_the_os_reason() -> None:
    port = free_port()
    result = await run_check({"name": "t", "kind": "tcp", "address": f"127.0.0.1:{port}"})
    assert result.error == f"connect to 127.0.0.1:{port}: connection refused"
    assert values(result, "tcp_connect_duration_seconds") == {}


async def test_tls_handshake_with_test_ca_reports_expiry(test_ca: LoopbackCA) -> None:
    context, not_after = test_ca.server_context()
    server, address = await listen(replying(b"+PONG\r\n", after=b"PING\r\n"), ssl=context)
    async with server:
        trusted, untrusted = await run_checks(
            [
                {
                    "name": "a",
                    "kind": "tcp",
                    "address": address,
                    "send": "PING\r\n",
                    "expect": r"^\+PONG",
                    "tls": {"ca_file": str(test_ca.ca_file)},
                },
                {"name": "b", "kind": "tcp", "address": address, "tls": True},
            ]
        )
    assert trusted.success, trusted.error
    assert value(trusted, "tcp_tls_cert_expiry_timestamp_seconds") == not_after
    assert value(trusted, "tcp_tls_handshake_duration_seconds") > 0
    assert value(trusted, "tcp_expect_matched") == 1
    assert untrusted.error == (
        f"TLS handshake with {address}: certificate verify failed: "
        "unable to get local issuer certificate"
    )
    assert value(untrusted, "tcp_connect_duration_seconds") > 0


async def test_expired_certificate_fails_unless_insecure(test_ca: LoopbackCA) -> None:
    context, not_after = test_ca.server_context(expired=True)
    server, address = await listen(replying(b""), ssl=context)
    async with server:
        verified, insecure = await run_checks(
            [
                {
                    "name": "a",
                    "kind": "tcp",
                    "address": address,
                    "tls": {"ca_file": str(test_ca.ca_file)},
                },
                {"name": "b", "kind": "tcp", "address": address, "tls": {"insecure": True}},
            ]
        )
    assert verified.error == (
        f"TLS handshake with {address}: certificate verify failed: certificate has expired"
    )
    assert insecure.success, insecure.error
    expiry = value(insecure, "tcp_tls_cert_expiry_timestamp_seconds")
    assert expiry == not_after < datetime.now(UTC).timestamp()


async def test_tls_against_a_plain_server_fails_with_reason() -> None:
    server, address = await listen(replying(b"HTTP/1.0 400 Bad Request\r\n\r\n", after=b"\n"))
    async with server:
        result = await run_check({"name": "t", "kind": "tcp", "address": address, "tls": True})
    assert result.error == (
        f"TLS handshake with {address}: the server does not speak TLS here (WRONG_VERSION_NUMBER)"
    )


async def test_ping_pong_against_a_real_redis(redis_server: RedisServer) -> None:
    result = await run_check(
        {
            "name": "redis",
            "kind": "tcp",
            "address": f"127.0.0.1:{redis_server.port}",
            "send": "PING\r\n",
            "expect": r"^\+PONG\r\n",
        }
    )
    assert result.success, result.error
    assert value(result, "tcp_expect_matched") == 1


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        (
            {"address": "localhost"},
            ['checks[0].address: expected host:port such as 127.0.0.1:5000, got "localhost"'],
        ),
        (
            {"address": "h:1", "tls": "yes"},
            [
                "checks[0].tls: expected true, false or a mapping with ca_file, insecure, "
                "server_name"
            ],
        ),
        (
            {"address": "h:1", "tls": {"insecure": "no", "sni": "x"}},
            [
                'checks[0].tls.insecure: expected true or false, got "no"',
                "checks[0].tls.sni: unknown key (known keys here: ca_file, insecure, server_name)",
            ],
        ),
        (
            {"address": "h:1", "expect": "(+PONG"},
            ["checks[0].expect: invalid regular expression: nothing to repeat at position 1"],
        ),
        ({"address": "h:1", "send": 5}, ["checks[0].send: expected a string, got 5"]),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "t", "kind": "tcp", **options}) == problems


def test_unresolvable_host_reason_is_the_resolver_message() -> None:
    """A real getaddrinfo failure, made locally (numeric-host lookup of a name)."""
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo("engine.internal", 80, flags=socket.AI_NUMERICHOST)
    reason = error_reason(caught.value)
    # os.strerror(-2) would say "Unknown error -2": gaierror codes are not errno values.
    assert reason == f"cannot resolve host: {caught.value.strerror}"
    assert "Unknown error" not in reason


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        (
            {"kind": "tcp", "address": "db..local:5432"},
            "checks[0].address: a label of the host name is empty or longer than 63 characters: "
            '"db..local:5432"',
        ),
        (
            {"kind": "http", "url": "http://engine..local/health"},
            "checks[0].url: a label of the host name is empty or longer than 63 characters: "
            '"engine..local"',
        ),
        (
            {"kind": "tcp", "address": f"{'x' * 64}.example:80"},
            "checks[0].address: a label of the host name is empty or longer than 63 characters: "
            f'"{"x" * 64}.example:80"',
        ),
        # aiohttp refused these on every request as "unexpected ValueError"; a token with
        # a trailing newline (a YAML block scalar) is the likely way to get one.
        (
            {"kind": "http", "url": "http://h/", "headers": {"Authorization": "Bearer t0k\n"}},
            "checks[0].headers.Authorization: control characters (such as a line break) in the "
            "value",
        ),
        (
            {"kind": "http", "url": "http://h/", "headers": {"X Api Key": "k"}},
            "checks[0].headers.X Api Key: not a valid header name "
            "(letters, digits and !#$%&'*+.^_`|~-)",
        ),
    ],
)
def test_values_that_fail_every_request_are_config_errors(
    check: dict[str, Any], problem: str
) -> None:
    # Before: every scrape failed with "unexpected UnicodeError: encoding with 'idna' codec".
    assert config_problems({"name": "c", **check}) == [problem]


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


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('::1', 80)"),
            "connection refused",
        ),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connection reset by peer"),
        (TimeoutError(), "timed out"),
        (OSError("Multiple exceptions: [Errno 111] ..."), "multiple exceptions: [Errno 111] ..."),
        (ValueError('FATAL:  role "x"\n  does not exist'), 'FATAL: role "x" does not exist'),
        (ValueError(), "ValueError"),
    ],
)
def test_one_reason_for_every_kind(error: BaseException, reason: str) -> None:
    """Reconciled: tcp/http said ``Connection refused`` (the OS text), postgres and redis
    ``connection refused``, postgres ``timed out`` where tcp said ``TimeoutError``; one
    function now answers for all, as a lower-case clause after the step."""
    assert error_reason(error) == reason
