"""Change tracking, adversarially: sequences in which a tracked probe could export other
samples than a probe reading every queue (``track_changes: false``) at the same moment.

Each test drives a real Redis (and, where it can, the official bullmq package) into one
such sequence; the tracked probe must keep agreeing with the full reader.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
from redis import exceptions as rexc

from bench.bullmq_data import queue_names, write_queues
from exporter.checks._redis_conn import Command
from exporter.checks.base import CheckFailed
from exporter.samples import Sink
from tests.redis.conftest import Closing, require_bullmq
from tests.redis.test_bullmq_script import jobs, one, probe, scrape
from tests.redis.test_bullmq_tracking import QUIET, both, quiet_queues, tracked_and_full
from tests.servers import RedisServer


def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    """Poll a condition of the server with a deadline (no sleep stands for an event)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.005)


@contextlib.contextmanager
def busy(stats: redis.Redis, spinner: redis.Redis) -> Iterator[None]:
    """Redis answering BUSY (a read-only script of another client spinning past
    ``lua-time-limit``, which must be set low) until the block ends (SCRIPT KILL)."""

    def spin() -> None:
        # Read-only, so SCRIPT KILL ends it; 30 s at most if the kill never comes.
        with contextlib.suppress(rexc.ResponseError):
            spinner.eval(
                "local stop = tonumber(redis.call('TIME')[1]) + 30 "
                "while tonumber(redis.call('TIME')[1]) < stop do end",
                0,
            )

    thread = threading.Thread(target=spin)
    thread.start()

    def answers_busy() -> bool:
        try:
            stats.ping()
        except rexc.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    try:
        until("the server busy", answers_busy)
        yield
    finally:
        stats.script_kill()
        thread.join()


def pings(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def subscriber_id(client: redis.Redis) -> str:
    (found,) = [c["id"] for c in client.client_list() if "P" in c["flags"]]
    return str(found)


def output_flushed(client: redis.Redis, client_id: str) -> bool:
    (found,) = [c for c in client.client_list() if c["id"] == client_id]
    return found["obl"] == "0" and found["oll"] == "0"


async def test_an_invalidation_read_together_with_the_sync_pong_is_not_lost(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    closing: Closing,
) -> None:
    """A job is added right after the server answered the sync's PING on the subscribed
    connection, before the probe reads that answer: the PONG and the invalidation then
    come in one read. The write is after the sync point, so that scrape may miss it, but
    the next one must read the queue (the server reports a key once, then forgets it:
    an invalidation dropped is a queue never read again until REFRESH_AGE)."""
    bullmq = require_bullmq("v6")
    url, names, stats = quiet_queues(closing, redis_server, 2)
    tracked, full = tracked_and_full(closing, url)
    await both(tracked, full, stats)
    _, read = await both(tracked, full, stats)
    assert read == 0

    subscriber = tracked._tracking._subscriber
    real_exchange = subscriber.exchange
    sub_id = subscriber_id(stats)
    armed = [True]

    async def exchange(commands: Sequence[Command], done: Callable[[Any], bool]) -> list[Any]:
        if not (armed and list(commands) == [("PING",)]):
            return await real_exchange(commands, done)
        armed.clear()
        writer = subscriber._writer
        assert writer is not None
        real_write = writer.write
        before = pings(stats)

        def write(data: bytes) -> None:
            # Synchronous, so the event loop reads nothing meanwhile: the server
            # answers the PING, then runs the official package's add, and both
            # replies wait in the socket for the probe's one read.
            real_write(data)
            until("the subscribed connection's PING run", lambda: pings(stats) > before)
            bullmq.run("add", url, "bull", names[0], "1")
            until("the invalidation sent", lambda: output_flushed(stats, sub_id))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(writer, "write", write)
            return await real_exchange(commands, done)

    monkeypatch.setattr(subscriber, "exchange", exchange)
    await scrape(tracked, stats)  # the add landed after its sync point: either is fine
    assert not armed
    sink, read = await both(tracked, full, stats)
    assert jobs(sink, names[0])["waiting"] == QUIET.waiting + 1
    assert read == 1


async def test_a_scrape_that_fails_after_its_reads_leaves_no_queue_counted_as_read(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    closing: Closing,
) -> None:
    """Another client's long script (an obliterate or clean of a big queue, an operator's
    Lua) makes Redis answer BUSY to the second round trip of a scrape whose script trip
    already read the changed queues: the scrape fails, its samples are not written. The
    next scrape must read those queues again, not keep the samples from before the
    change: here a job completed (official package) and a stalled job (a lock expired,
    which no invalidation reports)."""
    bullmq = require_bullmq("v6")
    url = redis_server.url
    names = queue_names(2)
    done, stalled = names
    stats = closing(redis.Redis.from_url(url, decode_responses=True))
    write_queues(stats, "bull", names, QUIET)
    stats.rpush(f"bull:{stalled}:active", "held")
    stats.set(f"bull:{stalled}:held:lock", "worker-token", px=300)
    stats.config_set("lua-time-limit", 10)  # BUSY after 10 ms of a script
    tracked, full = tracked_and_full(closing, url)
    spinner = closing(redis.Redis.from_url(url, decode_responses=True))
    await both(tracked, full, stats)
    until("the lock expired", lambda: stats.exists(f"bull:{stalled}:held:lock") == 0)
    bullmq.run("finish", url, "bull", done, "1", "0", "keep")

    real_second_trip = tracked._second_trip

    async def second_trip_while_busy(reads: list[Any], now_ms: int) -> None:
        with busy(stats, spinner):
            await real_second_trip(reads, now_ms)

    monkeypatch.setattr(tracked, "_second_trip", second_trip_while_busy)
    with pytest.raises(CheckFailed, match="BUSY"):
        await tracked.collect(Sink("q"))
    monkeypatch.undo()

    sink, read = await both(tracked, full, stats)
    oracle = bullmq.run("counts", url, "bull", done)["counts"][done]
    assert jobs(sink, done)["completed"] == oracle["completed"] > QUIET.completed
    assert one(sink, "bullmq_queue_stalled_jobs", stalled) == 1
    assert read == 2


@pytest.mark.xfail(
    strict=True,
    reason="Redis sends no invalidation for SWAPDB (7.0): the swapped-in queues show within "
    "REFRESH_AGE; see docs/kinds/bullmq.md, Change tracking",
)
async def test_a_swapped_in_database_is_read(redis_server: RedisServer, closing: Closing) -> None:
    """An operator loads a restored copy into database 1 and swaps it in (SWAPDB 0 1):
    every key of database 0 changed, yet the server reports none of them."""
    url = redis_server.url
    names = queue_names(2)
    stats = closing(redis.Redis.from_url(url, decode_responses=True))
    restored = closing(redis.Redis.from_url(url.removesuffix("/0") + "/1", decode_responses=True))
    write_queues(stats, "bull", names, QUIET)
    write_queues(restored, "bull", names, QUIET)
    restored.lpush(f"bull:{names[0]}:wait", "restored")
    tracked, full = tracked_and_full(closing, url)
    await both(tracked, full, stats)
    await both(tracked, full, stats)
    stats.swapdb(0, 1)
    sink, _ = await both(tracked, full, stats)
    assert jobs(sink, names[0])["waiting"] == QUIET.waiting + 1


async def test_a_restart_that_loses_a_write_is_read_again(
    redis_server: RedisServer, closing: Closing
) -> None:
    """Redis restarts from its last snapshot: a job added after it is gone, and no
    invalidation says so. The redialled reading connection sets tracking up anew."""
    bullmq = require_bullmq("v6")
    url, names, stats = quiet_queues(closing, redis_server, 2)
    tracked, full = tracked_and_full(closing, url)
    stats.save()
    bullmq.run("add", url, "bull", names[0], "2")
    sink, _ = await both(tracked, full, stats)
    assert jobs(sink, names[0])["waiting"] == QUIET.waiting + 2
    _, read = await both(tracked, full, stats)
    assert read == 0
    stats.close()
    redis_server.kill()
    redis_server.start()
    stats = redis.Redis.from_url(url, decode_responses=True)
    sink, read = await both(tracked, full, stats)
    assert jobs(sink, names[0])["waiting"] == QUIET.waiting
    assert read == len(names)


async def test_a_worker_appearing_on_a_queue_not_read_keeps_every_other_figure(
    redis_server: RedisServer,
    closing: Closing,
) -> None:
    """Only the worker count moves on a queue whose last read counted events and new
    completed jobs: its samples are rebuilt from that read's row, which must not count
    them again."""
    bullmq = require_bullmq("v6")
    url, names, stats = quiet_queues(closing, redis_server, 2)
    tracked, full = tracked_and_full(closing, url)
    worker = closing(redis.Redis.from_url(url, decode_responses=True))
    await both(tracked, full, stats)
    bullmq.run("finish", url, "bull", names[0], "2", "1", "keep")
    await both(tracked, full, stats)
    worker.client_setname(f"bull:{names[0]}")  # how the Python package names it
    sink, read = await both(tracked, full, stats)
    assert read == 0
    assert one(sink, "bullmq_queue_workers", names[0]) == 1
    worker.close()
    _, read = await both(tracked, full, stats)
    assert read == 0


async def test_a_busy_server_fails_the_scrape_and_refuses_nothing(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    closing: Closing,
) -> None:
    """BUSY (or LOADING after a restart) says "not now": the scrape fails with that
    reason, and neither the script nor change tracking counts as refused (a refusal
    would read with pipelined commands, or every queue, for the next 10 minutes and log
    an ACL hint that points on-call at the wrong thing)."""
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    url, _, stats = quiet_queues(closing, redis_server, 3)
    stats.config_set("lua-time-limit", 10)
    tracked = closing(probe({"url": url}))
    spinner = closing(redis.Redis.from_url(url, decode_responses=True))
    await scrape(tracked, stats)
    with busy(stats, spinner), pytest.raises(CheckFailed, match=r": BUSY Redis is busy"):
        await tracked.collect(Sink("q"))
    _, calls = await scrape(tracked, stats)
    assert calls["evalsha_ro"][0] >= 1  # the script route, at once
    assert "multi" not in calls
    _, calls = await scrape(tracked, stats)
    assert "evalsha_ro" not in calls  # tracking set up again: nothing changed
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == []
