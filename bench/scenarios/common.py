"""Measuring one exporter process: wall per scrape, CPU per scrape, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yaml

from bench.harness import Context, Service, fetch, median, ours, peer, samples_of


@dataclass
class Run:
    wall: float  # seconds for the whole batch (one scrape, or all probes)
    cpu: float  # exporter process CPU seconds during it
    server_cpu: float = float("nan")  # the target server's CPU (Redis, PostgreSQL)
    commands: float = float("nan")  # commands the target server processed
    reads: float = float("nan")  # read events of the target server (≈ round trips)


@dataclass
class Summary:
    wall: float
    cpu: float
    rss: int
    server_cpu: float = float("nan")
    commands: float = float("nan")
    reads: float = float("nan")
    outputs: list[Any] = field(default_factory=list)  # what each measured action returned


def summarize(runs: Sequence[Run], rss: int) -> Summary:
    return Summary(
        wall=median([r.wall for r in runs]),
        cpu=median([r.cpu for r in runs]),
        rss=rss,
        server_cpu=median([r.server_cpu for r in runs]),
        commands=median([r.commands for r in runs]),
        reads=median([r.reads for r in runs]),
    )


def check_successes(body: bytes) -> tuple[int, int]:
    """(successful, total) checks in one of our scrapes."""
    found = samples_of(body, "runbook_exporter_check_success")
    return sum(1 for _, v in found if v == 1.0), len(found)


Subject = tuple[Service, Callable[[], Any]]  # an exporter process and how to scrape it


def measure_many(
    subjects: dict[str, Subject],
    runs: int,
    *,
    server: Callable[[], tuple[float, float, float]] | None = None,
    min_run: float = 0.3,
) -> dict[str, Summary]:
    """Time several exporters, their runs interleaved (A B C, A B C, ...); per action.

    One untimed warm-up ``action`` each, then ``runs`` runs each. A run repeats the
    action until it lasts about ``min_run`` seconds (at most 50 times), because /proc
    counts CPU in 10 ms ticks. ``server`` reads (cpu seconds, commands, reads) of the
    target server before and after each run. Interleaving makes other work on the
    machine weigh on every exporter alike, which keeps the ratios steadier.
    """
    per_run = {}
    for tag, (_, action) in subjects.items():
        started = time.perf_counter()
        action()
        warm = time.perf_counter() - started
        per_run[tag] = max(1, min(50, math.ceil(min_run / max(warm, 1e-3))))
    nothing = (float("nan"),) * 3
    measured: dict[str, list[Run]] = {tag: [] for tag in subjects}
    outputs: dict[str, list[Any]] = {tag: [] for tag in subjects}
    for _ in range(runs):
        for tag, (service, action) in subjects.items():
            count = per_run[tag]
            before = server() if server else nothing
            cpu0 = service.cpu()
            started = time.perf_counter()
            for _ in range(count):
                outputs[tag].append(action())
            wall = time.perf_counter() - started
            cpu = service.cpu() - cpu0
            after = server() if server else nothing
            deltas = [(a - b) / count for a, b in zip(after, before, strict=True)]
            measured[tag].append(Run(wall / count, cpu / count, *deltas))
    summaries = {}
    for tag, (service, _) in subjects.items():
        service.alive()
        summaries[tag] = summarize(measured[tag], service.rss())
        summaries[tag].outputs = outputs[tag]
    return summaries


def scrape(url: str) -> Callable[[], bytes]:
    def action() -> bytes:
        return fetch(url)

    return action


def probe_all(urls: Sequence[str], check: Callable[[bytes], bool]) -> Callable[[], None]:
    """GET every URL at once, as a Prometheus with one job per target would; all must pass."""

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(url: str) -> bool:
                async with session.get(url) as response:
                    return response.status == 200 and check(await response.read())

            results = await asyncio.gather(*(one(u) for u in urls))
        failed = results.count(False)
        if failed:
            raise RuntimeError(f"{failed} of {len(urls)} probes failed")

    def action() -> None:
        asyncio.run(run())

    return action


BLACKBOX = "prometheus-blackbox-exporter"  # the binary and its Debian package


@contextlib.contextmanager
def with_blackbox(
    ctx: Context, config: dict[str, Any], module: str, prober: dict[str, Any]
) -> Iterator[tuple[Service, Service]]:
    """This exporter with ``config`` and blackbox_exporter with one ``module``, side by side."""
    path = ctx.workdir / f"blackbox-{module}.yml"
    path.write_text(yaml.safe_dump({"modules": {module: prober}}))
    with (
        ours(ctx.workdir, config) as exporter,
        peer(BLACKBOX, BLACKBOX, [f"--config.file={path}"], ctx.workdir) as blackbox,
    ):
        yield exporter, blackbox


def versus_blackbox(
    ctx: Context, exporter: Service, blackbox: Service, urls: Sequence[str]
) -> tuple[Summary, Summary]:
    """One scrape of ours vs every blackbox ``/probe`` URL at once, interleaved runs."""
    found = measure_many({
        "ours": (exporter, scrape(f"{exporter.base}/metrics")),
        "blackbox": (blackbox, probe_all(urls, lambda body: b"probe_success 1" in body)),
    }, ctx.repeat)  # fmt: skip
    return found["ours"], found["blackbox"]
