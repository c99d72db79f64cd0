"""The web config against exporter-toolkit's own test vectors (tests/web/exporter_toolkit/).

Each file is loaded and expected to be accepted or refused as exporter-toolkit's
``web/tls_config_test.go`` expects; the connection cases start the real server on
loopback and connect as that test's client does (Python's ssl, ``openssl s_client`` for
curves), including basic auth with its bcrypt hashes (dave/dave123, carol/carol123).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web

from exporter import webconfig
from exporter.config import load_data
from exporter.fields import ConfigError
from exporter.server import RunningExporter, make_app
from exporter.webconfig import WebConfig, load_web_config
from tests.support import free_port

VECTORS = Path(__file__).with_name("exporter_toolkit")

# file -> the reason exporter-toolkit refuses it (its ErrorMap), None when it accepts it.
EXPECTED: dict[str, str | None] = {
    "tls_config_noAuth.requireandverifyclientcert.good.yml": None,
    "tls_config_noAuth.requireanyclientcert.good.yml": None,
    "tls_config_noAuth.requireanyclientcertkeyinline.good.yml": None,
    "web_config_auth_clientCAs_invalid.bad.yml": "No such file",
    "web_config_auth_clientCAs_missing.bad.yml": None,  # refused at connection time only
    "web_config_auth_client_san.bad.yaml": None,  # refused at connection time only
    "web_config_auth_client_san.good.yaml": None,
    "web_config_auth_user_list_invalid.bad.yml": "basic_auth_users.john: expected a bcrypt",
    "web_config_empty.yml": None,
    "web_config_headers.good.yml": None,
    "web_config_headers_content_type_options.bad.yml": "invalid value for X-Content-Type-Options",
    "web_config_headers_extra_header.bad.yml": 'HTTP header "Content-Type" can not be configured',
    "web_config_headers_frame_options.bad.yml": "invalid value for X-Frame-Options",
    "web_config_junk.yml": "expected a mapping",
    "web_config_junk_key.yml": "tls_server_config.cert_filse: unknown key",
    "web_config_noAuth.bad.yml": "without a Client Auth Policy",
    "web_config_noAuth.good.blocking.yml": None,
    "web_config_noAuth.good.yml": None,
    "web_config_noAuth_allCiphers.good.yml": None,
    "web_config_noAuth_allCurves.good.yml": None,
    "web_config_noAuth_certPath_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_certPath_invalid.bad.yml": 'cert_file: cannot read "somefile": No such file',
    "web_config_noAuth_certPath_keyPath_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_certPath_keyPath_invalid.bad.yml": "No such file",
    "web_config_noAuth_cert_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_inventedCiphers.bad.yml": (
        'cipher_suites[0]: unknown cipher "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048"'
    ),
    "web_config_noAuth_inventedCurves.bad.yml": 'curve_preferences[0]: unknown curve "CurveP257"',
    "web_config_noAuth_keyPath_empty.bad.yml": "missing one of key or key_file",
    "web_config_noAuth_keyPath_invalid.bad.yml": 'key_file: cannot read "somefile": No such file',
    "web_config_noAuth_key_empty.bad.yml": "missing one of key or key_file",
    "web_config_noAuth_noHTTP2.good.yml": None,
    "web_config_noAuth_noHTTP2Cipher.bad.yml": "missing an HTTP/2-required",
    "web_config_noAuth_someCiphers.good.yml": None,
    "web_config_noAuth_someCiphers_noOrder.good.yml": None,
    "web_config_noAuth_someCurves.good.yml": None,
    "web_config_noAuth_tlsInline.good.yml": None,
    "web_config_noAuth_wrongTLSVersion.bad.yml": 'min_version: unknown TLS version "TLS111"',
    "web_config_rate_limiter_nonblocking.yaml": None,
    "web_config_rate_limiter_one_second.yaml": None,
    "web_config_users.good.yml": None,
    "web_config_users_noTLS.good.yml": None,
}


def test_every_vector_is_listed() -> None:
    files = {p.name for p in VECTORS.iterdir() if p.suffix in (".yml", ".yaml")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize(("name", "refusal"), sorted(EXPECTED.items()))
def test_accepted_and_refused_as_exporter_toolkit_does(name: str, refusal: str | None) -> None:
    started = time.monotonic()
    if refusal is None:
        load_web_config(str(VECTORS / name))
    else:
        with pytest.raises(ConfigError) as info:
            load_web_config(str(VECTORS / name))
        assert refusal in str(info.value)
        assert "Traceback" not in str(info.value)
    # web_config_users holds a cost-18 hash (~20 s to verify): start-up must not verify it.
    assert time.monotonic() - started < 5


def test_the_inline_key_never_appears_in_a_refusal(tmp_path: Path) -> None:
    source = (VECTORS / "tls_config_noAuth.requireanyclientcertkeyinline.good.yml").read_text()
    broken = tmp_path / "web.yml"
    broken.write_text(source.replace('cert_file: "server.crt"', 'cert_file: "nope.crt"'))
    with pytest.raises(ConfigError) as info:
        load_web_config(str(broken))
    assert "MIIJQwIBADANBgkqhkiG9w0BAQEFAASCCS0w" not in str(info.value)


# --- the real server on loopback -------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(web_config: WebConfig) -> AsyncIterator[int]:
    exporter = RunningExporter(
        load_data({"checks": []}, "t"), lambda: load_data({"checks": []}, "t")
    )
    await exporter.start()
    runner = web.AppRunner(make_app(exporter, web_config.middlewares()), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=web_config.ssl_context())
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()
        await exporter.stop()


def client_context(
    cert: str | None = None,
    ciphers: str | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """The client of exporter-toolkit's test, with an optional client certificate.

    It does not verify the server: OpenSSL rejects the vectors' server.crt for ECDHE
    ("unsuitable certificate purpose": its key usage lacks digitalSignature, which Go's
    client does not check). What is tested here is the server's side of the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(str(VECTORS / f"{cert}.pem"), str(VECTORS / f"{cert}.key"))
    if ciphers:
        context.set_ciphers(ciphers)
    if max_version is not None:
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = max_version
    return context


async def fetch(
    port: int,
    context: ssl.SSLContext | None,
    *,
    auth: tuple[str, str] | None = None,
) -> tuple[int, dict[str, str], str | None]:
    """One GET /-/healthy on a fresh connection: status, headers, negotiated cipher."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        ),
        10,
    )
    try:
        lines = ["GET /-/healthy HTTP/1.1", "Host: localhost", "Connection: close"]
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            lines.append(f"Authorization: Basic {token}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode().split("\r\n")
        headers = dict(h.split(": ", 1) for h in header_lines if ": " in h)
        ssl_object = writer.get_extra_info("ssl_object")
        cipher = ssl_object.cipher()[0] if ssl_object else None
        return int(status_line.split()[1]), headers, cipher
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def config(name: str) -> WebConfig:
    return load_web_config(str(VECTORS / name))


async def refused(port: int, context: ssl.SSLContext | None) -> bool:
    try:
        await fetch(port, context)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, OSError):
        return True
    return False


async def test_tls_connections_as_in_exporter_toolkits_table() -> None:
    async with serving(config("web_config_noAuth.good.yml")) as port:
        assert await refused(port, None)  # plain HTTP to the TLS port
        assert (await fetch(port, client_context()))[0] == 200
        assert await refused(port, client_context(max_version=ssl.TLSVersion.TLSv1_1))
    async with serving(config("web_config_noAuth_tlsInline.good.yml")) as port:
        assert (await fetch(port, client_context()))[0] == 200
    async with serving(config("web_config_noAuth_allCiphers.good.yml")) as port:
        assert (await fetch(port, client_context()))[0] == 200


async def test_cipher_suites_and_server_preference() -> None:
    async with serving(config("web_config_noAuth_someCiphers.good.yml")) as port:
        only = client_context(ciphers="ECDHE-RSA-AES128-GCM-SHA256")
        assert (await fetch(port, only))[2] == "ECDHE-RSA-AES128-GCM-SHA256"
        assert await refused(port, client_context(ciphers="ECDHE-RSA-AES256-SHA"))
        # prefer_server_cipher_suites (default true): the server's first choice wins.
        both = client_context(ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
        assert (await fetch(port, both))[2] == "ECDHE-RSA-AES128-GCM-SHA256"
    async with serving(config("web_config_noAuth_someCiphers_noOrder.good.yml")) as port:
        # prefer_server_cipher_suites: false, server lists AES256 first: the client chooses.
        both = client_context(ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
        assert (await fetch(port, both))[2] == "ECDHE-RSA-AES128-GCM-SHA256"


def s_client(port: int, *args: str) -> int:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command line tool not installed")
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *args],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode


async def test_curve_preferences_with_openssl_s_client() -> None:
    async with serving(config("web_config_noAuth_someCurves.good.yml")) as port:
        assert await asyncio.to_thread(s_client, port, "-groups", "P-521") == 0
        assert await asyncio.to_thread(s_client, port, "-groups", "P-384") != 0
    async with serving(config("web_config_noAuth_allCurves.good.yml")) as port:
        for group in ("P-256", "P-384", "P-521", "X25519"):
            assert await asyncio.to_thread(s_client, port, "-groups", group) == 0, group


async def test_client_certificates() -> None:
    async with serving(config("tls_config_noAuth.requireanyclientcert.good.yml")) as port:
        # Any certificate, even one no CA vouches for; none at all is refused.
        assert (await fetch(port, client_context("client_selfsigned")))[0] == 200
        assert await refused(port, client_context())
    async with serving(config("tls_config_noAuth.requireanyclientcertkeyinline.good.yml")) as port:
        assert (await fetch(port, client_context("client_selfsigned")))[0] == 200
    async with serving(config("tls_config_noAuth.requireandverifyclientcert.good.yml")) as port:
        assert (await fetch(port, client_context("client_selfsigned")))[0] == 200
        assert await refused(port, client_context("client2_selfsigned"))  # unknown CA
        assert await refused(port, client_context())
    async with serving(config("web_config_noAuth.good.yml")) as port:  # VerifyClientCertIfGiven
        assert (await fetch(port, client_context()))[0] == 200
        assert await refused(port, client_context("client2_selfsigned"))
    async with serving(config("web_config_noAuth.good.blocking.yml")) as port:
        assert await refused(port, client_context("client_selfsigned"))


async def test_client_allowed_sans() -> None:
    async with serving(config("web_config_auth_client_san.good.yaml")) as port:
        assert (await fetch(port, client_context("client2_selfsigned")))[0] == 200
    async with serving(config("web_config_auth_client_san.bad.yaml")) as port:
        assert (await fetch(port, client_context("client2_selfsigned")))[0] == 403


async def test_headers_and_rate_limit() -> None:
    async with serving(config("web_config_headers.good.yml")) as port:
        _, headers, _ = await fetch(port, None)
        assert headers["X-Frame-Options"] == "deny"
        assert headers["Content-Security-Policy"] == "default-src 'self' *.test.example.net"
    async with serving(config("web_config_rate_limiter_one_second.yaml")) as port:
        assert (await fetch(port, None))[0] == 429  # burst 0: exporter-toolkit refuses too
    async with serving(config("web_config_rate_limiter_nonblocking.yaml")) as port:
        assert [(await fetch(port, None))[0] for _ in range(3)] == [200, 200, 200]


@pytest.fixture
def counted_bcrypt(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Thread names of every bcrypt verification."""
    calls: list[str] = []
    real = webconfig._checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(threading.current_thread().name)
        return real(password, hashed)

    monkeypatch.setattr(webconfig, "_checkpw", counting)
    return calls


async def test_basic_auth_users_as_in_exporter_toolkits_table(counted_bcrypt: list[str]) -> None:
    async with serving(config("web_config_users.good.yml")) as port:
        ctx = client_context()
        assert (await fetch(port, ctx))[0] == 401
        assert (await fetch(port, ctx, auth=("dave", "dave123")))[0] == 200
        assert (await fetch(port, ctx, auth=("carol", "carol123")))[0] == 200
        assert (await fetch(port, ctx, auth=("dave", "bad")))[0] == 401
        assert (await fetch(port, ctx, auth=("nonexistent", "nonexistent")))[0] == 401
        assert (await fetch(port, ctx, auth=("dave", "x" * 73)))[0] == 401  # not 500
        assert len(counted_bcrypt) == 4  # the over-long password never reached bcrypt
        # A verified user is cached: ten more scrapes, no more bcrypt.
        for _ in range(10):
            assert (await fetch(port, ctx, auth=("dave", "dave123")))[0] == 200
        assert len(counted_bcrypt) == 4
        # Wrong passwords and unknown users are not cached: each one pays bcrypt.
        assert (await fetch(port, ctx, auth=("nonexistent", "nonexistent")))[0] == 401
        assert len(counted_bcrypt) == 5
    # bcrypt ran on its own executor, never the default one aiohttp's resolver uses.
    assert {name.split("_")[0] for name in counted_bcrypt} == {"bcrypt"}


async def test_an_unknown_user_costs_what_a_known_user_costs(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=12)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  admin: '{hashed}'\n")
    auth = webconfig.BasicAuth(dict(load_web_config(str(path)).basic_auth_users))

    async def timed(user: str) -> float:
        started = time.perf_counter()
        assert not await auth.verify(user, b"wrong")
        return time.perf_counter() - started

    known = min([await timed("admin") for _ in range(3)])
    unknown = min([await timed("nobody") for _ in range(3)])
    # Cost 12 is ~250 ms; an unknown user answered without bcrypt would take microseconds.
    assert unknown > known / 3, (known, unknown)


async def test_request_client_cert_asks_but_accepts_any_or_none(tmp_path: Path) -> None:
    """RequestClientCert: no vector file in exporter-toolkit; Go's semantics (tls.RequestClientCert:
    ask, accept any certificate or none) checked the same way."""
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {VECTORS / 'server.crt'}\n"
        f"  key_file: {VECTORS / 'server.key'}\n  client_auth_type: RequestClientCert\n"
    )
    async with serving(load_web_config(str(path))) as port:
        assert (await fetch(port, client_context()))[0] == 200
        assert (await fetch(port, client_context("client2_selfsigned")))[0] == 200
        # The server did ask: openssl reports the CertificateRequest's signature algorithms.
        assert "Requested Signature Algorithms" in await asyncio.to_thread(s_client_text, port)
    async with serving(config("web_config_noAuth_tlsInline.good.yml")) as port:
        # VerifyClientCertIfGiven asks too; NoClientCert (below) does not.
        assert "Requested Signature Algorithms" in await asyncio.to_thread(s_client_text, port)
    path.write_text(path.read_text().replace("RequestClientCert", "NoClientCert"))
    async with serving(load_web_config(str(path))) as port:
        assert "Requested Signature Algorithms" not in await asyncio.to_thread(s_client_text, port)


def s_client_text(port: int) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command line tool not installed")
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}"],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.stdout.decode(errors="replace")
