"""Connection options and client construction shared by the ``redis`` and ``bullmq`` kinds.

Both kinds take the same keys (``url``, ``username``, ``password``, ``tls_ca_file``,
``tls_insecure_skip_verify``), open one small pool lazily on the first scrape, and turn
redis-py's exceptions into short operator reasons without secrets.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from exporter.fields import Reader
from exporter.redact import REDACTOR

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
        if reader.has(key) and not tls:
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
        return f"redis {where}: authentication failed ({_first_line(exc)})"
    if isinstance(exc, rexc.NoPermissionError):
        return f"redis {where}: permission denied: {_first_line(exc)}"
    if isinstance(exc, rexc.BusyLoadingError):
        return f"redis {where}: still loading its dataset"
    if isinstance(exc, rexc.TimeoutError):
        return f"redis {where}: timed out"
    if isinstance(exc, rexc.ConnectionError):
        return f"redis {where}: {_connection_reason(exc)}"
    if isinstance(exc, rexc.ResponseError):
        text = _first_line(exc)
        if text.startswith(("NOAUTH", "WRONGPASS")):
            return f"redis {where}: authentication failed ({text})"
        return f"redis {where}: {text}"
    return f"redis {where}: {type(exc).__name__}: {_first_line(exc)}"


def _connection_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            if cause.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (cause.strerror or str(cause)).lower()
        cause = cause.__cause__ or cause.__context__
    text = _first_line(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "closed" in text.lower() or "reset" in text.lower():
        return "connection closed by server"
    return text or "connection failed"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return REDACTOR.redact(text[0]) if text else type(exc).__name__
