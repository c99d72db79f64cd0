"""Processes, /proc readings, HTTP fetches and the real servers the scenarios start.

Every server listens on 127.0.0.1 on a free port and is stopped by its context manager;
every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# One implementation of ports, binaries and servers for tests and bench: the bench runs
# from the checkout in the project's venv (test extra installed), so it uses the tests'.
from tests.servers import PostgresServer, RedisServer, owned_tempdir
from tests.support import find_binary, free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


class Unavailable(Exception):
    """A binary or environment a scenario needs is missing; the message says how to fix it."""


def binary(name: str, debian_package: str) -> str:
    """Path of a Debian binary, or :class:`Unavailable` with the install command (the tests'
    lookup; a missing binary is not a pytest skip here)."""
    found = find_binary(name)
    if found is None:
        raise Unavailable(f"{name} not found: apt-get install -y {debian_package}")
    return found


# --- /proc ---------------------------------------------------------------------------


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User+system CPU of ``pid`` (plus its reaped children's when ``children``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 in proc(5)); utime is field 14, stime 15, cutime 16...
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a server and all its children, live or exited (PostgreSQL's backends)."""
    total = cpu_seconds(pid, children=True)
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- HTTP ------------------------------------------------------------------------------


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, /path) of ``http://HOST:PORT/path``."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


def fetch(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` (http://127.0.0.1:PORT/path) on a new connection; raise unless 200."""
    host, port, path = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def series_count(body: bytes) -> int:
    """Samples in a text exposition (lines that are not comments)."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def samples_of(body: bytes, name: str) -> list[tuple[str, float]]:
    """(labels text, value) of every sample of metric ``name`` in a text exposition."""
    found = []
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            head, _, value = line.rpartition(" ")
            found.append((head[len(name) :], float(value)))
    return found


# --- processes -------------------------------------------------------------------------


@dataclass
class Service:
    """A started server process; ``pid`` is the process whose CPU and RSS are measured."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    pid: int = 0

    def __post_init__(self) -> None:
        self.pid = self.pid or self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


@contextlib.contextmanager
def started(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    port: int,
    ready: Callable[[], Any],
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Service]:
    """Start ``argv``, wait for ``ready()``, yield the service, then stop it (TERM, KILL)."""
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    service = Service(name, proc, log, port)
    try:
        deadline = time.monotonic() + timeout
        while True:
            service.alive()
            with contextlib.suppress(OSError, http.client.HTTPException, RuntimeError):
                if ready():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout}s: {service.tail()}")
            time.sleep(0.05)
        yield service
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def ours(
    workdir: Path, config: dict[str, Any], tag: str = "ours"
) -> contextlib.AbstractContextManager[Service]:
    """This exporter, as users run it: the console entry point serving /metrics."""
    path = workdir / f"{tag}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "exporter",
        "--config.file",
        str(path),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "error",
    ]
    return started(tag, argv, workdir, port, lambda: fetch(f"http://127.0.0.1:{port}/-/ready"))


def peer(
    name: str,
    debian_package: str,
    args: Sequence[str],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> contextlib.AbstractContextManager[Service]:
    """A Go exporter from Debian listening on a free loopback port."""
    exe = binary(name, debian_package)
    port = free_port()
    argv = [exe, *args, f"--web.listen-address=127.0.0.1:{port}"]
    return started(
        name, argv, workdir, port, lambda: fetch(f"http://127.0.0.1:{port}/metrics"), env=env
    )


# --- real servers ----------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """The tests' redis-server (tests/servers.py), in its own directory under ``workdir``."""
    server = RedisServer(
        binary("redis-server", "redis-server"), Path(tempfile.mkdtemp(prefix="redis-", dir=workdir))
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_cluster(workdir: Path, *settings: str) -> Iterator[PostgresServer]:
    """The tests' PostgreSQL server (tests/servers.py) with trust auth, run as ``nobody``
    when we are root; ``settings`` are extra ``name=value`` server settings
    (``log_statement=all``). Connect with ``dsn(sslmode="disable")``."""
    root = owned_tempdir("bench-pg-")
    server = PostgresServer(
        binary("initdb", "postgresql"),
        root,
        password=None,
        settings=("max_connections=50", *settings),
    )
    try:
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def targets(workdir: Path, kind: str, count: int) -> Iterator[list[int]]:
    """``count`` loopback TCP listeners or HTTP /health servers in a helper process."""
    log = workdir / f"targets-{kind}-{count}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.targets", kind, str(count)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.PIPE,
            cwd=REPO,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"target helper failed: {log.read_text()[-800:]}")
        yield list(json.loads(line))
    finally:
        if proc.stdin:
            proc.stdin.close()
        stop(proc)
        if proc.stdout:
            proc.stdout.close()


# --- statistics ------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Context:
    """What every scenario gets: sizes, repetitions and a scratch directory."""

    workdir: Path
    quick: bool
    repeat: int
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
