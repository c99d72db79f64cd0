"""The exporter-toolkit web configuration (``--web.config.file``), accepted and refused as
exporter-toolkit accepts and refuses it: TLS (files or inline PEM, client certificates,
cipher suites, curves, versions), allowed client SANs, response headers, HTTP/2, a rate
limit and basic-auth users with bcrypt hashes.

Every refusal names its key and value. Start-up never runs bcrypt (a cost-18 hash takes
~20 s): hashes are checked for shape and cost only, and verified on first use.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter.config import parse_yaml
from exporter.fields import (
    ConfigError,
    Problems,
    Reader,
    describe,
    is_list,
    is_mapping,
    parse_duration,
)
from exporter.redact import REDACTOR

if TYPE_CHECKING:
    from exporter._libssl import OpenSSL

# Go's tls.CipherSuites() (the secure list exporter-toolkit accepts) -> OpenSSL's name.
# TLS 1.3 suites are accepted and, as in Go, not configurable: None.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# HTTP/2 (RFC 7540 9.2.2) needs one of these when a cipher list is given; Go refuses to
# serve otherwise, and so does this exporter, for the same config.
HTTP2_CIPHERS = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
CURVES = {"CurveP256": "P-256", "CurveP384": "P-384", "CurveP521": "P-521", "X25519": "X25519"}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# Header -> allowed values (empty: any value), exporter-toolkit's list.
EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MAX_PASSWORD = 72  # bytes bcrypt reads; longer passwords are refused, not cut
VERIFIED_CACHE_SIZE = 100
MAX_PENDING_VERIFICATIONS = 64


@dataclass(frozen=True)
class TLSConfig:
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    client_auth_type: str
    client_ca_pem: str | None
    cipher_suites: tuple[str, ...]
    curves: tuple[str, ...]
    min_version: str
    max_version: str
    prefer_server_cipher_suites: bool
    client_allowed_sans: tuple[str, ...] | None


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds per token
    burst: int


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None
    basic_auth_users: tuple[tuple[str, bytes], ...]  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    http2: bool = True
    rate_limit: RateLimit | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context; raises ssl.SSLError/OSError/ValueError when unusable."""
        return build_ssl_context(self.tls) if self.tls is not None else None

    def middlewares(self) -> list[Middleware]:
        """Rate limit, allowed client SANs, response headers and basic auth, in that order."""
        out: list[Middleware] = []
        if self.rate_limit is not None:
            out.append(_rate_limit(self.rate_limit))
        if self.headers:
            out.append(_headers(self.headers))
        if self.tls is not None and self.tls.client_allowed_sans is not None:
            out.append(_allowed_sans(self.tls.client_allowed_sans))
        if self.basic_auth_users:
            out.append(basic_auth(BasicAuth(dict(self.basic_auth_users))))
        return out


NO_WEB_CONFIG = WebConfig(tls=None, basic_auth_users=())


def load_web_config(path: str) -> WebConfig:
    """Read and validate ``--web.config.file``; every problem is reported at once."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    data = parse_yaml(text, path)
    if data is None:
        return NO_WEB_CONFIG
    if not is_mapping(data):
        raise ConfigError(
            [
                f"{path}: expected a mapping with tls_server_config, "
                f"http_server_config, rate_limit, basic_auth_users; got {describe(data)}"
            ]
        )
    problems = Problems()
    top = Reader(data, "", problems)
    base = Path(path).resolve().parent
    http2, headers = _read_http(top.mapping("http_server_config"))
    tls = _read_tls(top.mapping("tls_server_config"), base, http2)
    rate_limit = _read_rate_limit(top.mapping("rate_limit"))
    users = _read_users(top)
    top.done()
    if problems.items:
        raise ConfigError([f"{path}: {p}" for p in problems.items])
    web_config = WebConfig(tls, users, headers, http2, rate_limit)
    if tls is not None:
        try:
            web_config.ssl_context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError([f"{path}: tls_server_config: {_ssl_reason(exc)}"]) from None
    return web_config


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"cannot load the certificate and key: {exc.reason or exc}"
    return str(exc)


def _read_http(reader: Reader | None) -> tuple[bool, tuple[tuple[str, str], ...]]:
    if reader is None:
        return True, ()
    http2 = reader.bool("http2", True)
    raw = reader.raw("headers", {})
    headers: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping):
        reader.error(
            "headers", f"expected a mapping of header names to values, got {describe(raw)}"
        )
        raw = {}
    for name, value in raw.items():
        where = f"headers.{name}"
        allowed = EXTRA_HEADERS.get(name) if isinstance(name, str) else None
        if allowed is None:
            reader.error(
                where,
                f"HTTP header {describe(name)} can not be configured "
                f"(allowed: {', '.join(EXTRA_HEADERS)})",
            )
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            reader.error(where, f"expected a string, got {describe(value)}")
            continue
        text = str(value)
        if allowed and text not in allowed:
            reader.error(
                where,
                f"invalid value for {name}: expected one of {', '.join(allowed)}, "
                f"got {describe(text)}",
            )
            continue
        if "\n" in text or "\r" in text:
            reader.error(where, "a header value cannot contain a line break")
            continue
        headers.append((name, text))
    reader.done()
    return bool(http2), tuple(headers)


def _read_tls(reader: Reader | None, base: Path, http2: bool) -> TLSConfig | None:  # noqa: C901 - one branch per exporter-toolkit tls_server_config key, each refused with its value
    if reader is None:
        return None
    cert_text = reader.str("cert", "", non_empty=False)
    key_text = reader.str("key", "", non_empty=False)
    if isinstance(key_text, str) and key_text:
        REDACTOR.register(key_text.strip())
    cert_file = reader.str("cert_file", "", non_empty=False)
    key_file = reader.str("key_file", "", non_empty=False)
    ca_text = reader.str("client_ca", "", non_empty=False)
    ca_file = reader.str("client_ca_file", "", non_empty=False)
    auth = reader.str("client_auth_type", "", non_empty=False)
    ciphers = _names(reader, "cipher_suites", CIPHER_SUITES, "cipher")
    curves = _names(reader, "curve_preferences", CURVES, "curve")
    min_version = _version(reader, "min_version", "TLS12")
    max_version = _version(reader, "max_version", "TLS13")
    prefer = reader.bool("prefer_server_cipher_suites", True)
    sans = reader.raw("client_allowed_sans", None)
    reader.done()
    enabled = any((cert_text, key_text, cert_file, key_file, ca_text, ca_file, auth))
    if not enabled:
        return None  # as exporter-toolkit: an empty tls_server_config serves plain HTTP
    allowed_sans: tuple[str, ...] | None = None
    if sans is not None:
        if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
            reader.error("client_allowed_sans", f"expected a list of strings, got {describe(sans)}")
        else:
            allowed_sans = tuple(sans)
    if not cert_text and not cert_file:
        reader.error(None, "missing one of cert or cert_file")
    if not key_text and not key_file:
        reader.error(None, "missing one of key or key_file")
    if auth == "RequireClientCert":  # exporter-toolkit keeps this old name working
        auth = "RequireAnyClientCert"
    if auth and auth not in CLIENT_AUTH_TYPES:
        reader.error(
            "client_auth_type",
            f"invalid ClientAuth {describe(auth)} (expected one of {', '.join(CLIENT_AUTH_TYPES)})",
        )
    auth = auth or "NoClientCert"
    cert = _pem(reader, "cert_file", cert_file, base) if cert_file else cert_text.encode()
    key = _pem(reader, "key_file", key_file, base) if key_file else key_text.encode()
    ca: str | None = None
    if ca_file:
        ca_bytes = _pem(reader, "client_ca_file", ca_file, base)
        ca = ca_bytes.decode("utf-8", errors="replace")
        if ca_bytes and "-----BEGIN CERTIFICATE-----" not in ca:
            reader.error("client_ca_file", f"{describe(ca_file)} holds no PEM certificate")
    elif ca_text:
        ca = ca_text
    if (ca_file or ca_text) and auth == "NoClientCert":
        reader.error(
            "client_auth_type",
            "client CA's have been configured without a Client Auth Policy: "
            "set client_auth_type (e.g. RequireAndVerifyClientCert)",
        )
    if TLS_VERSIONS.get(min_version, 0) > TLS_VERSIONS.get(max_version, 99):
        reader.error("min_version", f"{min_version} is above max_version {max_version}")
    if http2 and ciphers and not any(c in HTTP2_CIPHERS for c in ciphers):
        reader.error(
            "cipher_suites",
            "TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher "
            f"(add {' or '.join(HTTP2_CIPHERS)}, or set http_server_config.http2: false)",
        )
    return TLSConfig(
        cert_pem=cert,
        key_pem=key,
        client_auth_type=auth,
        client_ca_pem=ca,
        cipher_suites=tuple(ciphers),
        curves=tuple(curves),
        min_version=min_version,
        max_version=max_version,
        prefer_server_cipher_suites=bool(prefer),
        client_allowed_sans=allowed_sans,
    )


def _pem(reader: Reader, key: str, name: str, base: Path) -> bytes:
    path = base / name  # relative paths are relative to the web config file, as in Go
    try:
        return path.read_bytes()
    except OSError as exc:
        reader.error(key, f"cannot read {describe(name)}: {exc.strerror or exc}")
        return b""


def _names(reader: Reader, key: str, known: Mapping[str, object], what: str) -> list[str]:
    raw = reader.raw(key, [])
    if raw is None:
        return []
    if not is_list(raw):
        reader.error(key, f"expected a list of {what} names, got {describe(raw)}")
        return []
    out = []
    for index, name in enumerate(raw):
        if isinstance(name, str) and name in known:
            out.append(name)
        else:
            reader.error(
                f"{key}[{index}]", f"unknown {what} {describe(name)} (known: {', '.join(known)})"
            )
    return out


def _version(reader: Reader, key: str, default: str) -> str:
    value = reader.raw(key, default)
    if value not in TLS_VERSIONS:
        reader.error(
            key, f"unknown TLS version {describe(value)} (known: {', '.join(TLS_VERSIONS)})"
        )
        return default
    return str(value)


def _read_rate_limit(reader: Reader | None) -> RateLimit | None:
    if reader is None:
        return None
    raw_interval = reader.raw("interval", 0)
    burst = reader.int("burst", 0, minimum=0)
    reader.done()
    if raw_interval == 0 or raw_interval == "0":
        return None  # as exporter-toolkit: no interval, no limiter
    interval = parse_duration(raw_interval) if isinstance(raw_interval, str) else None
    if interval is None:
        reader.error("interval", f"expected a duration such as 1s, got {describe(raw_interval)}")
        return None
    return RateLimit(interval=interval, burst=int(burst))


def _read_users(top: Reader) -> tuple[tuple[str, bytes], ...]:
    users = top.raw("basic_auth_users", {})
    if users is None:
        return ()
    if not isinstance(users, Mapping):
        top.error("basic_auth_users", "expected a mapping of user names to bcrypt hashes")
        return ()
    out = []
    for user, hashed in users.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            top.problems.add(
                where,
                "expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 \"\" | tr -d ':\\n')",
            )
            continue
        match = _BCRYPT.fullmatch(hashed)
        # Shape and cost only: verifying here would run bcrypt at start (cost 18: ~20 s).
        if match is None or not 4 <= int(match["cost"]) <= 31:
            top.problems.add(where, "not a valid bcrypt hash (expected $2y$NN$ and 53 characters)")
            continue
        out.append((str(user), hashed.encode()))
    return tuple(out)


# --- the SSL context ------------------------------------------------------------------


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    with _memory_files(tls.cert_pem, tls.key_pem) as (cert, key):
        context.load_cert_chain(cert, key)
    tls12 = [CIPHER_SUITES[c] for c in tls.cipher_suites if CIPHER_SUITES[c]]
    if tls12:
        context.set_ciphers(":".join(c for c in tls12 if c))
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curves:
        _openssl().set_groups(context, [CURVES[c] for c in tls.curves])
    if tls.client_ca_pem:
        context.load_verify_locations(cadata=tls.client_ca_pem)
    context.set_alpn_protocols(["http/1.1"])  # aiohttp serves HTTP/1.1 only
    auth = tls.client_auth_type
    if auth == "VerifyClientCertIfGiven":
        context.verify_mode = ssl.CERT_OPTIONAL
    elif auth == "RequireAndVerifyClientCert":
        context.verify_mode = ssl.CERT_REQUIRED
    elif auth in ("RequestClientCert", "RequireAnyClientCert"):
        # Ask for a certificate but accept any (Go's semantics): Python's ssl module has no
        # switch for that, so the verify callback is set through libssl itself.
        _openssl().accept_any_client_cert(context, required=auth == "RequireAnyClientCert")
    return context


@contextlib.contextmanager
def _memory_files(*contents: bytes) -> Iterator[list[str]]:
    """Paths to ``contents`` for ssl's file-only loaders; in memory where Linux allows."""
    import tempfile  # only inline cert/key need it: not loaded by every exporter

    fds: list[int] = []
    with tempfile.TemporaryDirectory(prefix="webconfig-") as directory:
        paths = []
        for index, content in enumerate(contents):
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create(f"webconfig{index}")
                fds.append(fd)
                os.write(fd, content)
                paths.append(f"/proc/self/fd/{fd}")
            else:  # pragma: no cover - non-Linux
                path = Path(directory) / str(index)
                path.touch(mode=0o600)
                path.write_bytes(content)
                paths.append(str(path))
        try:
            yield paths
        finally:
            for fd in fds:
                os.close(fd)


_OPENSSL: OpenSSL | None = None  # exporter._libssl, loaded on first use


def _openssl() -> OpenSSL:
    global _OPENSSL
    if _OPENSSL is None:
        from exporter._libssl import OpenSSL

        _OPENSSL = OpenSSL()
    return _OPENSSL


# --- middlewares ----------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _rate_limit(limit: RateLimit) -> Middleware:
    """A token bucket like golang.org/x/time/rate: one token per interval, ``burst`` max."""
    tokens = float(limit.burst)
    updated = time.monotonic()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal tokens, updated
        now = time.monotonic()
        tokens = min(float(limit.burst), tokens + (now - updated) / limit.interval)
        updated = now
        if tokens < 1:
            return web.Response(status=429, text="Too Many Requests\n")
        tokens -= 1
        return await handler(request)

    return middleware


def _headers(headers: tuple[tuple[str, str], ...]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        for name, value in headers:
            response.headers[name] = value
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return middleware


def _allowed_sans(allowed: tuple[str, ...]) -> Middleware:
    """Refuse clients whose certificate names none of ``allowed`` (DNS, e-mail, IP, URI)."""
    wanted = set(allowed)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der or not wanted & set(_san_values(der)):
            return web.Response(status=403, text="Forbidden: client certificate SAN not allowed\n")
        return await handler(request)

    return middleware


def _san_values(der: bytes) -> list[str]:
    """Subject alternative names of a DER certificate, verified or not."""
    with _memory_files(ssl.DER_cert_to_PEM_cert(der).encode()) as (path,):
        decoded: dict[str, Any] = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    return [str(value) for _, value in decoded.get("subjectAltName", ())]


# --- basic auth -----------------------------------------------------------------------


class AuthBusy(Exception):
    """Too many bcrypt verifications are waiting; the request should be retried."""


class BasicAuth:
    """bcrypt verification with exporter-toolkit's safeguards.

    - A verified (user, password, hash) is cached (at most 100, least recent dropped),
      keyed by an HMAC under a per-process random key: no password is kept in clear, and
      a scrape with known credentials never pays bcrypt again. Failures are not cached.
    - bcrypt runs on its own one-thread executor, never on the default executor aiohttp's
      resolver uses, and at most 64 verifications wait; beyond that the answer is 503.
    - An unknown user is checked against a configured user's hash, so it costs what a
      known user costs; a password over 72 bytes is refused (401) without bcrypt.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._dummy = next(iter(self._users.values()))
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        self._waiting = 0

    def _cache_key(self, user: bytes, password: bytes, hashed: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user, hashed, password):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    async def verify(self, user: str, password: bytes) -> bool:
        if len(password) > BCRYPT_MAX_PASSWORD:
            return False
        hashed = self._users.get(user)
        known = hashed is not None
        checked = hashed if hashed is not None else self._dummy
        key = self._cache_key(user.encode(), password, checked)
        if known and key in self._verified:
            self._verified.move_to_end(key)
            return True
        if self._waiting >= MAX_PENDING_VERIFICATIONS:
            raise AuthBusy
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._executor, _checkpw, password, checked)
        finally:
            self._waiting -= 1
        if ok and known:
            self._verified[key] = None
            while len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            return True
        return False


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # imported where used: start-up never needs it

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a malformed hash or an over-long password: not a match
        return False


def basic_auth(auth: BasicAuth) -> Middleware:
    challenge = {"WWW-Authenticate": 'Basic realm="runbook-exporter"'}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                raw = base64.b64decode(encoded.strip(), validate=True)
                user_bytes, colon, password = raw.partition(b":")
                user = user_bytes.decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                colon, user, password = b"", "", b""
            if colon and user:
                try:
                    if await auth.verify(user, password):
                        return await handler(request)
                except AuthBusy:
                    return web.Response(
                        status=503,
                        text="Busy verifying credentials\n",
                        headers={"Retry-After": "1"},
                    )
        return web.Response(status=401, text="Unauthorized\n", headers=challenge)

    return middleware
