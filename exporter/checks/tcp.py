"""``tcp``: is a port accepting connections, how long does connecting take; optionally a
TLS handshake and a send/expect exchange (``PING`` -> ``+PONG``), all within the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from dataclasses import dataclass

from exporter.alerting import Panel, cert_expiring, down
from exporter.checks._net import (
    TlsOptions,
    error_reason,
    host_problem,
    parse_tls_mapping,
    peer_cert_expiry,
)
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind, own_budget
from exporter.fields import Reader
from exporter.redact import REDACTOR
from exporter.samples import Family, Sink

CONNECT_SECONDS = Family(
    "tcp_connect_duration_seconds",
    "gauge",
    "Time to establish the TCP connection.",
)
TLS_SECONDS = Family(
    "tcp_tls_handshake_duration_seconds",
    "gauge",
    "Time of the TLS handshake after the TCP connection was established.",
)
TLS_EXPIRY = Family(
    "tcp_tls_cert_expiry_timestamp_seconds",
    "gauge",
    "Unix time when the server's TLS certificate expires.",
)
EXPECT_MATCHED = Family(
    "tcp_expect_matched",
    "gauge",
    "1 when the data received matched the expect pattern, 0 when it did not.",
)

# How much of the reply ``expect`` looks at: a banner or a short reply, not a stream.
EXPECT_READ_LIMIT = 64 * 1024


@dataclass(frozen=True)
class TcpOptions:
    host: str
    port: int
    tls: TlsOptions | None = None
    send: str | None = None
    expect: re.Pattern[str] | None = None


def parse_address(reader: Reader, key: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``, validated."""
    address = reader.str(key)
    if not address:
        return "", 0
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        reader.error(key, f'expected host:port such as 127.0.0.1:5000, got "{address}"')
        return "", 0
    problem = host_problem(host)
    if problem is not None:
        reader.error(key, f'{problem}: "{address}"')
        return "", 0
    return host, int(port_text)


# Lines of a send text that carry a credential: Redis AUTH, POP3/FTP PASS, IMAP LOGIN...
_CREDENTIAL_COMMAND = re.compile(r"(?i)^\s*(auth|pass|password|login)\b")


def register_send_secrets(send: str) -> None:
    """Mask the credential in each line of a ``send`` text that starts with a login
    command (``AUTH <password>``, ``AUTH <user> <password>``, ``PASS <password>``,
    ``LOGIN <user> <password>``): its last word is the password."""
    for line in send.splitlines():
        if _CREDENTIAL_COMMAND.match(line):
            words = line.split()
            if len(words) > 1:
                REDACTOR.register(words[-1])


def parse(reader: Reader) -> TcpOptions:
    host, port = parse_address(reader, "address")
    tls: TlsOptions | None = None
    raw_tls = reader.data.get("tls")
    if isinstance(raw_tls, bool):
        tls = TlsOptions() if reader.bool("tls") else None
    elif raw_tls is not None and not isinstance(raw_tls, dict):
        reader.raw("tls")
        reader.error("tls", "expected true, false or a mapping with ca_file, insecure, server_name")
    else:
        tls_reader = reader.mapping("tls")
        tls = parse_tls_mapping(tls_reader) if tls_reader is not None else None
    send = reader.str("send", None)
    if isinstance(send, str):
        register_send_secrets(send)
    expect = reader.regex("expect", None)
    return TcpOptions(host=host, port=port, tls=tls, send=send or None, expect=expect)


class TcpProbe(BaseProbe[TcpOptions]):
    def __init__(self, spec: CheckSpec[TcpOptions]) -> None:
        super().__init__(spec)
        # Built on first use and kept: a context loads the system CA store, about 20 ms
        # of CPU on the event loop, which every scrape paid before.
        self._tls_context: ssl.SSLContext | None = None
        send = spec.options.send
        self._send = send.encode() if send is not None else None

    @property
    def _address(self) -> str:
        host = self.options.host
        return f"[{host}]:{self.options.port}" if ":" in host else f"{host}:{self.options.port}"

    async def collect(self, out: Sink) -> None:
        budget = own_budget(self.spec.timeout)
        step = "connect"
        received = bytearray()
        try:
            async with asyncio.timeout(budget):
                started = time.perf_counter()
                try:
                    reader, writer = await asyncio.open_connection(
                        self.options.host, self.options.port
                    )
                except OSError as exc:
                    raise CheckFailed(f"connect to {self._address}: {error_reason(exc)}") from None
                out.add(CONNECT_SECONDS, time.perf_counter() - started)
                try:
                    if self.options.tls is not None:
                        step = "TLS handshake"
                        await self._handshake(writer, self.options.tls, out)
                    if self._send is not None:
                        step = "send"
                        writer.write(self._send)
                        await writer.drain()
                    if self.options.expect is not None:
                        step = "expect"
                        await self._expect(reader, self.options.expect, received, out)
                finally:
                    await _close(writer)
        except TimeoutError:
            if step != "expect":
                raise CheckFailed(
                    f"{step} to {self._address}: no answer within {budget:.3g}s"
                ) from None
            out.add(EXPECT_MATCHED, 0)
            raise CheckFailed(
                f"expect /{self.options.expect.pattern if self.options.expect else ''}/ "
                f"did not match within {budget:.3g}s; {_excerpt(received)}"
            ) from None
        except OSError as exc:  # resets, TLS alerts, EHOSTUNREACH mid-exchange
            if step == "expect":
                out.add(EXPECT_MATCHED, 0)
            raise CheckFailed(f"{step} to {self._address}: {error_reason(exc)}") from None

    async def _handshake(self, writer: asyncio.StreamWriter, tls: TlsOptions, out: Sink) -> None:
        started = time.perf_counter()
        try:
            if self._tls_context is None:
                self._tls_context = tls.context()
            await writer.start_tls(
                self._tls_context, server_hostname=tls.server_name or self.options.host
            )
        except (ssl.SSLError, OSError) as exc:
            raise CheckFailed(f"TLS handshake with {self._address}: {error_reason(exc)}") from None
        out.add(TLS_SECONDS, time.perf_counter() - started)
        expiry = peer_cert_expiry(writer.get_extra_info("ssl_object"))
        if expiry is not None:
            out.add(TLS_EXPIRY, expiry)

    async def _expect(
        self,
        reader: asyncio.StreamReader,
        pattern: re.Pattern[str],
        received: bytearray,
        out: Sink,
    ) -> None:
        while True:
            text = received.decode("utf-8", errors="replace")
            if pattern.search(text):
                out.add(EXPECT_MATCHED, 1)
                return
            if len(received) >= EXPECT_READ_LIMIT:
                break
            chunk = await reader.read(EXPECT_READ_LIMIT - len(received))
            if not chunk:
                break
            received += chunk
        out.add(EXPECT_MATCHED, 0)
        ended = "limit reached" if len(received) >= EXPECT_READ_LIMIT else "connection closed"
        raise CheckFailed(
            f"expect /{pattern.pattern}/ did not match ({ended}); {_excerpt(received)}"
        )


def _excerpt(received: bytearray) -> str:
    """What the server said, shortened: the operator's best clue to a failed expect."""
    if not received:
        return "received nothing"
    text = bytes(received[:60]).decode("utf-8", errors="replace")
    more = "..." if len(received) > 60 else ""
    return f"received {len(received)} bytes: {text!r}{more}"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # A peer that never answers the TLS close must not hold the check open.
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


KIND = Kind(
    name="tcp",
    summary="Port reachability and connect time; optional TLS handshake and send/expect.",
    parse=parse,
    probe=TcpProbe,
    families=(CONNECT_SECONDS, TLS_SECONDS, TLS_EXPIRY, EXPECT_MATCHED),
    target="address",
    alerts=(
        down(
            "TCP service",
            120.0,
            (
                "Check the service behind the port is running and listening (ss -ltnp).",
                "Check the network path and firewall from the exporter's host.",
            ),
        ),
        cert_expiring("tcp_tls_cert_expiry_timestamp_seconds"),
    ),
    panels=(Panel("TCP connect time", 'tcp_connect_duration_seconds{check=~"$check"}', "seconds"),),
)
