"""``tcp``: is a port accepting connections, and how long does connecting take."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from exporter.checks.base import BaseProbe, CheckFailed, Kind
from exporter.fields import Reader
from exporter.samples import Family, Sink

CONNECT_SECONDS = Family(
    "tcp_connect_duration_seconds",
    "gauge",
    "Time to establish the TCP connection.",
)


@dataclass(frozen=True)
class TcpOptions:
    host: str
    port: int


def parse_address(reader: Reader, key: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``, validated."""
    address = reader.str(key)
    if not isinstance(address, str) or not address:
        return "", 0
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        reader.error(key, f'expected host:port such as 127.0.0.1:5000, got "{address}"')
        return "", 0
    return host, int(port_text)


def parse(reader: Reader) -> TcpOptions:
    host, port = parse_address(reader, "address")
    return TcpOptions(host=host, port=port)


class TcpProbe(BaseProbe[TcpOptions]):
    async def collect(self, out: Sink) -> None:
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(self.options.host, self.options.port)
        except OSError as exc:
            raise CheckFailed(f"connect to {self.options.host}:{self.options.port}: "
                              f"{exc.strerror or exc}") from None
        out.add(CONNECT_SECONDS, time.perf_counter() - started)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the peer reset after accepting: reachability is what was asked


KIND = Kind(
    name="tcp",
    summary="Port reachability and connect time.",
    parse=parse,
    probe=TcpProbe,
    families=(CONNECT_SECONDS,),
)
