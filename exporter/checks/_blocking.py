"""Blocking filesystem calls off the event loop, at most one per probe at a time.

``stat``/``statvfs``/``open`` on a hung network mount block in the kernel and cannot be
cancelled: the check times out, but its thread stays stuck. Starting a new thread on
every scrape would fill asyncio's default executor (a few dozen threads), and that
executor also resolves host names for every other check: one hung NFS mount would stall
the DNS of all network checks. So a probe waits for its own stuck call instead of adding
another, and says so.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.checks.base import CheckFailed

T = TypeVar("T")


class OffLoop:
    """Runs one blocking call at a time in a worker thread for one probe."""

    def __init__(self, what: str) -> None:
        self.what = what  # "stat /var/backups/*.gz": names the call in the reason
        self._pending: asyncio.Future[Any] | None = None
        self._since = 0.0

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending is not None and not pending.done():
            raise CheckFailed(
                f"{self.what}: still blocked in the call started {loop.time() - self._since:.0f}s "
                "ago (hung filesystem?); not starting another"
            )
        future: asyncio.Future[T] = loop.run_in_executor(None, functools.partial(func, *args))
        future.add_done_callback(_consume)
        self._pending, self._since = future, loop.time()
        # The runner's timeout cancels the wait, never the thread: shield the future so
        # that it stays the one pending call until the thread really returns.
        return await asyncio.shield(future)


def _consume(future: asyncio.Future[Any]) -> None:
    """Fetch the outcome of a call nobody awaited any more (it outlived its timeout)."""
    if not future.cancelled():
        future.exception()
