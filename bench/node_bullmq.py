"""Node BullMQ as a peer: the official npm ``bullmq`` reading the same queues as the
``bullmq`` check, in the same run, interleaved with this exporter's scrapes.

bench/node/setup.sh installs the locked npm packages into .cache/node-bullmq;
bench/node/peer.mjs runs ``Queue.getJobCounts()`` (and ``exportPrometheusMetrics()``)
over every queue with ``Promise.all`` on one shared ioredis connection, one command per
stdin line, and answers with its own wall time and the counts it got.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.harness import REPO, Unavailable

PEER_DIR = REPO / ".cache" / "node-bullmq"
SETUP = REPO / "bench" / "node" / "setup.sh"


@dataclass
class Timing:
    """One measured action: wall time (ms) and the Redis deltas around it."""

    ms: float
    commands: float
    reads: float
    server_cpu_ms: float  # Redis CPU (user + sys) spent meanwhile


class NodePeer:
    """The running peer.mjs process; ``run("counts")`` answers one JSON object."""

    def __init__(self, url: str, prefix: str, names: list[str]) -> None:
        node = shutil.which("node")
        if node is None or shutil.which("npm") is None:
            raise Unavailable("Node.js and npm are missing (apt-get install nodejs npm)")
        done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
        if done.returncode != 0:
            raise Unavailable(f"bench/node/setup.sh failed: {done.stderr.strip()[-300:]}")
        self._names = Path(tempfile.mkstemp(suffix=".json")[1])
        self._names.write_text(json.dumps(names))
        self.process = subprocess.Popen(
            [node, str(PEER_DIR / "peer.mjs"), url, prefix, str(self._names)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=PEER_DIR,
        )  # fmt: skip
        hello = self._line(120)
        self.version = str(hello["bullmq"])

    def _line(self, timeout: float) -> dict[str, Any]:
        out: IO[str] | None = self.process.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        text = out.readline() if ready else ""
        if not text:
            self.close()
            raise RuntimeError("Node BullMQ peer answered nothing")
        answer: dict[str, Any] = json.loads(text)
        return answer

    def run(self, command: str) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()
        return self._line(120)

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self._names.unlink(missing_ok=True)


def timed(stats: Callable[[], tuple[float, float, float]], action: Callable[[], float]
          ) -> Timing:  # fmt: skip
    """``action`` returns its own wall time in ms; Redis deltas come from ``stats``."""
    cpu0, commands0, reads0 = stats()
    ms = action()
    cpu1, commands1, reads1 = stats()
    # The "before" INFO is counted in the delta: one command, one read.
    return Timing(ms, commands1 - commands0 - 1, reads1 - reads0 - 1, (cpu1 - cpu0) * 1000)
