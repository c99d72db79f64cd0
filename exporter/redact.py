"""Keeps secrets (passwords in URLs and DSNs, tokens) out of every text the exporter shows.

Config loading registers each secret it parses; logs, error messages, the status page and
``/config`` pass through :meth:`Redactor.redact` before anyone sees them.

Texts that quote a target (a failure reason naming a 40 KB JSON key, a Redis error line)
are untrusted and may be huge: :meth:`Redactor.reason` cuts them to :data:`MAX_REASON`
characters before redacting, and every pattern here runs in time linear in its input
(each can start only at the beginning of a run of name characters), so no text can hold
the event loop.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "<secret>"
MAX_REASON = 1000
"""Characters of a failure reason kept for metrics-side texts, logs and the status page."""

# user:password@ in any URL-shaped text, whether or not its password was registered. The
# look-behind lets a scheme start only where a run of scheme characters starts: without
# it, a long alphanumeric run is retried from every position (quadratic time).
_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@"
)
# name=value pairs (query strings, libpq keyword DSNs); the value is masked when the name
# says it is a credential (secret_name). Same look-behind, same reason. The value stops at
# a quote so that a logfmt or JSON line keeps its quoting.
_ASSIGNMENT = re.compile(r"(?<![\w.-])(?P<name>[\w.-]{1,200})=(?P<value>[^\s&\"]+)")
# Names of parameters and headers that carry credentials: any name containing one of the
# long words (access_token, X-Api-Key, client_secret, X-Password...), or exactly one of
# the short ones (key, sig: an Azure SAS signature, code, pass).
_SECRET_WORDS = re.compile(
    r"(?i)token|secret|passw|pwd|api.?key|signature|credential|session|cookie|auth"
)
_SECRET_SHORT = frozenset({"key", "sig", "code", "pass"})


def secret_name(name: str) -> bool:
    """True when a parameter or header called ``name`` carries a credential."""
    return name.lower() in _SECRET_SHORT or _SECRET_WORDS.search(name) is not None


class Redactor:
    """A set of known secret strings, replaced by ``<secret>`` wherever they appear."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._longest = 0
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, secret: str) -> None:
        """Mask ``secret`` wherever it appears from now on (a kind registers the passwords
        and tokens it reads; :meth:`Reader.secret` does it for options)."""
        # Very short strings would mask ordinary text ("a", "1"): such a password is
        # still hidden inside URLs by the userinfo rule.
        if len(secret) < 3 or secret in self._secrets:
            return
        with self._lock:
            self._secrets.add(secret)
            self._longest = max(self._longest, len(secret))
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        """``text`` with URL passwords, the values of credential-named assignments
        (``password=...``, ``access_token=...``) and every registered secret masked."""
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        text = _ASSIGNMENT.sub(_mask_assignment, text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text

    def reason(self, text: str, limit: int = MAX_REASON) -> str:
        """An untrusted text (a failure reason) cut to about ``limit`` characters, redacted.

        The cut comes first, so the cost is bounded whatever the target sent; it keeps
        enough beyond ``limit`` for a registered secret that starts before ``limit`` to be
        recognised whole, and cuts again after masking.
        """
        if len(text) <= limit:
            return self.redact(text)
        window = self.redact(text[: limit + self._longest + 64])
        return f"{window[:limit]}... ({len(text) - limit} more characters)"

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


def _mask_assignment(match: re.Match[str]) -> str:
    if secret_name(match["name"]):
        return f"{match['name']}={MASK}"
    return match[0]


REDACTOR = Redactor()
