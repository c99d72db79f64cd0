"""Blocking filesystem calls off the event loop, at most one per probe at a time.

``stat``/``statvfs``/``open`` on a hung network mount block in the kernel and cannot be
cancelled: the check times out, but its thread stays stuck. Such calls therefore do not
go to asyncio's default executor: it has only ``cpu_count + 4`` threads (6 on two cores),
it also resolves host names for every network check, and ``asyncio.run`` waits for its
threads at exit, so a few stuck calls would stall all DNS and then the shutdown. Each call
gets its own daemon thread instead, and a probe waits for its stuck call rather than
starting another, saying so in its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.checks.base import CheckFailed

T = TypeVar("T")


class OffLoop:
    """Runs one blocking call at a time in a daemon thread for one probe."""

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
        future: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (func(*args), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (None, exc)
            # RuntimeError: the loop closed while the call hung; nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)

        threading.Thread(target=work, name=f"runbook-exporter: {self.what}", daemon=True).start()
        self._pending, self._since = future, loop.time()
        # The runner's timeout cancels the wait, never the thread: shield the future so
        # that it stays the one pending call until the thread really returns.
        return await asyncio.shield(future)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: a call that outlived its timeout has no awaiter
    else:
        future.set_result(result)
