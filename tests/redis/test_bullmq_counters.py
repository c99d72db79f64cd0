"""Lifetime completed/failed counters survive removeOnComplete/removeOnFail.

Real workers of the official bullmq package finish jobs that are deleted on finish; the
counters rise by exactly the number of jobs, from the events stream (workers without
metrics) or from the metrics hashes (workers with ``metrics``), across several scrapes of
one long-lived probe, including the switch from the stream to the hashes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from exporter.runner import CheckResult
from tests.redis.conftest import Bullmq
from tests.servers import RedisServer
from tests.support import running, value

Scrape = Callable[[], Awaitable[CheckResult]]


@asynccontextmanager
async def scraper(check: dict[str, Any]) -> AsyncIterator[Scrape]:
    """One runner kept across scrapes, as in the running exporter."""
    async with running([check]) as runner:

        async def scrape() -> CheckResult:
            (result,) = await runner.scrape(60)
            assert result.success, result.error
            return result

        yield scrape


def finished(result: CheckResult, queue: str) -> tuple[float, float]:
    labels = {"prefix": "bull", "queue": queue}
    return (
        value(result, "bullmq_jobs_completed_total", **labels),
        value(result, "bullmq_jobs_failed_total", **labels),
    )


@pytest.mark.parametrize("metrics", [False, True], ids=["events-stream", "metrics-hash"])
async def test_counters_rise_by_finished_jobs_removed_on_finish(
    bullmq: Bullmq, redis_server: RedisServer, metrics: bool
) -> None:
    queue = "mail"
    extra = ["metrics"] if metrics else []
    url = redis_server.url
    bullmq.run("finish", url, "bull", queue, "1", "0", *extra)  # the queue exists
    async with scraper({"name": "q", "kind": "bullmq", "url": url, "queues": [queue]}) as scrape:
        completed0, failed0 = finished(await scrape(), queue)
        # From the stream the counters start at the first scrape; the hash holds all.
        assert (completed0, failed0) == ((1, 0) if metrics else (0, 0))

        bullmq.run("finish", url, "bull", queue, "2", "3", *extra)
        result = await scrape()
        assert finished(result, queue) == (completed0 + 2, failed0 + 3)
        # Every finished job was deleted: the sets cannot be what is counted.
        assert value(result, "bullmq_queue_jobs", prefix="bull", queue=queue, state="failed") == 0
        assert (
            value(result, "bullmq_queue_jobs", prefix="bull", queue=queue, state="completed") == 0
        )

        bullmq.run("finish", url, "bull", queue, "0", "4", *extra)
        assert finished(await scrape(), queue) == (completed0 + 2, failed0 + 7)
        # A scrape with nothing new changes nothing.
        assert finished(await scrape(), queue) == (completed0 + 2, failed0 + 7)
    if metrics:
        with redis_server.client() as client:
            assert client.hget(f"bull:{queue}:metrics:failed", "count") == "7"


async def test_events_only_mode_ignores_metrics_hash(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    bullmq.run("finish", url, "bull", "sms", "0", "1", "metrics")
    check = {"name": "q", "kind": "bullmq", "url": url, "queues": ["sms"], "counters": "events"}
    async with scraper(check) as scrape:
        assert finished(await scrape(), "sms") == (0, 0)
        bullmq.run("finish", url, "bull", "sms", "1", "2", "metrics")
        assert finished(await scrape(), "sms") == (1, 2)


async def test_counters_off_emits_none(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.hset("bull:push:meta", "opts.maxLenEvents", 10000)
    check = {"name": "q", "kind": "bullmq", "url": redis_server.url, "counters": "off"}
    async with scraper(check) as scrape:
        result = await scrape()
    names = {s.family.name for s in result.samples}
    assert "bullmq_queue_jobs" in names
    assert not names & {"bullmq_jobs_completed_total", "bullmq_jobs_failed_total"}


async def test_busy_stream_is_read_past_one_page(redis_server: RedisServer) -> None:
    """More events than one XRANGE page between scrapes are all counted (the layout of
    BullMQ's events stream, written directly: 2,500 failed and 1,200 other events)."""
    with redis_server.client() as client:
        client.hset("bull:busy:meta", "opts.maxLenEvents", 100000)
        client.xadd("bull:busy:events", {"event": "added", "jobId": "0"})
    async with scraper({"name": "q", "kind": "bullmq", "url": redis_server.url}) as scrape:
        assert finished(await scrape(), "busy") == (0, 0)
        with redis_server.client() as client:
            pipe = client.pipeline(transaction=False)
            for i in range(2500):
                pipe.xadd(
                    "bull:busy:events",
                    {"event": "failed", "jobId": str(i), "failedReason": "x", "prev": "active"},
                )
                if i % 2 == 0:
                    pipe.xadd("bull:busy:events", {"event": "completed", "jobId": str(i)})
            for i in range(1200):
                pipe.xadd("bull:busy:events", {"event": "active", "jobId": str(i)})
            pipe.execute()
        assert finished(await scrape(), "busy") == (1250, 2500)
