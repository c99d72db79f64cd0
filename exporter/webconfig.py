"""The exporter-toolkit web configuration: TLS server settings and basic-auth users."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.config import parse_yaml
from exporter.fields import ConfigError, Problems, Reader

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None
    client_auth_type: str
    min_version: str


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None
    basic_auth_users: tuple[tuple[str, bytes], ...]  # user -> bcrypt hash

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = {
            "TLS12": ssl.TLSVersion.TLSv1_2,
            "TLS13": ssl.TLSVersion.TLSv1_3,
        }[self.tls.min_version]
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        if self.tls.client_ca_file:
            context.load_verify_locations(self.tls.client_ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED
                if self.tls.client_auth_type == "RequireAndVerifyClientCert"
                else ssl.CERT_OPTIONAL
            )
        return context

    def check_password(self, user: str, password: str) -> bool:
        """True when ``user`` exists and ``password`` matches its bcrypt hash."""
        import bcrypt  # only an exporter with basic_auth_users pays for it (~0.4 MiB)

        for name, hashed in self.basic_auth_users:
            if name == user:
                return bool(bcrypt.checkpw(password.encode(), hashed))
        return False


NO_WEB_CONFIG = WebConfig(tls=None, basic_auth_users=())


def load_web_config(path: str) -> WebConfig:
    """Read and validate ``--web.config.file``; every problem is reported at once."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    data: Any = parse_yaml(text, path) or {}
    problems = Problems()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping"])
    top = Reader(data, "", problems)
    tls = _read_tls(top.mapping("tls_server_config"))
    users = _read_users(top)
    top.ignore("http_server_config")  # HTTP/2 and header options: Go-specific, accepted as no-ops
    top.done()
    if problems.items:
        raise ConfigError([f"{path}: {p}" for p in problems.items])
    web = WebConfig(tls=tls, basic_auth_users=users)
    if tls is not None:
        try:
            web.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"{path}: tls_server_config: cannot load certificate: {exc}"]
            ) from None
    return web


def _read_tls(reader: Reader | None) -> TLSConfig | None:
    if reader is None:
        return None
    cert = reader.str("cert_file")
    key = reader.str("key_file")
    ca = reader.str("client_ca_file", None)
    for field, value in (("cert_file", cert), ("key_file", key), ("client_ca_file", ca)):
        if isinstance(value, str) and value and not Path(value).is_file():
            reader.error(field, f"file not found: {value}")
    auth = reader.choice(
        "client_auth_type",
        (
            "NoClientCert",
            "RequestClientCert",
            "RequireAnyClientCert",
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        ),
        "NoClientCert",
    )
    min_version = reader.choice("min_version", ("TLS12", "TLS13"), "TLS12")
    reader.ignore(
        "max_version",
        "cipher_suites",
        "curve_preferences",
        "prefer_server_cipher_suites",
        "client_allowed_sans",
    )
    reader.done()
    return TLSConfig(cert, key, ca, auth, min_version)


def _read_users(top: Reader) -> tuple[tuple[str, bytes], ...]:
    users = top.raw("basic_auth_users", {})
    if not isinstance(users, dict):
        top.error("basic_auth_users", "expected a mapping of user names to bcrypt hashes")
        return ()
    out = []
    for user, hashed in users.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES):
            top.problems.add(
                where,
                "expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 \"\" | tr -d ':\\n')",
            )
            continue
        import bcrypt

        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            top.problems.add(where, "not a valid bcrypt hash")
            continue
        out.append((str(user), hashed.encode()))
    return tuple(out)
