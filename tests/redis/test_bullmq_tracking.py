"""Change tracking: a queue whose keys did not change is not read, and no change is missed.

Two probes read the same real Redis: one with ``track_changes`` (the default), one that
reads every queue on every scrape (``track_changes: false``); after every step both must
export the very same samples. Which queues a scrape read comes from Redis' own
``INFO commandstats``: the script sends five ``ZCARD`` per queue it reads. Changes are made
by the official bullmq package (its ``Queue.add``), by hand where the point is a write the
tracking cannot see (a lock key), or by nothing at all (time passing a schedule).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from bench.bullmq_data import Plan, queue_names, write_queues
from exporter.checks import _redis_tracking as tracking_module
from exporter.checks import bullmq as kind
from exporter.checks.bullmq import BullmqProbe
from exporter.samples import Sink
from tests.redis.conftest import Closing, require_bullmq
from tests.redis.test_bullmq_script import exported, jobs, one, probe, scrape
from tests.servers import RedisServer

QUIET = Plan(waiting=3, active=0, delayed=1, prioritized=1, waiting_children=0, completed=2)
ZCARDS_PER_QUEUE = 5  # completed, failed, delayed, prioritized, waiting-children


def queues_read(calls: dict[str, tuple[int, int]]) -> int:
    zcards, _ = calls.get("zcard", (0, 0))
    assert zcards % ZCARDS_PER_QUEUE == 0, calls
    return zcards // ZCARDS_PER_QUEUE


async def both(tracked: BullmqProbe, full: BullmqProbe, client: redis.Redis) -> tuple[Sink, int]:
    """Scrape both probes; their samples must be equal. The tracked one's sink and how
    many queues it read."""
    by_tracking, calls = await scrape(tracked, client)
    by_reading, _ = await scrape(full, client)
    assert exported(by_tracking) == exported(by_reading)
    return by_tracking, queues_read(calls)


def quiet_queues(
    closing: Closing, server: RedisServer, count: int
) -> tuple[str, list[str], redis.Redis]:
    """``count`` queues written with the QUIET plan into the test's Redis: its URL, their
    names and a client of it (closed when the test ends)."""
    stats = closing(redis.Redis.from_url(server.url, decode_responses=True))
    names = queue_names(count)
    write_queues(stats, "bull", names, QUIET)
    return server.url, names, stats


def tracked_and_full(closing: Closing, url: str) -> tuple[BullmqProbe, BullmqProbe]:
    """A probe with change tracking (the default) and one reading every queue, both
    closed when the test ends."""
    return closing(probe({"url": url})), closing(probe({"url": url, "track_changes": False}))


def reading_connection(client: redis.Redis) -> str:
    """The address of the probe's reading connection: the one that has tracking on."""
    (found,) = [
        c["addr"]
        for c in client.client_list()
        if "t" in c["flags"] and c["id"] != str(client.client_id())
    ]
    return str(found)


async def test_only_changed_queues_are_read_and_no_change_is_missed(
    redis_server: RedisServer,
    closing: Closing,
) -> None:
    bullmq = require_bullmq("v6")
    url, names, stats = quiet_queues(closing, redis_server, 12)
    tracked, full = tracked_and_full(closing, url)
    _, read = await both(tracked, full, stats)
    assert read == len(names)  # nothing known yet: every queue
    _, read = await both(tracked, full, stats)
    assert read == 0  # nothing changed

    bullmq.run("add", url, "bull", names[3], "2")
    sink, read = await both(tracked, full, stats)
    assert read == 1
    oracle = bullmq.run("counts", url, "bull", names[3])["counts"][names[3]]
    assert jobs(sink, names[3])["waiting"] == oracle["waiting"] == QUIET.waiting + 2
    # The same keys change again: the server reported them once and forgot them, so
    # reading the queue must have had them tracked anew.
    bullmq.run("add", url, "bull", names[3], "1")
    sink, read = await both(tracked, full, stats)
    assert read == 1
    assert jobs(sink, names[3])["waiting"] == QUIET.waiting + 3

    # The connection that takes the invalidations is lost, and a change lands while
    # it is: every queue is read again (tracking is set up anew).
    stats.client_kill_filter(_type="pubsub")
    bullmq.run("add", url, "bull", names[5], "1")
    _, read = await both(tracked, full, stats)
    assert read == len(names)
    _, read = await both(tracked, full, stats)
    assert read == 0

    # The reading connection is lost (the server forgets what it tracked).
    stats.client_kill(reading_connection(stats))
    bullmq.run("add", url, "bull", names[6], "1")
    _, read = await both(tracked, full, stats)
    assert read == len(names)

    # FLUSHDB invalidates every key: the queues are gone from both.
    stats.flushdb()
    sink, read = await both(tracked, full, stats)
    assert read == len(names)
    assert not [s for s in sink.samples if s.family.name == "bullmq_queue_jobs"]


async def test_a_lock_that_expires_shows_its_stalled_job_with_no_write_tracked(
    redis_server: RedisServer,
    closing: Closing,
) -> None:
    """A worker that dies leaves its job's lock to expire: none of the keys the tracking
    names changes, yet the stalled job must show once the lock is gone. The queue is
    read again when its earliest lock can expire (its TTL, as the script reads it), not
    on every scrape before that; a lock with no expiry never makes it read."""
    url, names, stats = quiet_queues(closing, redis_server, 3)
    for name, lock_ms in ((names[1], 1500), (names[2], None)):
        stats.rpush(f"bull:{name}:active", "held")
        stats.set(f"bull:{name}:held:lock", "worker-token", px=lock_ms)
    tracked, full = tracked_and_full(closing, url)
    sink, read = await both(tracked, full, stats)
    assert read == len(names)
    assert one(sink, "bullmq_queue_stalled_jobs", names[1]) == 0
    sink, read = await both(tracked, full, stats)
    if stats.pttl(f"bull:{names[1]}:held:lock") > 0:  # (a loaded machine may be late)
        assert read == 0  # no lock can have expired yet
    deadline = time.monotonic() + 30
    while one(sink, "bullmq_queue_stalled_jobs", names[1]) == 0:
        assert time.monotonic() < deadline, "the stalled job never showed"
        await asyncio.sleep(0.1)  # a scrape interval, not a synchronisation
        sink, read = await both(tracked, full, stats)
    assert read == 1  # that queue alone
    assert one(sink, "bullmq_queue_stalled_jobs", names[2]) == 0
    _, read = await both(tracked, full, stats)
    assert read == 0  # stalled until a worker moves it: nothing left to expire


async def test_a_schedule_falls_overdue_with_no_write(
    redis_server: RedisServer, closing: Closing
) -> None:
    """Overdue is a matter of time: a queue whose earliest run passes the grace is read
    again although none of its keys changed."""
    url = redis_server.url
    (name,) = queue_names(1)
    stats = closing(redis.Redis.from_url(url, decode_responses=True))
    write_queues(stats, "bull", [name], QUIET)
    due = int(time.time() * 1000) + 1500
    stats.zadd(f"bull:{name}:repeat", {"poll::::1000": due})
    tracked = closing(probe({"url": url, "schedule_grace": "0s"}))
    sink, _ = await scrape(tracked, stats)
    assert one(sink, "bullmq_queue_schedulers_overdue", name) == 0
    _, calls = await scrape(tracked, stats)
    assert queues_read(calls) == 0  # not due yet: nothing to read
    deadline = time.monotonic() + 30
    while one(sink, "bullmq_queue_schedulers_overdue", name) == 0:
        assert time.monotonic() < deadline, "the overdue run never showed"
        await asyncio.sleep(0.1)  # a scrape interval, not a synchronisation
        sink, _ = await scrape(tracked, stats)
    assert time.time() * 1000 > due


async def test_queues_are_read_again_after_the_refresh_age(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    closing: Closing,
) -> None:
    """Unchanged queues are read again, each between half of REFRESH_AGE and all of it
    after its last read (4 s here), and not before."""
    monkeypatch.setattr(kind, "REFRESH_AGE", 4.0)
    url, names, stats = quiet_queues(closing, redis_server, 4)
    tracked = closing(probe({"url": url}))
    await scrape(tracked, stats)
    read_at = time.monotonic()  # (after the read: the refreshes are later than this)
    _, calls = await scrape(tracked, stats)
    if time.monotonic() - read_at < kind.REFRESH_AGE / 2:  # (a loaded machine may be late)
        assert queues_read(calls) == 0
    refreshed = queues_read(calls)
    deadline = time.monotonic() + 30
    while refreshed < len(names):
        assert time.monotonic() < deadline, f"{refreshed} of {len(names)} read again"
        await asyncio.sleep(0.1)  # a scrape interval, not a synchronisation
        before = time.monotonic()
        _, calls = await scrape(tracked, stats)
        if queues_read(calls):
            assert before - read_at >= kind.REFRESH_AGE / 2 - 0.5, before - read_at
        refreshed += queues_read(calls)
    assert time.monotonic() - read_at <= kind.REFRESH_AGE + 2.0


async def test_refused_tracking_reads_every_queue_and_says_so_once(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    closing: Closing,
) -> None:
    """An ACL user with no channel permission (Redis 7's default for new users) cannot
    subscribe to the invalidations: every scrape reads every queue, as without tracking."""
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    url, names, stats = quiet_queues(closing, redis_server, 3)
    stats.acl_setuser(
        "monitor", enabled=True, passwords=["+watch-only"], keys=["~*"],
        commands=["+@read", "+multi", "+exec", "+ping", "+info", "+client|list", "+client|id",
                  "+client|tracking", "+client|caching", "+subscribe", "+evalsha_ro", "+eval_ro"],
    )  # fmt: skip
    tracked = closing(probe({"url": url, "username": "monitor", "password": "watch-only"}))
    for _ in range(3):
        _, calls = await scrape(tracked, stats)
        assert queues_read(calls) == len(names)
    (refused,) = [
        r for r in caplog.records
        if r.getMessage() == "bullmq change tracking refused, reading every queue on every scrape"
    ]  # fmt: skip
    fields = refused.__dict__["fields"]
    assert fields["reason"] == (
        "SUBSCRIBE __redis__:invalidate: NOPERM this user has no permissions to access one of "
        "the channels used as arguments"
    )
    assert "&__redis__:invalidate" in fields["needs"]


async def test_tracking_stops_before_closed_connections_pile_up_in_redis(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    closing: Closing,
) -> None:
    """Redis keeps a closed connection's tracked keys until each key changes (its own
    ``tracking_total_items`` shows it): every redial of the reading connection leaves the
    unchanged queues' keys tracked once more. Past MAX_TRACKED_CONNECTIONS on one server
    the check stops tracking, before a new connection adds to that, and says so once."""
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    monkeypatch.setattr(tracking_module, "MAX_TRACKED_CONNECTIONS", 2)
    url, names, stats = quiet_queues(closing, redis_server, 3)
    tracked = closing(probe({"url": url}))
    keys = len(names) * 14  # the keys the script reads of each queue

    def items() -> int:
        return int(stats.info("stats")["tracking_total_items"])

    seen = []
    for _ in range(3):
        await scrape(tracked, stats)
        await scrape(tracked, stats)
        seen.append(items())
        stats.client_kill(reading_connection(stats))
    assert seen == [keys, 2 * keys, 2 * keys]
    for _ in range(2):
        _, calls = await scrape(tracked, stats)
        assert queues_read(calls) == len(names)
    assert items() == 2 * keys
    (off,) = [r for r in caplog.records if "change tracking turned off" in r.getMessage()]
    assert off.levelno == logging.WARNING
    assert "dialled 3 times" in off.__dict__["fields"]["reason"]


def test_refreshes_are_spread_over_the_second_half_of_the_refresh_age() -> None:
    """Queues read together (the first scrape reads them all) are read again on different
    scrapes: per queue between half of REFRESH_AGE and all of it, evenly."""
    after = sorted(kind._refresh_after(("bull", name)) for name in queue_names(1000))
    assert after[0] >= kind.REFRESH_AGE / 2
    assert after[-1] <= kind.REFRESH_AGE
    window = kind.REFRESH_AGE / 20  # 15 s, a common scrape interval
    for start in range(10):
        low = kind.REFRESH_AGE / 2 + start * window
        share = sum(1 for a in after if low <= a < low + window) / len(after)
        assert 0.05 <= share <= 0.15, (start, share)
