"""Helpers for the tests that look for leaks: secrets in failure reasons, connections
left open after close()."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from exporter.redact import MASK
from exporter.runner import CheckResult

# A password that must be percent-encoded in a URL: drivers decode it, so neither form
# may show in a reason.
ODD_PASSWORD = "p@ss:w/rd%41 x"


def assert_clean(result: CheckResult, *secrets: str) -> str:
    """The failure reason, checked to hold no secret in either form, and nothing the
    runner had to mask (``<secret>`` in a reason means the kind itself leaked one)."""
    assert not result.success
    reason = result.error or ""
    for secret in secrets:
        assert secret not in reason
        assert quote(secret, safe="") not in reason
    assert MASK not in reason, f"the kind put a secret in its reason: {reason}"
    return reason


def polled(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A plain condition in the awaitable form ``async_wait_until`` polls."""

    async def check() -> bool:
        return predicate()

    return check
