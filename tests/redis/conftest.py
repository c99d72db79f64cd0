"""Real Redis servers (Debian ``redis-server``) and the official ``bullmq`` package.

``redis_server`` starts a throwaway server on a free loopback port (no persistence); tests
can kill and restart it on the same port. ``bullmq`` runs tests/redis/bullmq_driver.py
inside the side venvs made by scripts/test-setup.d/bullmq.sh, one per BullMQ layout.
"""

from __future__ import annotations

import inspect
import json
import select
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("bullmq_driver.py")
# layout name -> side venv; 2.26.x is the Python port of BullMQ 5, 3.x of BullMQ 6.
VENVS = {"v5": ROOT / ".cache" / "bullmq-v5", "v6": ROOT / ".cache" / "bullmq-v6"}


class Bullmq:
    """Runs the driver with one BullMQ major; ``run`` returns its JSON result."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.python = VENVS[layout] / "bin" / "python"

    def run(self, *args: str, timeout: float = 180) -> dict[str, Any]:
        done = subprocess.run(
            [str(self.python), str(DRIVER), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"bullmq driver ({self.layout}) {args[0]} failed with {done.returncode}:\n"
                f"{done.stderr[-4000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def start(self, *args: str) -> Running:
        """The driver as a long-running process (``serve``, ``hold``); see :class:`Running`."""
        return Running(self, args)


class Running:
    """A driver process kept running; ``line`` waits for its next JSON line."""

    def __init__(self, driver: Bullmq, args: tuple[str, ...]) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [str(driver.python), str(DRIVER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.what = f"bullmq driver ({driver.layout}) {args[0]}"

    def line(self, timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        text = self.process.stdout.readline() if ready else ""
        if not text:
            self.process.kill()
            self.process.wait()
            self.stderr.seek(0)
            errors = self.stderr.read()[-4000:].decode(errors="replace")
            self._release()
            raise AssertionError(
                f"{self.what} printed nothing within {timeout} s (exit "
                f"{self.process.returncode}):\n{errors}"
            )
        result: dict[str, Any] = json.loads(text)
        return result

    def close(self, timeout: float = 60) -> None:
        """Close stdin (``serve`` ends its worker cleanly) and wait for the exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout)
        self._release()

    def kill(self) -> None:
        """SIGKILL: a worker dying mid-job, its sockets closed by the kernel."""
        self.process.kill()
        self.process.wait()
        self._release()

    def _release(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self.stderr.close()


def require_bullmq(layout: str) -> Bullmq:
    driver = Bullmq(layout)
    if not driver.python.exists():
        unavailable(
            f"side venv {VENVS[layout]} with the bullmq package is missing: "
            "bash scripts/test-setup.d/bullmq.sh"
        )
    return driver


@pytest.fixture(params=["v5", "v6"])
def bullmq(request: pytest.FixtureRequest) -> Bullmq:
    """The official bullmq package, once per layout (2.26.x: v5, 3.x: v6)."""
    return require_bullmq(request.param)


_Thing = TypeVar("_Thing")


class Closing(Protocol):
    """Hands back what it is given, and closes it when the test ends."""

    def __call__(self, thing: _Thing) -> _Thing: ...


@pytest.fixture
async def closing() -> AsyncIterator[Closing]:
    """Closes the clients and probes a test hands it, last first, when the test ends
    (``close()`` awaited when it is a coroutine), so tests need no try/finally."""
    things: list[Any] = []

    def keep(thing: _Thing) -> _Thing:
        things.append(thing)
        return thing

    yield keep
    for thing in reversed(things):
        closed = thing.close()
        if inspect.isawaitable(closed):
            await closed
