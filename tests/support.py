"""Helpers every test area shares: free ports, required binaries, polling, one-shot runs."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp.test_utils import TestServer

from exporter import logs
from exporter.cli import run_once
from exporter.config import load_data
from exporter.fields import ConfigError
from exporter.runner import CheckResult, Runner
from exporter.samples import Sample
from exporter.server import RunningExporter, make_app

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """Path of a Debian binary on PATH or in PostgreSQL's versioned bin directory, or None."""
    for candidate in (
        shutil.which(name),
        *(f"/usr/lib/postgresql/{v}/bin/{name}" for v in ("17", "16", "15")),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def require_binary(name: str, debian_package: str) -> str:
    """Path of ``name``; a missing binary is ``unavailable``."""
    found = find_binary(name)
    if found is None:
        unavailable(f"{name} not found: apt-get install -y {debian_package}")
    return found


def promtool_test(
    promtool: str,
    path: Path,
    rule_files: list[str],
    evaluation_interval: str,
    series: Sequence[object],
    checks: Sequence[object],
) -> subprocess.CompletedProcess[str]:
    """Write a promtool rule-test file at ``path`` with one test (``series`` in, the
    ``checks`` alert_rule_test expected, 1m apart) and run ``promtool test rules`` on it."""
    import yaml

    suite = {
        "rule_files": rule_files,
        "evaluation_interval": evaluation_interval,
        "tests": [
            {"interval": "1m", "input_series": list(series), "alert_rule_test": list(checks)}
        ],
    }
    path.write_text(yaml.safe_dump(suite))
    return subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def unavailable(message: str) -> NoReturn:
    """Something the test needs is missing: in CI that fails the test, locally it skips."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def runbooks_dir() -> Path:
    """The operations runbooks the profiles quote: ``$RUNBOOKS_DIR``, default
    ``../shared/runbooks`` beside the repository (the one input read from outside it)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "runbooks"
    return Path(os.environ.get("RUNBOOKS_DIR", default))


def mount_tmpfs(target: Path, options: str) -> None:
    """Mount a real tmpfs on ``target`` (needs root: CI runs as root)."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        unavailable(f"mount -t tmpfs refused here: {done.stderr.strip()}")


MountTmpfs = Callable[..., Path]


@pytest.fixture
def tmpfs_mounts(tmp_path: Path) -> Iterator[MountTmpfs]:
    """Mount real tmpfs filesystems under ``tmp_path``: ``mount(name, options)`` returns
    the mount point; each is unmounted at teardown (a busy one fails the test, unless
    mounted with ``in_use=True``: then it is detached lazily)."""
    mounted: list[tuple[Path, bool]] = []

    def mount(
        name: str = "fs", options: str = "size=4m,nr_inodes=2000", *, in_use: bool = False
    ) -> Path:
        target = tmp_path / name
        target.mkdir()
        mount_tmpfs(target, options)
        mounted.append((target, in_use))
        return target

    yield mount
    for target, in_use in reversed(mounted):
        subprocess.run(["umount", *(["-l"] if in_use else []), str(target)], check=True)


@pytest.fixture
def tmpfs(tmpfs_mounts: MountTmpfs) -> Path:
    """One 4 MiB tmpfs a test can fill past a threshold (the fire drills' data volume).

    In use at teardown: the drills' exporter, torn down after this fixture, may still
    hold its SQLite file open there, so it is detached lazily."""
    return tmpfs_mounts("tmpfs", "size=4m,mode=0755", in_use=True)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


async def async_wait_until(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def config_problems(check: dict[str, Any]) -> list[str]:
    """The problems loading ``check`` as ``checks[0]`` reports (fails if it loads)."""
    with pytest.raises(ConfigError) as caught:
        load_data({"checks": [check]}, "<test>", {})
    return caught.value.problems


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The exporter's logs (debug, logfmt) captured for the test; logging reset after."""
    stream = io.StringIO()
    logs.setup("debug", "logfmt", stream)
    yield stream
    logs.LOGGER.handlers.clear()
    logs.LOGGER.propagate = True
    logs.LOGGER.setLevel(logging.NOTSET)


@asynccontextmanager
async def serving(exporter: RunningExporter) -> AsyncIterator[str]:
    """Start ``exporter`` and its web app on a loopback port; yields the base URL
    (``http://127.0.0.1:PORT``); stops both on exit."""
    await exporter.start()
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url(""))
    finally:
        await server.close()
        await exporter.stop()


@asynccontextmanager
async def running(
    checks: list[dict[str, Any]], env: Mapping[str, str] | None = None
) -> AsyncIterator[Runner]:
    """A runner with ``checks`` applied, kept across scrapes as in the exporter; closed
    on exit."""
    runner = Runner()
    try:
        await runner.apply(load_data({"checks": checks}, "<test>", env or {}))
        yield runner
    finally:
        await runner.close()


async def run_checks(
    checks: list[dict[str, Any]], budget: float = 30.0, env: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Validate ``checks`` as a config, run each once on a fresh runner, close it."""
    return await run_once(load_data({"checks": checks}, "<test>", env or {}), budget)


async def run_check(check: dict[str, Any], budget: float = 30.0) -> CheckResult:
    (result,) = await run_checks([check], budget)
    return result


def values(result: CheckResult, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``family`` keyed by their labels without ``check``."""
    return {
        tuple(kv for kv in s.labels if kv[0] != "check"): s.value
        for s in result.samples
        if s.family.name == family
    }


def value(result: CheckResult, family: str, **labels: str) -> float:
    """The one sample of ``family`` with exactly ``labels`` (besides ``check``)."""
    wanted = tuple(sorted(labels.items()))
    found = [
        s.value
        for s in result.samples
        if s.family.name == family
        and tuple(sorted(kv for kv in s.labels if kv[0] != "check")) == wanted
    ]
    assert len(found) == 1, f"{family}{labels}: {len(found)} samples in {describe(result.samples)}"
    return found[0]


def describe(samples: tuple[Sample, ...]) -> str:
    return ", ".join(f"{s.family.name}{dict(s.labels)}={s.value}" for s in samples)
