"""Why a queue stops: workers, stalled jobs, schedulers, missing queues.

Real redis-server and real workers, queues and schedulers of the official bullmq package
(both layouts); the package's own getWorkers() / getJobSchedulers() are the reference.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from exporter.runner import CheckResult
from tests.redis.conftest import Bullmq
from tests.servers import RedisServer
from tests.support import async_wait_until, run_check, running, unavailable, value, values


def queue_value(result: CheckResult, family: str, queue: str) -> float:
    return value(result, family, prefix="bull", queue=queue)


async def test_worker_connected_then_closed_moves_the_workers_gauge(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    bullmq.run("finish", url, "bull", "mail", "1", "0")  # the queue exists, no worker left
    check = {"name": "q", "kind": "bullmq", "url": url, "queues": ["mail", "sms"]}
    async with running([check]) as runner:
        (before,) = await runner.scrape(30)
        assert before.success, before.error
        assert queue_value(before, "bullmq_queue_workers", "mail") == 0

        worker = bullmq.start("serve", url, "bull", "mail")
        try:
            listed = worker.line()["workers"]  # Queue.getWorkers() while it runs
            assert listed >= 1
            (during,) = await runner.scrape(30)
            assert during.success, during.error
            assert queue_value(during, "bullmq_queue_workers", "mail") == listed
            assert queue_value(during, "bullmq_queue_workers", "sms") == 0
        finally:
            worker.close()
        assert bullmq.run("workers", url, "bull", "mail")["workers"] == 0
        (after,) = await runner.scrape(30)
        assert after.success, after.error
        assert queue_value(after, "bullmq_queue_workers", "mail") == 0


async def test_worker_killed_mid_job_shows_one_stalled_job_once_its_lock_expires(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    (job,) = bullmq.run("add", url, "bull", "ingest", "1")["ids"]
    check = {"name": "q", "kind": "bullmq", "url": url, "queues": ["ingest"]}
    holder = bullmq.start("hold", url, "bull", "ingest", "1", "1500")
    try:
        assert holder.line()["holding"] == [job]
        async with running([check]) as runner:
            (alive,) = await runner.scrape(30)
            assert alive.success, alive.error
            assert (
                value(alive, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="active")
                == 1
            )
            assert queue_value(alive, "bullmq_queue_stalled_jobs", "ingest") == 0
            holder.kill()
            with redis_server.client() as client:

                async def lock_gone() -> bool:
                    return not client.exists(f"bull:ingest:{job}:lock")

                await async_wait_until(lock_gone, 30, "the dead worker's lock to expire")
            (dead,) = await runner.scrape(30)
            assert dead.success, dead.error
            assert queue_value(dead, "bullmq_queue_stalled_jobs", "ingest") == 1
            assert queue_value(dead, "bullmq_queue_workers", "ingest") == 0
    finally:
        if holder.process.poll() is None:
            holder.kill()


async def test_scheduler_that_stops_advancing_is_overdue_after_the_grace(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    (scheduler,) = bullmq.run("schedule", url, "bull", "ingest", "poll", "1000")["schedulers"]
    due = scheduler["next"] / 1000.0
    check = {
        "name": "q",
        "kind": "bullmq",
        "url": url,
        "queues": ["ingest", "mail"],
        "schedule_grace": "2s",
    }
    first = await run_check(check)
    assert first.success, first.error
    assert queue_value(first, "bullmq_queue_schedulers", "ingest") == 1
    assert queue_value(first, "bullmq_queue_scheduler_next_run_timestamp_seconds", "ingest") == due
    assert queue_value(first, "bullmq_queue_schedulers", "mail") == 0
    assert not values(first, "bullmq_queue_scheduler_next_run_timestamp_seconds").get(
        (("prefix", "bull"), ("queue", "mail"))
    )
    if time.time() < due + 2 - 0.5:  # not yet beyond the grace
        assert queue_value(first, "bullmq_queue_schedulers_overdue", "ingest") == 0

    # No worker runs, so the scheduler never moves on: beyond the grace it is overdue,
    # and not before.
    async def overdue() -> CheckResult | None:
        result = await run_check(check)
        assert result.success, result.error
        if queue_value(result, "bullmq_queue_schedulers_overdue", "ingest") == 1:
            return result
        assert time.time() < due + 2 + 1, "not overdue a second after the grace"
        return None

    late = await async_wait_until(overdue, 30, "the scheduler to become overdue")
    assert time.time() >= due + 2
    assert queue_value(late, "bullmq_queue_schedulers_overdue", "mail") == 0
    # A longer grace: the same schedule is within it.
    patient = await run_check({**check, "schedule_grace": "1h"})
    assert queue_value(patient, "bullmq_queue_schedulers_overdue", "ingest") == 0


async def test_old_repeat_layout_entries_count_as_schedulers(redis_server: RedisServer) -> None:
    """Before job schedulers, BullMQ kept repeatable jobs as bare members of the same
    ``repeat`` sorted set (``name:id:endDate:tz:every``), scored by the next run."""
    now_ms = int(time.time() * 1000)
    with redis_server.client() as client:
        client.hset("bull:legacy:meta", "opts.maxLenEvents", 10000)
        client.zadd(
            "bull:legacy:repeat",
            {"tick::::60000": now_ms + 60_000, "sweep::::3600000": now_ms - 600_000},
        )
    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": ["legacy"]}
    )
    assert result.success, result.error
    assert queue_value(result, "bullmq_queue_schedulers", "legacy") == 2
    assert queue_value(result, "bullmq_queue_schedulers_overdue", "legacy") == 1  # 10 min > 5m
    assert (
        queue_value(result, "bullmq_queue_scheduler_next_run_timestamp_seconds", "legacy")
        == (now_ms - 600_000) / 1000
    )


async def test_listed_queue_that_does_not_exist_is_a_series(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    bullmq.run("finish", url, "bull", "mail", "1", "0")
    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": url, "queues": ["mail", "mial"]}
    )
    assert result.success, result.error
    assert queue_value(result, "bullmq_queue_exists", "mail") == 1
    assert queue_value(result, "bullmq_queue_exists", "mial") == 0
    discovered = await run_check({"name": "q", "kind": "bullmq", "url": url})
    assert values(discovered, "bullmq_queue_exists") == {
        (("prefix", "bull"), ("queue", "mail")): 1.0
    }


async def test_recent_job_timings_equal_the_jobs_timestamps(redis_server: RedisServer) -> None:
    """Completed jobs as BullMQ leaves them (hash with timestamp, processedOn, finishedOn;
    the completed set scored by finishedOn): the quantiles are the jobs' own figures, the
    window holds the last ``recent_jobs`` by finish time, and later jobs move it."""
    base = 1_700_000_000_000
    # job i: waited i seconds, ran 10*i ms; finished in order of i.
    with redis_server.client() as client:
        client.hset("bull:mail:meta", "opts.maxLenEvents", 10000)

        def complete(i: int) -> None:
            created = base + 100_000 * i
            processed = created + 1000 * i
            finished = processed + 10 * i
            client.hset(
                f"bull:mail:{i}",
                mapping={"timestamp": created, "processedOn": processed, "finishedOn": finished},
            )
            client.zadd("bull:mail:completed", {str(i): finished})

        for i in range(1, 11):
            complete(i)
    check = {
        "name": "q",
        "kind": "bullmq",
        "url": redis_server.url,
        "queues": ["mail", "sms"],
        "recent_jobs": 5,
    }

    def figures(result: CheckResult, family: str) -> dict[str, float]:
        return {
            dict(k)["quantile"]: v
            for k, v in values(result, family).items()
            if dict(k)["queue"] == "mail"
        }

    async with running([check]) as runner:
        (first,) = await runner.scrape(30)
        assert first.success, first.error
        # The last 5 by finish time are jobs 6..10: waits 6..10 s, runs 60..100 ms.
        assert queue_value(first, "bullmq_queue_recent_jobs", "mail") == 5
        assert figures(first, "bullmq_queue_recent_job_wait_seconds") == {
            "0.5": 8.0,
            "0.9": 10.0,
            "1": 10.0,
        }
        assert figures(first, "bullmq_queue_recent_job_processing_seconds") == {
            "0.5": 0.08,
            "0.9": 0.1,
            "1": 0.1,
        }
        assert queue_value(first, "bullmq_queue_recent_jobs", "sms") == 0
        assert not [
            k
            for k in values(first, "bullmq_queue_recent_job_wait_seconds")
            if dict(k)["queue"] == "sms"
        ]

        with redis_server.client() as client:
            complete(30)  # waited 30 s, ran 300 ms
        (second,) = await runner.scrape(30)
        # Jobs 7..10 and 30: waits 7, 8, 9, 10, 30.
        assert figures(second, "bullmq_queue_recent_job_wait_seconds") == {
            "0.5": 9.0,
            "0.9": 30.0,
            "1": 30.0,
        }
        assert figures(second, "bullmq_queue_recent_job_processing_seconds")["1"] == 0.3


NODE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "node-bullmq"
NODE_WORKER = Path(__file__).with_name("node_worker.mjs")


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("worker_name", [None, "mailer-1"], ids=["unnamed", "named"])
async def test_node_bullmq_workers_are_counted_as_get_workers_lists_them(
    redis_server: RedisServer, worker_name: str | None
) -> None:
    """Node BullMQ names its connections ``<prefix>:<base64 of the queue>`` (plus
    ``:w:<name>`` for a named worker), unlike the Python package: the gauge must equal
    the official Node package's own getWorkers() count for both forms."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        unavailable("Node BullMQ missing: bash scripts/test-setup.d/node-bullmq.sh (needs npm)")
    queue = "mail ü"  # base64 of a non-ASCII name with a space
    args = [node, str(NODE_WORKER), str(NODE_DIR), redis_server.url, "bull", queue]
    process = start(*args, *([worker_name] if worker_name else []))
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the Node worker never reported"
        listed = json.loads(process.stdout.readline())
        assert listed["workers"] >= 1, listed
        check = {"name": "q", "kind": "bullmq", "url": redis_server.url,
                 "queues": [queue, "other"]}  # fmt: skip
        result = await run_check(check)
        assert result.success, result.error
        assert queue_value(result, "bullmq_queue_workers", queue) == listed["workers"]
        assert queue_value(result, "bullmq_queue_workers", "other") == 0
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    after = await run_check(check)
    assert queue_value(after, "bullmq_queue_workers", queue) == 0
