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
import itertools
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url

from exporter.checks._net import TlsOptions, error_reason
from exporter.checks._redis_limits import (
    ReplyTooLarge,
    limited_parser_class,
    no_client_setinfo,
)
from exporter.checks.base import once_more_if_kept
from exporter.fields import Reader
from exporter.redact import MAX_REASON, REDACTOR

_T = TypeVar("_T")

SCHEMES = ("redis", "rediss", "unix")
# Two connections cover a pipeline plus a PING racing it; the runner is single-flight.
POOL_SIZE = 2
# RawRedis reads at most this many bytes per round trip (the bullmq kind keeps its
# round trips far below it: bounded event pages), and this many per read.
MAX_REPLY_BYTES = 64 << 20
READ_SIZE = 1 << 17
# hiredis allocates an array's slots when it reads the header, and freeing them walks
# every slot: "*1000000000" alone costs seconds of event loop when the reader is dropped.
# No reply RawRedis asks for has this many elements (pages and batches are bounded), so
# a larger array header fails the round trip before hiredis sees it.
MAX_ARRAY_ELEMENTS = 1_000_000
_BIG_ARRAY = re.compile(rb"\r\n\*(\d{7,})\r\n")


@dataclass(frozen=True)
class RedisConnOptions:
    url: str
    username: str | None
    password: str | None
    tls_ca_file: str | None
    tls_insecure_skip_verify: bool
    # Redis Sentinel: the master is looked up by name on each connect (so a failover is
    # followed by the next redial); the URL then gives credentials and database only.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None

    @property
    def where(self) -> str:
        """``host:port`` (or the socket path) for messages; never the userinfo."""
        if self.sentinel_master is not None:
            return f"sentinel master {self.sentinel_master}"
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
    if url and reader.has("url"):
        _check_db(reader, url)
    username = reader.str("username", None)
    password = reader.secret("password", None)
    ca_file = reader.str("tls_ca_file", None)
    insecure = reader.bool("tls_insecure_skip_verify", False)
    tls = url.startswith("rediss://")
    for key in ("tls_ca_file", "tls_insecure_skip_verify"):
        if reader.has(key) and reader.has("url") and not tls:
            reader.error(key, "only used with a rediss:// URL")
    if tls and ca_file and not os.path.isfile(ca_file):
        reader.error("tls_ca_file", f'no such file "{ca_file}"')
    sentinels = _sentinels(reader)
    master = reader.str("sentinel_master", None)
    if sentinels and not master:
        reader.error("sentinel_master", "required with sentinels: the master's name")
    if master and not reader.has("sentinels"):
        reader.error("sentinels", "required with sentinel_master: host:port of each sentinel")
    if sentinels and (tls or url.startswith("unix:")):
        reader.error("sentinels", "works with redis:// URLs only (no TLS, no unix socket)")
    return RedisConnOptions(
        url=url,
        username=username or None,
        password=password or None,
        tls_ca_file=ca_file or None,
        tls_insecure_skip_verify=bool(insecure),
        sentinels=sentinels,
        sentinel_master=master or None,
    )


def _sentinels(reader: Reader) -> tuple[tuple[str, int], ...]:
    value = reader.str_list("sentinels", ())
    if not reader.has("sentinels"):
        return ()
    if not value:
        reader.error("sentinels", "must not be empty")
    found: list[tuple[str, int]] = []
    for item in value:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            reader.error("sentinels", f'expected "host:port", got "{item}"')
            continue
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


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
    if options.sentinel_master is not None:
        return _sentinel_client(options, kwargs)
    return Redis.from_url(options.url, **kwargs)


def _sentinel_client(options: RedisConnOptions, kwargs: dict[str, Any]) -> Redis:
    """A client whose pool asks the sentinels for the master on every new connection."""
    from redis.asyncio.sentinel import Sentinel

    params: dict[str, Any] = parse_url(options.url)  # type: ignore[no-untyped-call]
    for key in ("username", "password", "db"):
        if key in params:
            kwargs.setdefault(key, params[key])
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(options.sentinels),
        socket_timeout=kwargs["socket_timeout"],
        socket_connect_timeout=kwargs["socket_connect_timeout"],
    )
    assert options.sentinel_master is not None

    class SentinelRedis(Redis):
        """Closes the connections to the sentinels with the client's own."""

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            for client in sentinel.sentinels:
                await client.aclose()

    client: Redis = sentinel.master_for(
        options.sentinel_master, redis_class=SentinelRedis, **kwargs
    )
    return client


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
    if isinstance(exc, NoSentinelAnswer):
        return f"redis {where}: {first_line(exc)}"
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
            return error_reason(cause)
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


Command = Sequence[str | int]


# Error replies that say "not now" (a script running too long, a dataset loading, a
# replica without its master), not "never": a failed scrape, not a refused feature.
TRANSIENT_ERRORS = ("BUSY", "LOADING", "MASTERDOWN")


def transient(reply: object) -> bool:
    """Whether ``reply`` is an error reply the server would not give a moment later."""
    return isinstance(reply, rexc.ResponseError) and str(reply).startswith(TRANSIENT_ERRORS)


class ProtocolViolation(rexc.ConnectionError):
    """The server's reply broke RESP or the reader's bounds; asking again would not help."""


class ReplyLimitExceeded(ProtocolViolation):
    """A round trip of :class:`RawRedis` brought more than its byte limit."""


class NoSentinelAnswer(rexc.ConnectionError):
    """No configured sentinel named the master; the message says what each one did."""


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
        # The parser of :meth:`exchange`, kept for the connection's life: a read can bring
        # messages past the reply that ends an exchange, and they belong to the next one.
        self._unsolicited: ReplyReader | None = None
        # Connections made so far: state a server keeps per connection (client tracking)
        # holds only while this number stays the same.
        self.dials = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still turn out dead on the next write)."""
        return self._writer is not None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write and return one reply per command."""
        return await self.execute_packed(pack(commands), len(commands))

    async def execute_packed(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` commands already in RESP (see :class:`CommandTemplate`)."""
        if not count:
            return []
        # A kept connection may have died with a server restart: redial once. Only reads
        # are sent, so repeating them is harmless; a protocol violation is not repeated
        # (the same request would bring the same reply).
        return await once_more_if_kept(
            lambda: self._round_trip(payload, count),
            kept=self._writer is not None,
            drop=self.close,
            lost=rexc.ConnectionError,
            repeatable=lambda exc: not isinstance(exc, ProtocolViolation),
        )

    async def execute_parts(
        self, parts: Iterable[tuple[bytes, int]], each: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        """Send several packed requests ``(payload, count)`` in one round trip and hand each
        one's replies to ``each`` as soon as they are in.

        Each payload is written as soon as ``parts`` yields it, so a lazy ``parts`` packs
        the next request while Redis already runs the first, and the caller's parsing of
        one part's replies overlaps Redis' work on the next. The byte limit applies to the
        whole round trip. A kept connection found dead is redialled once, only while no
        part has been handed over.
        """
        pending = iter(parts)
        sent: list[tuple[bytes, int]] = []
        delivered = False

        async def deliver(replies: list[Any]) -> None:
            nonlocal delivered
            delivered = True
            await each(replies)

        async def attempt() -> None:
            # A second attempt sends again what the first wrote, then the rest.
            again = list(sent)
            sent.clear()
            await self._parts_trip(itertools.chain(again, pending), sent, deliver)

        await once_more_if_kept(
            attempt,
            kept=self._writer is not None,
            drop=self.close,
            lost=rexc.ConnectionError,
            # Not after a protocol violation (the same request, the same reply), nor
            # once a part's replies were handed over (the caller would see them twice).
            repeatable=lambda exc: not delivered and not isinstance(exc, ProtocolViolation),
        )

    async def _parts_trip(
        self,
        parts: Iterator[tuple[bytes, int]],
        sent: list[tuple[bytes, int]],
        deliver: Callable[[list[Any]], Awaitable[None]],
    ) -> None:
        await self._dialled(lambda: self._send_parts(parts, sent, deliver))

    async def _dialled(self, step: Callable[[], Awaitable[_T]]) -> _T:
        """``step`` on this connection, dialled first when there is none; any failure
        closes it: half-read replies (a timeout, a cancelled scrape) leave the stream
        unusable."""
        if self._writer is None:
            await self._connect()
        try:
            return await step()
        except BaseException:
            await self.close()
            raise

    async def _send_parts(
        self,
        parts: Iterator[tuple[bytes, int]],
        sent: list[tuple[bytes, int]],
        deliver: Callable[[list[Any]], Awaitable[None]],
    ) -> None:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise rexc.ConnectionError("not connected")
        try:
            for payload, count in parts:
                sent.append((payload, count))
                writer.write(payload)
            await writer.drain()
            replies = ReplyReader(reader)
            for _, count in sent:
                await deliver(await replies.take(count))
        except OSError as exc:
            raise rexc.ConnectionError(f"{exc.strerror or exc}") from exc

    async def exchange(self, commands: Sequence[Command], done: Callable[[Any], bool]) -> list[Any]:
        """Send ``commands`` and read replies until one satisfies ``done``: for a
        connection that also receives messages it did not ask for (a subscribed one).

        Connects first if needed; never redials a kept connection (what it received is
        state of that connection), and closes it on any failure. What arrived after the
        reply ``done`` accepts (messages pushed meanwhile, read in the same chunk) is kept
        for the next exchange, not dropped.
        """

        def replies(reader: asyncio.StreamReader) -> Awaitable[list[Any]]:
            if self._unsolicited is None:
                self._unsolicited = ReplyReader(reader)
            return self._unsolicited.take_until(done, restart_limit=True)

        return await self._dialled(lambda: self._send_then(pack(commands), replies))

    async def _round_trip(self, payload: bytes, count: int) -> list[Any]:
        return await self._dialled(lambda: self._send(payload, count))

    async def _send(self, payload: bytes, count: int) -> list[Any]:
        return await self._send_then(payload, lambda reader: read_replies(reader, count))

    async def _send_then(
        self, payload: bytes, read: Callable[[asyncio.StreamReader], Awaitable[list[Any]]]
    ) -> list[Any]:
        """Write ``payload``, then ``read`` the replies; OS errors as ConnectionError."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise rexc.ConnectionError("not connected")
        try:
            writer.write(payload)
            await writer.drain()
            return await read(reader)
        except OSError as exc:
            raise rexc.ConnectionError(f"{exc.strerror or exc}") from exc

    async def _connect(self) -> None:  # noqa: C901 - connect, TLS, AUTH, SELECT, Sentinel and ROLE in one dial sequence
        params: dict[str, Any] = parse_url(self.options.url)  # type: ignore[no-untyped-call]
        if self.options.sentinel_master is not None:
            params["host"], params["port"] = await self._ask_sentinels()
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
        self.dials += 1
        setup: list[Command] = []
        password = self.options.password or params.get("password")
        username = self.options.username or params.get("username")
        if password:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if params.get("db"):
            setup.append(("SELECT", int(params["db"])))
        if self.options.sentinel_master is not None:
            # A sentinel may still name a demoted master for a moment after a failover.
            setup.append(("ROLE",))
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
            if command[0] == "ROLE" and not (isinstance(reply, list) and reply[:1] == ["master"]):
                await self.close()
                raise rexc.ConnectionError(
                    f"{params['host']}:{params['port']}, named master by the sentinels, is a "
                    "replica (failover in progress?)"
                )

    async def _ask_sentinels(self) -> tuple[str, int]:
        """The master's address from the first sentinel that knows it."""
        master = self.options.sentinel_master
        problems: list[str] = []
        for host, port in self.options.sentinels:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(pack([("SENTINEL", "get-master-addr-by-name", str(master))]))
                await writer.drain()
                (reply,) = await read_replies(reader, 1, limit=1 << 16)
            except (OSError, rexc.ConnectionError) as exc:
                problems.append(f"{host}:{port}: {_connection_reason(exc)}")
                continue
            finally:
                if writer is not None:
                    writer.close()
            if isinstance(reply, list) and len(reply) == 2 and str(reply[1]).isdigit():
                return str(reply[0]), int(reply[1])
            what = first_line(reply) if isinstance(reply, Exception) else "unknown master"
            problems.append(f"{host}:{port}: {what}")
        raise NoSentinelAnswer(f"no sentinel named the master ({'; '.join(problems)})")

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._unsolicited = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


def tls_context(options: RedisConnOptions) -> ssl.SSLContext:
    return TlsOptions(options.tls_ca_file, options.tls_insecure_skip_verify).context()


class Key(str):
    """In a :class:`CommandTemplate`, a key: the per-use base followed by this suffix."""


class Arg(str):
    """In a :class:`CommandTemplate`, a value given per use (``render(base, *values)``),
    in the order the Args appear; the text of the Arg itself is not used."""


class CommandTemplate:
    """Fixed commands over keys that share a base (``bull:ingest:``), rendered as RESP text.

    Packing argument by argument costs about a microsecond each; a queue's reads differ
    only in their base (and a few :class:`Arg` values), so they are laid out once and
    filled in with one format.
    """

    def __init__(self, commands: Sequence[Sequence[str]]) -> None:
        pieces: list[str] = []
        self._suffix_sizes: list[int] = []
        self._args = 0
        sizes = 0
        for command in commands:
            pieces.append(f"*{len(command)}\r\n")
            for arg in command:
                text = arg.replace("{", "{{").replace("}", "}}")
                size = len(arg.encode("utf-8"))
                if isinstance(arg, Key):
                    pieces.append(f"${{{sizes}}}\r\n{{base}}{text}\r\n")
                    self._suffix_sizes.append(size)
                    sizes += 1
                elif isinstance(arg, Arg):
                    pieces.append(f"${{size{self._args}}}\r\n{{arg{self._args}}}\r\n")
                    self._args += 1
                else:
                    pieces.append(f"${size}\r\n{text}\r\n")
        self._format = "".join(pieces)
        self.count = len(commands)

    def render(self, base: str, *values: str) -> str:
        if len(values) != self._args:
            raise ValueError(f"template takes {self._args} values, got {len(values)}")
        size = len(base) if base.isascii() else len(base.encode("utf-8", "surrogateescape"))
        fields: dict[str, str | int] = {"base": base}
        for index, value in enumerate(values):
            fields[f"arg{index}"] = value
            fields[f"size{index}"] = (
                len(value) if value.isascii() else len(value.encode("utf-8", "surrogateescape"))
            )
        return self._format.format(*[size + s for s in self._suffix_sizes], **fields)


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


async def read_replies(
    reader: asyncio.StreamReader, count: int, limit: int | None = None
) -> list[Any]:
    """Read exactly ``count`` replies with hiredis' incremental parser (see
    :class:`ReplyReader`); ``limit`` bounds the bytes of this round trip."""
    return await ReplyReader(reader, limit).take(count)


class ReplyReader:
    """The replies of one round trip, read with hiredis' incremental parser.

    The parser keeps its position between reads, so the cost is linear in the reply size
    and each step parses at most one read's worth of bytes (the event loop runs in
    between). ``limit`` bounds the bytes of the whole round trip (over every
    :meth:`take`): a server that sends a reply that never ends (or claims a bulk of 2^62
    bytes) fails it instead of growing memory. Protocol errors (a nesting deeper than
    RESP allows, a bad length) become :class:`redis.exceptions.ConnectionError`.
    """

    def __init__(self, reader: asyncio.StreamReader, limit: int | None = None) -> None:
        import hiredis  # loaded on first use: kinds import their client libraries lazily

        self._reader = reader
        self._parser = hiredis.Reader(
            encoding="utf-8",
            errors="surrogateescape",
            replyError=rexc.ResponseError,
        )
        self._limit = MAX_REPLY_BYTES if limit is None else limit
        self._received = 0
        # The end of the previous chunk (a header may straddle two reads); a reply starts
        # where a line ended.
        self._tail = b"\r\n"

    async def take(self, count: int) -> list[Any]:
        """The next ``count`` replies."""
        return await self._read(count, None)

    async def take_until(
        self, done: Callable[[Any], bool], *, restart_limit: bool = False
    ) -> list[Any]:
        """Replies up to and including the first one ``done`` accepts; those parsed past
        it stay for the next call. ``restart_limit``: the byte limit counts from here (a
        long-lived connection's exchanges are each a round trip)."""
        if restart_limit:
            self._received = 0
        return await self._read(None, done)

    async def _read(self, count: int | None, done: Callable[[Any], bool] | None) -> list[Any]:
        import hiredis

        parser, reader, limit = self._parser, self._reader, self._limit
        out: list[Any] = []
        gets, append = parser.gets, out.append  # tens of thousands of calls per round trip
        remaining = count
        try:
            while remaining != 0:
                reply = gets()
                if reply is not False:
                    append(reply)
                    if remaining is not None:
                        remaining -= 1
                    elif done is not None and done(reply):
                        break
                    continue
                chunk = await reader.read(READ_SIZE)
                if not chunk:
                    raise rexc.ConnectionError("connection closed by server")
                self._received += len(chunk)
                if self._received > limit:
                    raise ReplyLimitExceeded(f"protocol error: reply larger than {limit >> 20} MiB")
                _check_arrays(self._tail + chunk)
                self._tail = chunk[-32:]
                parser.feed(chunk)
        except hiredis.ProtocolError as exc:
            raise ProtocolViolation(f"protocol error: {exc}") from None
        return out


def _check_arrays(data: bytes) -> None:
    """Refuse array headers beyond MAX_ARRAY_ELEMENTS (one C-speed scan per read).

    Only headers after a line end match; bulk contents could, in theory, hold such a line
    too, and would then fail the round trip: a false alarm, never a wrong value.
    """
    for match in _BIG_ARRAY.finditer(data):
        if int(match[1]) > MAX_ARRAY_ELEMENTS:
            raise ProtocolViolation(
                f"protocol error: array of {int(match[1]):,} elements "
                f"(more than {MAX_ARRAY_ELEMENTS:,})"
            )
