"""/metrics under load: ~10,000 cached series, 16 concurrent scrapers, RSS across scrapes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from bench.harness import (
    Context,
    Service,
    fetch,
    median,
    ours,
    percentile,
    series_count,
    started,
    targets,
)
from bench.report import Section, Target, mib, ms
from tests.support import free_port

TITLE = "/metrics under load"
WHAT = (
    "This exporter with `tcp` checks to one loopback port, each with `min_interval: 1h`, "
    "so every scrape after the first serves cached results (3 series per check: success, "
    "duration, connect time; ~10,000 series in all). 16 concurrent scrapers (wrk, 2 "
    "threads, keep-alive) hammer `/metrics`, first with `Accept-Encoding: gzip` as "
    "Prometheus sends it (with the leak check), then uncompressed for comparison, "
    "in slices of a few seconds until the scrape count is reached or the time budget is "
    "spent; latency percentiles and req/s are medians over the slices. RSS is read after "
    "the warm-up slice and after the last one (leak check). The reference is a bare "
    "aiohttp handler returning the very bytes the exporter served (python -m bench.bare), "
    "hammered the same way right after it: the exporter's CPU per scrape divided by the "
    "bare handler's is what the exporter adds beyond aiohttp and HTTP."
)
SCRAPERS = 16
GOAL_P99 = 0.025
GOAL_RSS = 0.05


@dataclass
class Slice:
    requests: int
    seconds: float
    p50: float
    p99: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(ctx: Context) -> Section:
    series, scrapes, budget = (1_000, 300, 8.0) if ctx.quick else (10_000, 10_000, 90.0)
    checks = math.ceil(series / 3)
    section = Section("load", TITLE, WHAT, header=[
        "series", "encoding", "scrapes", "scrapers", "client", "p50", "p99", "req/s",
        "RSS after warm-up", "RSS at end", "RSS change",
    ])  # fmt: skip
    client = "wrk" if shutil.which("wrk") else "aiohttp"
    runs: dict[str, tuple[list[Slice], list[int]]] = {}
    with targets(ctx.workdir, "tcp", 1) as (port,):
        config = {"checks": [
            {"name": f"port-{i:05d}", "kind": "tcp", "address": f"127.0.0.1:{port}",
             "min_interval": "1h"}
            for i in range(checks)
        ]}  # fmt: skip
        with ours(ctx.workdir, config) as exporter:
            url = f"{exporter.base}/metrics"
            first = time.perf_counter()
            body = fetch(url)
            first = time.perf_counter() - first
            served = series_count(body)
            # gzip as Prometheus asks, with the leak check; then plain text for comparison.
            cpu = exporter.cpu()
            runs["gzip"] = hammer(ctx, exporter, url, scrapes, budget, client, gzip=True)
            ours_cpu = (exporter.cpu() - cpu) / max(1, sum(s.requests for s in runs["gzip"][0]))
            runs["identity"] = hammer(ctx, exporter, url, scrapes // 5, budget / 6, client,
                                      gzip=False)  # fmt: skip
            plain = fetch(url, headers={"Accept-Encoding": "identity"})
            gzipped = fetch(url, headers={"Accept-Encoding": "gzip"})
        with bare(ctx, plain, gzipped) as reference:
            cpu = reference.cpu()
            runs["gzip, bare aiohttp"] = hammer(
                ctx,
                reference,
                f"{reference.base}/metrics",
                scrapes // 5,
                budget / 6,
                client,
                gzip=True,
            )
            bare_requests = sum(s.requests for s in runs["gzip, bare aiohttp"][0])
            bare_cpu = (reference.cpu() - cpu) / max(1, bare_requests)
    stats = {}
    for encoding, (slices, rss) in runs.items():
        done = sum(s.requests for s in slices)
        measured = slices[1:] or slices  # the first slice warms up
        p50 = median([s.p50 for s in measured])
        p99 = median([s.p99 for s in measured])
        rate = median([s.rate for s in measured])
        change = (rss[-1] - rss[0]) / rss[0]
        stats[encoding] = (done, p50, p99, rate, change, rss)
        section.rows.append([
            f"{served:,}", encoding, f"{done:,}", str(SCRAPERS), client, ms(p50), ms(p99),
            f"{rate:,.0f}", mib(rss[0]), mib(rss[-1]), f"{change:+.1%}",
        ])  # fmt: skip
        errors = sum(s.errors for s in slices)
        if errors:
            section.notes.append(f"{encoding}: {errors} requests failed or timed out.")
    done, p50, p99, rate, change, rss = stats["gzip"]
    identity = stats["identity"]
    cpu_ratio = ours_cpu / bare_cpu if bare_cpu else math.inf
    section.notes.append(
        f"CPU per gzip scrape: exporter {ours_cpu * 1e6:,.0f} µs, bare aiohttp handler of "
        f"the same bytes {bare_cpu * 1e6:,.0f} µs (ratio {cpu_ratio:.2f}); p99 {ms(p99)} vs "
        f"{ms(stats['gzip, bare aiohttp'][2])}."
    )
    section.notes += [
        f"First scrape (runs all {checks:,} checks, nothing cached): {ms(first)}.",
        f"gzip: {len(runs['gzip'][0])} slices; RSS after each: "
        + ", ".join(mib(r) for r in rss) + ".",
    ]  # fmt: skip
    if done < scrapes:
        section.notes.append(
            f"Stopped at the time budget ({budget:.0f} s) after {done:,} of {scrapes:,} "
            f"scrapes; at {rate:,.0f} req/s the full count would take "
            f"{scrapes / max(rate, 1e-9):,.0f} s."
        )
    section.targets += [
        Target(f"p99 under {GOAL_P99 * 1000:.0f} ms, {served:,} series, {SCRAPERS} scrapers",
               f"{ms(p99)} with gzip (p50 {ms(p50)}, {rate:,.0f} req/s); "
               f"{ms(identity[2])} without (p50 {ms(identity[1])}, {identity[3]:,.0f} req/s)",
               p99 < GOAL_P99),
        Target(f"RSS flat (±{GOAL_RSS:.0%}) across {scrapes:,} scrapes",
               f"{change:+.1%} over {done:,} scrapes ({mib(rss[0])} → {mib(rss[-1])})",
               abs(change) <= GOAL_RSS if done >= scrapes else None),
    ]  # fmt: skip
    return section


@contextlib.contextmanager
def bare(ctx: Context, plain: bytes, gzipped: bytes) -> Iterator[Service]:
    """The reference server: python -m bench.bare serving exactly these bodies."""
    (ctx.workdir / "bare.txt").write_bytes(plain)
    (ctx.workdir / "bare.gz").write_bytes(gzipped)
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare", str(port), str(ctx.workdir / "bare.txt"),
            str(ctx.workdir / "bare.gz")]  # fmt: skip
    with started("bare-aiohttp", argv, ctx.workdir, port,
                 lambda: fetch(f"http://127.0.0.1:{port}/-/ready")) as service:  # fmt: skip
        yield service


def hammer(
    ctx: Context,
    exporter: Service,
    url: str,
    scrapes: int,
    budget: float,
    client: str,
    *,
    gzip: bool,
) -> tuple[list[Slice], list[int]]:
    """Slices of load until ``scrapes`` requests are done or ``budget`` seconds are spent."""
    slices: list[Slice] = []
    rss: list[int] = []
    deadline = time.monotonic() + budget
    done = 0
    length = 1.0  # seconds; the first slice is a warm-up and a rate estimate
    while done < scrapes and time.monotonic() < deadline:
        piece = wrk(url, length, gzip) if client == "wrk" else asyncio.run(aio(url, length, gzip))
        exporter.alive()
        slices.append(piece)
        rss.append(exporter.rss())
        done += piece.requests
        left = scrapes - done
        rate = max(piece.rate, 1.0)
        length = max(1.0, min(5.0, left / rate, deadline - time.monotonic()))
        encoding = "gzip" if gzip else "identity"
        ctx.log(f"  load ({encoding}): {done:,} scrapes, p99 {ms(piece.p99)}, rss {mib(rss[-1])}")
    return slices, rss


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, seconds: float, gzip: bool) -> Slice:
    whole = max(1, round(seconds))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{SCRAPERS}", f"-d{whole}s", "--timeout", "10s", "--latency",
         "-H", f"Accept-Encoding: {'gzip' if gzip else 'identity'}", url],
        capture_output=True, text=True, check=True, timeout=whole + 30,
    ).stdout  # fmt: skip
    requests = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (requests and p50 and p99):
        raise RuntimeError(f"cannot read wrk output: {out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Slice(int(requests.group(1)), _seconds(requests.group(2)), _seconds(p50.group(1)),
                 _seconds(p99.group(1)), errors)  # fmt: skip


async def aio(url: str, seconds: float, gzip: bool) -> Slice:
    """The same load from an aiohttp client when wrk is not installed (slower client)."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    timeout = aiohttp.ClientTimeout(total=10)

    async def scraper(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(scraper(session) for _ in range(SCRAPERS)))
    elapsed = time.perf_counter() - began
    return Slice(len(latencies), elapsed, percentile(latencies, 50), percentile(latencies, 99),
                 errors)  # fmt: skip
