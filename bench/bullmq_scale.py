"""How the bullmq check scales with the number of queues.

Writes N queues straight into Redis in BullMQ's layout with bench/bullmq_data.py (the
writer the bench cross-checks against the real package), then scrapes them
through the real runner and reports, per N: the first scrape (SCAN discovery + positioning
on the event streams), the median and worst of later scrapes (wall time), the exporter
process' CPU time per scrape (less sensitive to a busy machine), and the Redis commands
one scrape sends (from INFO commandstats deltas), once per read route: the read-only
script with change tracking (the defaults on Redis >= 7: the data does not change, so a
later scrape reads no queue), the script reading every queue (``track_changes: false``)
and the pipelined reads of ``server_script: false``.

    .venv/bin/python bench/bullmq_scale.py                     # starts its own redis-server
    .venv/bin/python bench/bullmq_scale.py --url redis://127.0.0.1:6379/15 --sizes 10 100

With --url the given database is FLUSHED: point it at a scratch server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bullmq_data import Plan, queue_names, write_queues
from bench.harness import redis_server
from exporter.checks import _redis_conn
from exporter.config import load_data
from exporter.runner import Runner

ROUND_TRIPS = [0]  # RawRedis round trips (one write, then every reply read), counted below


def count_round_trips() -> None:
    """Count RawRedis round trips by wrapping its one send-and-read method (bench only:
    Redis' own total_reads_processed counts socket reads, several per large pipeline)."""
    original = _redis_conn.RawRedis._send

    async def counted(self: _redis_conn.RawRedis, payload: bytes, count: int) -> list[object]:
        ROUND_TRIPS[0] += 1
        return await original(self, payload, count)

    _redis_conn.RawRedis._send = counted  # type: ignore[method-assign]
    # execute_parts: several requests written in one go, then every reply read.
    original_parts = _redis_conn.RawRedis._send_parts

    async def counted_parts(self: _redis_conn.RawRedis, *args: Any) -> None:
        ROUND_TRIPS[0] += 1
        await original_parts(self, *args)

    _redis_conn.RawRedis._send_parts = counted_parts  # type: ignore[method-assign,assignment]
    # exchange: the change-tracking connection's sync (one write, replies up to its PONG).
    original_exchange = _redis_conn.RawRedis.exchange

    async def counted_exchange(self: _redis_conn.RawRedis, *args: Any) -> list[Any]:
        ROUND_TRIPS[0] += 1
        return await original_exchange(self, *args)

    _redis_conn.RawRedis.exchange = counted_exchange  # type: ignore[method-assign,assignment]


# The job counts the numbers in docs/kinds/bullmq.md were measured with.
PLAN = Plan(waiting=20, active=2, delayed=5, prioritized=3, completed=50, failed=5)


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k not in ("cmdstat_info", "cmdstat_config|resetstat")
    )


ROUTES: dict[str, dict[str, bool]] = {
    "tracked": {},
    "script": {"track_changes": False},
    "pipelined": {"server_script": False},
}


async def measure(url: str, queues: int, rounds: int, route: str) -> dict[str, Any]:
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        write_queues(client, "bull", queue_names(queues), PLAN)
    runner = Runner()
    await runner.apply(
        load_data(
            {
                "checks": [
                    {
                        "name": "bench",
                        "kind": "bullmq",
                        "url": url,
                        "timeout": "30s",
                        "max_queues": max(queues, 1),
                        **ROUTES[route],
                    }
                ]
            },
            "<bench>",
            {},
        )
    )
    try:
        started = time.perf_counter()
        (first,) = await runner.scrape(60)
        cold = time.perf_counter() - started
        if not first.success:
            raise SystemExit(f"scrape failed: {first.error}")
        samples = len(first.samples)
        timings = []
        cpu = []
        per_scrape = []
        trips = []
        with redis.Redis.from_url(url) as client:
            for _ in range(rounds):
                client.config_resetstat()
                before = commands(client)
                started, started_cpu = time.perf_counter(), time.process_time()
                trips_before = ROUND_TRIPS[0]
                (result,) = await runner.scrape(60)
                trips.append(ROUND_TRIPS[0] - trips_before)
                timings.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                per_scrape.append(commands(client) - before)
                if not result.success:
                    raise SystemExit(f"scrape failed: {result.error}")
    finally:
        await runner.close()
    return {
        "route": route,
        "queues": queues,
        "cold_ms": cold * 1000,
        "warm_median_ms": statistics.median(timings) * 1000,
        "warm_max_ms": max(timings) * 1000,
        "cpu_median_ms": statistics.median(cpu) * 1000,
        "commands": statistics.median(per_scrape),
        "round_trips": statistics.median(trips),
        "samples": samples,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="scratch Redis (its database is flushed)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before measuring, as a long-running process could after start-up: "
        "shows how much of a scrape is the cyclic GC walking long-lived objects",
    )
    args = parser.parse_args()
    count_round_trips()
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = stack.enter_context(redis_server(workdir)).url
        rows = [await measure(url, n, args.rounds, route) for n in args.sizes for route in ROUTES]
    print(
        f"{'route':>9} {'queues':>7} {'first scrape':>13} {'later (median)':>15} "
        f"{'later (max)':>12} "
        f"{'exporter CPU':>13} {'cmds/scrape':>12} {'cmds/queue':>11} {'samples':>8} "
        f"{'round trips':>11}"
    )
    for row in rows:
        print(
            f"{row['route']:>9} {row['queues']:>7} {row['cold_ms']:>10.1f} ms "
            f"{row['warm_median_ms']:>12.1f} ms "
            f"{row['warm_max_ms']:>9.1f} ms {row['cpu_median_ms']:>10.1f} ms "
            f"{row['commands']:>12.0f} "
            f"{row['commands'] / row['queues']:>11.1f} {row['samples']:>8} "
            f"{row['round_trips']:>11.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
