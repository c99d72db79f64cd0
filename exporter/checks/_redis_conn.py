"""Connection options and clients shared by the ``redis`` and ``bullmq`` kinds.

Both kinds take the same keys (``url``, ``username``, ``password``, ``tls_ca_file``,
``tls_insecure_skip_verify``), connect lazily on the first scrape, reconnect after failures,
and turn failures into short operator reasons without secrets. The ``redis`` kind uses a
redis-py client; the ``bullmq`` kind, which sends thousands of commands per scrape, uses
:class:`RawRedis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url

from exporter.checks._redis_limits import (
    ReplyTooLarge,
    limited_parser_class,
    no_client_setinfo,
)
from exporter.checks.tcp import TlsOptions
from exporter.fields import Reader
from exporter.redact import MAX_REASON, REDACTOR

SCHEMES = ("redis", "rediss", "unix")
# Two connections cover a pipeline plus a PING racing it; the runner is single-flight.
POOL_SIZE = 2


@dataclass(frozen=True)
class RedisConnOptions:
    url: str
    username: str | None
    password: str | None
    tls_ca_file: str | None
    tls_insecure_skip_verify: bool

    @property
    def where(self) -> str:
        """``host:port`` (or the socket path) for messages; never the userinfo."""
        try:
            parts = urlsplit(self.url)
            if parts.scheme == "unix":
                return parts.path
            return f"{parts.hostname}:{parts.port or 6379}"
        except ValueError:
            return "redis"


def parse_conn(reader: Reader) -> RedisConnOptions:
    """Read the connection keys; problems go to ``reader``."""
    url = reader.url("url", SCHEMES)
    if isinstance(url, str) and url and reader.has("url"):
        _check_db(reader, url)
    username = reader.str("username", None)
    password = reader.secret("password", None)
    ca_file = reader.str("tls_ca_file", None)
    insecure = reader.bool("tls_insecure_skip_verify", False)
    tls = isinstance(url, str) and url.startswith("rediss://")
    for key in ("tls_ca_file", "tls_insecure_skip_verify"):
        if reader.has(key) and reader.has("url") and not tls:
            reader.error(key, "only used with a rediss:// URL")
    if tls and isinstance(ca_file, str) and ca_file and not os.path.isfile(ca_file):
        reader.error("tls_ca_file", f'no such file "{ca_file}"')
    return RedisConnOptions(
        url=url if isinstance(url, str) else "",
        username=username or None,
        password=password or None,
        tls_ca_file=ca_file or None,
        tls_insecure_skip_verify=bool(insecure),
    )


def _check_db(reader: Reader, url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # reader.url reported it
    if parts.scheme == "unix":
        return
    db = parts.path.strip("/")
    if db and not db.isdigit():
        reader.error("url", f'database must be a number such as /0, got "/{db}"')


def make_client(options: RedisConnOptions, timeout: float) -> Redis:
    """A client with a small pool; connects on first use, redials after failures."""
    kwargs: dict[str, Any] = {
        # RESP2 and no HELLO: the kind sends PING and INFO only, and works with Redis < 6.
        "protocol": 2,
        # Replies are bounded (see _redis_limits): a hostile server cannot grow the heap.
        "parser_class": limited_parser_class(),
        **no_client_setinfo(),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "max_connections": POOL_SIZE,
        "health_check_interval": 0,
        # One immediate retry on a connection error: a pooled connection that died with
        # a Redis restart is redialled within the same scrape instead of failing it.
        "retry": Retry(NoBackoff(), 1, supported_errors=(rexc.ConnectionError,)),
    }
    if options.username is not None:
        kwargs["username"] = options.username
    if options.password is not None:
        kwargs["password"] = options.password
    if options.url.startswith("rediss://"):
        if options.tls_ca_file:
            kwargs["ssl_ca_certs"] = options.tls_ca_file
        if options.tls_insecure_skip_verify:
            kwargs["ssl_cert_reqs"] = "none"
            kwargs["ssl_check_hostname"] = False
    return Redis.from_url(options.url, **kwargs)


def reason(exc: BaseException, where: str) -> str:
    """A short, secret-free sentence for a failed Redis call."""
    if isinstance(exc, rexc.AuthenticationError):
        return f"redis {where}: authentication failed ({first_line(exc)})"
    if isinstance(exc, rexc.NoPermissionError):
        return f"redis {where}: permission denied: {first_line(exc)}"
    if isinstance(exc, rexc.BusyLoadingError):
        return f"redis {where}: still loading its dataset"
    if isinstance(exc, rexc.TimeoutError):
        return f"redis {where}: timed out"
    if isinstance(exc, rexc.ConnectionError):
        return f"redis {where}: {_connection_reason(exc)}"
    if isinstance(exc, ReplyTooLarge):
        return f"redis {where}: {first_line(exc)}"
    if isinstance(exc, rexc.ResponseError):
        text = first_line(exc)
        if text.startswith(("NOAUTH", "WRONGPASS")):
            return f"redis {where}: authentication failed ({text})"
        return f"redis {where}: {text}"
    return f"redis {where}: {type(exc).__name__}: {first_line(exc)}"


def _connection_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            if cause.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (cause.strerror or str(cause)).lower()
        cause = cause.__cause__ or cause.__context__
    text = first_line(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "closed" in text.lower() or "reset" in text.lower():
        return "connection closed by server"
    return text or "connection failed"


def first_line(exc: BaseException) -> str:
    # A server's error line can be any length: cut before redacting.
    text = str(exc)[: MAX_REASON * 2].strip().splitlines()
    return REDACTOR.reason(text[0]) if text else type(exc).__name__


class _Incomplete(Exception):
    """The buffer ends inside a reply: read more."""


Command = Sequence[str | int]


class RawRedis:
    """One RESP2 connection that sends and parses large pipelines in bulk.

    redis-py spends about 20 µs per reply in a pipeline (a readline and a timeout context
    each); one bullmq scrape of 1,000 queues is 16,000 commands, so that kind packs its
    commands and parses the replies here, over a plain connection it opens and
    authenticates itself. Error replies come back as :class:`redis.exceptions.ResponseError`
    objects in place, like redis-py's ``raise_on_error=False``; connection problems raise
    :class:`redis.exceptions.ConnectionError` (with the OS error as cause) so that
    :func:`reason` reads both kinds' failures alike.
    """

    def __init__(self, options: RedisConnOptions) -> None:
        self.options = options
        # Built on the first TLS connect and kept: a context loads the CA store (about
        # 20 ms of CPU on the event loop), and a redial follows every failed scrape.
        self._ssl_context: ssl.SSLContext | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write and return one reply per command."""
        return await self.execute_packed(pack(commands), len(commands))

    async def execute_packed(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` commands already in RESP (see :class:`CommandTemplate`)."""
        if not count:
            return []
        fresh = self._writer is None
        try:
            return await self._round_trip(payload, count)
        except rexc.ConnectionError:
            if fresh:
                raise
            # A kept connection may have died with a server restart: redial once. Only
            # reads are sent, so repeating them is harmless.
            return await self._round_trip(payload, count)

    async def _round_trip(self, payload: bytes, count: int) -> list[Any]:
        if self._writer is None:
            await self._connect()
        try:
            return await self._send(payload, count)
        except BaseException:
            # Half-read replies (a timeout, a cancelled scrape) leave the stream unusable.
            await self.close()
            raise

    async def _send(self, payload: bytes, count: int) -> list[Any]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise rexc.ConnectionError("not connected")
        try:
            writer.write(payload)
            await writer.drain()
            return await read_replies(reader, count)
        except OSError as exc:
            raise rexc.ConnectionError(f"{exc.strerror or exc}") from exc

    async def _connect(self) -> None:
        params: dict[str, Any] = parse_url(self.options.url)  # type: ignore[no-untyped-call]
        try:
            if "path" in params:
                reader, writer = await asyncio.open_unix_connection(params["path"])
            else:
                if self._ssl_context is None and self.options.url.startswith("rediss://"):
                    self._ssl_context = tls_context(self.options)
                reader, writer = await asyncio.open_connection(
                    params.get("host", "localhost"),
                    params.get("port", 6379),
                    ssl=self._ssl_context,
                )
        except OSError as exc:
            raise rexc.ConnectionError(f"{exc.strerror or exc}") from exc
        self._reader, self._writer = reader, writer
        setup: list[Command] = []
        password = self.options.password or params.get("password")
        username = self.options.username or params.get("username")
        if password:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if params.get("db"):
            setup.append(("SELECT", int(params["db"])))
        if not setup:
            return
        try:
            replies = await self._send(pack(setup), len(setup))
        except BaseException:
            await self.close()
            raise
        for command, reply in zip(setup, replies, strict=True):
            if isinstance(reply, rexc.ResponseError):
                await self.close()
                if command[0] == "AUTH":
                    raise rexc.AuthenticationError(str(reply))
                raise reply

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


def tls_context(options: RedisConnOptions) -> ssl.SSLContext:
    return TlsOptions(options.tls_ca_file, options.tls_insecure_skip_verify).context()


class Key(str):
    """In a :class:`CommandTemplate`, a key: the per-use base followed by this suffix."""


class CommandTemplate:
    """Fixed commands over keys that share a base (``bull:ingest:``), rendered as RESP text.

    Packing argument by argument costs about a microsecond each; a queue's dozen reads
    differ only in their base, so they are laid out once and filled in with one format.
    """

    def __init__(self, commands: Sequence[Sequence[str]]) -> None:
        pieces: list[str] = []
        self._suffix_sizes: list[int] = []
        for command in commands:
            pieces.append(f"*{len(command)}\r\n")
            for arg in command:
                text = arg.replace("{", "{{").replace("}", "}}")
                size = len(arg.encode("utf-8"))
                if isinstance(arg, Key):
                    pieces.append(f"${{{len(self._suffix_sizes)}}}\r\n{{base}}{text}\r\n")
                    self._suffix_sizes.append(size)
                else:
                    pieces.append(f"${size}\r\n{text}\r\n")
        self._format = "".join(pieces)
        self.count = len(commands)

    def render(self, base: str) -> str:
        size = len(base) if base.isascii() else len(base.encode("utf-8", "surrogateescape"))
        return self._format.format(*[size + s for s in self._suffix_sizes], base=base)


def pack_text(commands: Sequence[Command]) -> str:
    """Like :func:`pack`, as text to join with rendered templates (encode once at the end)."""
    parts: list[str] = []
    add = parts.append
    for command in commands:
        add(f"*{len(command)}\r\n")
        for arg in command:
            text = arg if isinstance(arg, str) else str(arg)
            size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))
            add(f"${size}\r\n{text}\r\n")
    return "".join(parts)


def pack(commands: Sequence[Command]) -> bytes:
    """RESP arrays of bulk strings; ASCII arguments (nearly all keys) skip a per-arg encode."""
    return pack_text(commands).encode("utf-8", "surrogateescape")


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[Any]:
    """Read exactly ``count`` replies, parsing whole chunks at a time."""
    out: list[Any] = []
    buffer = b""
    pos = 0
    while len(out) < count:
        if buffer.startswith(b"+QUEUED\r\n", pos):
            # Half the replies of a MULTI/EXEC batch: skip the general parser.
            out.append("QUEUED")
            pos += 9
            continue
        try:
            value, pos = _parse(buffer, pos)
        except _Incomplete:
            chunk = await reader.read(1 << 17)
            if not chunk:
                raise rexc.ConnectionError("connection closed by server") from None
            buffer = buffer[pos:] + chunk
            pos = 0
            continue
        out.append(value)
    return out


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 58:  # ':' integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 36:  # '$' bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        start = end + 2
        stop = start + size
        if stop + 2 > len(buf):
            raise _Incomplete
        return buf[start:stop].decode("utf-8", "surrogateescape"), stop + 2
    if kind == 42:  # '*' array
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        pos = end + 2
        items = []
        for _ in range(size):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 43:  # '+' simple string
        return buf[pos + 1 : end].decode("utf-8", "replace"), end + 2
    if kind == 45:  # '-' error
        return rexc.ResponseError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    raise rexc.ConnectionError(f"protocol error: unexpected reply type {chr(kind)!r}")
