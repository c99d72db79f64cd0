"""Measuring one exporter process: wall per scrape, CPU per scrape, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.harness import Context, Service, fetch, median, ours, peer, samples_of, split_url


@dataclass
class Run:
    wall: float  # seconds for the whole batch (one scrape, or all probes)
    cpu: float  # exporter process CPU seconds during it
    client: float  # the bench's own CPU seconds during it (its HTTP client, inside wall)
    server_cpu: float = float("nan")  # the target server's CPU (Redis, PostgreSQL)
    commands: float = float("nan")  # commands the target server processed
    reads: float = float("nan")  # read events of the target server (≈ round trips)


@dataclass
class Summary:
    wall: float
    cpu: float
    rss: int
    client: float
    server_cpu: float = float("nan")
    commands: float = float("nan")
    reads: float = float("nan")
    outputs: list[Any] = field(default_factory=list)  # what each measured action returned


def summarize(runs: Sequence[Run], rss: int) -> Summary:
    return Summary(
        wall=median([r.wall for r in runs]),
        cpu=median([r.cpu for r in runs]),
        rss=rss,
        client=median([r.client for r in runs]),
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
            client0 = time.process_time()
            started = time.perf_counter()
            for _ in range(count):
                outputs[tag].append(action())
            wall = time.perf_counter() - started
            client = time.process_time() - client0
            cpu = service.cpu() - cpu0
            after = server() if server else nothing
            deltas = [(a - b) / count for a, b in zip(after, before, strict=True)]
            measured[tag].append(Run(wall / count, cpu / count, client / count, *deltas))
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
    """GET every URL at once, as a Prometheus with one job per target would; all must pass.

    A bare asyncio client, one connection per request: its work is inside the peer's wall
    time and on the same cores, and aiohttp's client cost ~330 µs of CPU per request
    there (1,000 blackbox probes), this one ~200 µs. HTTP/1.0, so the body comes whole
    (a 1.1 answer over 2 kB is chunked, which can split ``probe_success 1``) and the
    server closes the connection after it.
    """
    requests = []
    for url in urls:
        host, port, path = split_url(url)
        head = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n"
        requests.append((host, port, head.encode()))

    async def one(host: str, port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            return await reader.read()  # to EOF: the server closes after answering
        finally:
            writer.close()

    async def run() -> None:
        async with asyncio.timeout(60):
            responses = await asyncio.gather(*(one(*request) for request in requests))
        failed = [r for r in responses if r.split(b" ", 2)[1:2] != [b"200"] or not check(r)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(urls)} probes failed, first: {failed[0]!r}")

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


def client_note(mine: Summary, theirs: Summary, probes: int) -> str:
    """How much of the wall times is the bench's own HTTP client, on the same cores."""
    return (
        f"The bench's HTTP client used {mine.client * 1000:.1f} ms of CPU for our scrape "
        f"and {theirs.client * 1000:.1f} ms for blackbox's {probes:,} probes: part of "
        "each wall time above, on the cores the exporters share."
    )
