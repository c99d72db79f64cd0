"""Network helpers shared by the kinds that open connections (tcp, http, postgres, redis).

TLS options and their ``tls:`` mapping, the certificate's ``notAfter``, host names the
resolver would refuse, and short operator reasons for OS and TLS errors. Kept out of any
one kind's module so that a kind imports helpers, never another kind.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass

from exporter.checks._timestamps import cert_not_after
from exporter.fields import Reader


@dataclass(frozen=True)
class TlsOptions:
    """How to verify a server's certificate (shared with the http kind)."""

    ca_file: str | None = None
    insecure: bool = False
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context; raises OSError/ssl.SSLError when ``ca_file`` is unusable."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse_tls_mapping(tls: Reader) -> TlsOptions:
    """The keys of a ``tls:`` mapping, with the CA file checked at load time."""
    ca_file = tls.str("ca_file", None)
    options = TlsOptions(
        ca_file=ca_file or None,
        insecure=tls.bool("insecure", False),
        server_name=tls.str("server_name", None) or None,
    )
    if options.ca_file:
        try:
            options.context()
        except OSError as exc:
            tls.error("ca_file", f"cannot read {options.ca_file}: {exc.strerror or exc}")
        except ssl.SSLError:
            tls.error("ca_file", f"{options.ca_file} holds no PEM certificate")
    tls.done()
    return options


def error_reason(exc: BaseException) -> str:
    """The one short operator reason for an exception a probe catches.

    OS errors by the OS's own words (``connection refused`` rather than asyncio's
    ``Connect call failed ('::1', 80)``), lower-cased to read as a clause after the step
    (``connect to db:5432: connection refused``); TLS failures by what went wrong; a
    timeout as ``timed out``; anything else (a driver's error) by its text, whitespace
    folded (libpq's messages span lines), or its type's name. Kinds whose library knows
    more (Redis replies, MongoDB's codeName, SQLite's "locked", aiohttp's redirects) read
    that first in a small adapter and fall back to this.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":
            return "the server does not speak TLS here (WRONG_VERSION_NUMBER)"
        return exc.reason or str(exc)
    if isinstance(exc, socket.gaierror):
        # getaddrinfo's codes are not errno values: os.strerror(-2) is "Unknown error -2".
        return f"cannot resolve host: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        text = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
        return _clause(text) if text else type(exc).__name__
    return " ".join(str(exc).split()) or type(exc).__name__


def _clause(text: str) -> str:
    """``Connection refused`` -> ``connection refused`` (not ``TLS`` -> ``tLS``)."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def peer_cert_expiry(ssl_object: object) -> float | None:
    """``notAfter`` of the peer's leaf certificate, or None when there is none to read."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return cert_not_after(der)
    except ValueError:
        return None


def host_problem(host: str) -> str | None:
    """Why the resolver would refuse ``host`` outright, or None.

    getaddrinfo raises UnicodeError (not OSError) for an empty or over-long label
    (``db..local``): caught here, at load, rather than as an unexpected error per scrape.
    """
    try:
        host.encode("idna")
    except UnicodeError:
        return "a label of the host name is empty or longer than 63 characters"
    return None
