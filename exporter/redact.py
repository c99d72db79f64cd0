"""Keeps secrets (passwords in URLs and DSNs, tokens) out of every text the exporter shows.

Config loading registers each secret it parses; logs, error messages, the status page and
``/config`` pass through :meth:`Redactor.redact` before anyone sees them.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "<secret>"

# user:password@ in any URL-shaped text, whether or not its password was registered.
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@"
)
# password=... in libpq keyword DSNs and query strings.
_KEYWORD = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key)=([^\s&]+)")


class Redactor:
    """A set of known secret strings, replaced by ``<secret>`` wherever they appear."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, secret: str) -> None:
        # Very short strings would mask ordinary text ("a", "1"): such a password is
        # still hidden inside URLs by the userinfo rule.
        if len(secret) < 3 or secret in self._secrets:
            return
        with self._lock:
            self._secrets.add(secret)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        text = _KEYWORD.sub(lambda m: f"{m[1]}={MASK}", text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text

    def redact_url(self, url: str) -> str:
        """A URL with its password masked, for display."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.redact(url)
        if parts.password is None:
            return self.redact(url)
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return self.redact(urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc}")))


REDACTOR = Redactor()
