"""The bullmq kind's reply reader against hostile servers, and busy event streams.

Hostile servers are fakes on loopback (no real Redis sends these replies): each answers
the first request with a broken reply, and the check must fail within its timeout while
the event loop keeps running and memory stays bounded. Busy streams use a real
redis-server: 250 queues with 1,000 new events each between two scrapes.
"""

from __future__ import annotations

import asyncio
import itertools
import resource

import pytest

from exporter.checks import _redis_conn, bullmq
from exporter.checks._redis_conn import MAX_REPLY_BYTES
from exporter.checks.bullmq import EVENTS_TIME_SHARE
from exporter.runner import CheckResult
from tests.servers import RedisServer
from tests.support import run_check, running, values

# A generous "not stalled" bound for a loaded 2-core machine; the bench measures the rest.
MAX_LOOP_GAP = 0.5
TIMEOUT = 3.0


HOSTILE = {
    # a bulk string of 2^62 bytes, then bytes forever
    "bulk-2^62": (b"$4611686018427387904\r\n", b"x" * 65536),
    # arrays nested 100,000 deep around one integer
    "nested-100k": (b"*1\r\n" * 100_000 + b":1\r\n", b""),
    # an array of 10^9 elements that never ends
    "array-10^9": (b"*1000000000\r\n", b":1\r\n" * 16384),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_reply_fails_within_timeout_without_blocking_or_growing(
    case: str,
) -> None:
    head, body = HOSTILE[case]

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(65536)
            writer.write(head)
            while body:
                writer.write(body)
                await writer.drain()
            await reader.read()  # keep the connection open until the client hangs up
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - before - 0.005)

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    server = await asyncio.start_server(hostile, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ticking = asyncio.create_task(ticker())
    try:
        async with server:
            started = asyncio.get_running_loop().time()
            result = await run_check(
                {
                    "name": "q",
                    "kind": "bullmq",
                    "timeout": f"{TIMEOUT}s",
                    "url": f"redis://127.0.0.1:{port}/0",
                    "queues": ["ingest"],
                }
            )
            took = asyncio.get_running_loop().time() - started
    finally:
        ticking.cancel()
    assert not result.success
    error = result.error or ""
    assert error.startswith((f"redis 127.0.0.1:{port}: protocol error: ", "timed out after")), error
    assert took < TIMEOUT + 1.0
    gap = max(gaps, default=0.0)
    assert gap < MAX_LOOP_GAP, f"event loop blocked for {gap:.3f} s"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) * 1024
    assert grown < 4 * MAX_REPLY_BYTES, f"peak RSS grew by {grown >> 20} MiB"


async def test_reply_larger_than_the_limit_is_a_protocol_error() -> None:
    from redis import exceptions as rexc

    from exporter.checks._redis_conn import read_replies

    reader = asyncio.StreamReader()
    reader.feed_data(b"$100\r\n" + b"x" * 50)
    with pytest.raises(rexc.ConnectionError, match=r"protocol error: reply larger than"):
        await read_replies(reader, 1, limit=40)


QUEUES = 250
EVENTS = 1000  # new entries per queue between two scrapes
# Of every 20 entries BullMQ writes for finished jobs, say: added, waiting, active and...
PATTERN = ("added", "waiting", "active", "completed") * 4 + ("added", "waiting", "active",
                                                             "failed")  # fmt: skip


def finished_in(count: int) -> tuple[int, int]:
    kinds = list(itertools.islice(itertools.cycle(PATTERN), count))
    return kinds.count("completed"), kinds.count("failed")


@pytest.mark.parametrize("share", [EVENTS_TIME_SHARE, 0.02], ids=["default", "tight"])
async def test_busy_streams_stay_within_the_deadline_and_count_exactly(
    redis_server: RedisServer, share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default share of the 10 s timeout the burst is read in one scrape; with
    0.2 s for the stream it is not, and the following scrapes catch up from where each
    stopped, counting every finished job once."""
    monkeypatch.setattr(bullmq, "EVENTS_TIME_SHARE", share)
    timeout = 10.0
    names = [f"q{i:03d}" for i in range(QUEUES)]
    with redis_server.client() as client:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hset(f"bull:{name}:meta", "opts.maxLenEvents", 10000)
            pipe.xadd(f"bull:{name}:events", {"event": "added", "jobId": "0"})
        pipe.execute()
    check = {
        "name": "q",
        "kind": "bullmq",
        "url": redis_server.url,
        "timeout": f"{timeout}s",
        "counters": "events",
        "discovery_interval": "1h",
    }

    def counters(result: CheckResult) -> dict[str, tuple[float, float]]:
        completed = values(result, "bullmq_jobs_completed_total")
        failed = values(result, "bullmq_jobs_failed_total")
        return {key[1][1]: (completed[key], failed[key]) for key in completed}

    async with running([check]) as runner:
        (first,) = await runner.scrape(60)
        assert first.success, first.error
        assert set(counters(first).values()) == {(0.0, 0.0)}  # positioned at the end

        with redis_server.client() as client:
            for name in names:
                pipe = client.pipeline(transaction=False)
                for i in range(EVENTS):
                    pipe.xadd(f"bull:{name}:events",
                              {"event": PATTERN[i % len(PATTERN)], "jobId": str(i),
                               "returnvalue": '{"ok":true}'})  # fmt: skip
                pipe.execute()
        want = finished_in(EVENTS)
        seen: list[dict[str, tuple[float, float]]] = []
        for _ in range(30):  # a burst larger than one scrape's budget catches up
            (busy,) = await runner.scrape(60)
            assert busy.success, busy.error
            assert busy.duration < timeout
            seen.append(counters(busy))
            if all(pair == want for pair in seen[-1].values()):
                break
        assert seen[-1] == dict.fromkeys(names, (float(want[0]), float(want[1])))
        if share < EVENTS_TIME_SHARE:
            assert len(seen) > 1  # it did have to catch up
        for earlier, later in itertools.pairwise(seen):  # counters never go back
            assert all(earlier[n] <= later[n] for n in names)
        (quiet,) = await runner.scrape(60)
        assert counters(quiet) == seen[-1]


async def test_entries_too_large_for_a_round_trip_shrink_the_pages_and_still_count(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completed events carry the job's return value: with large ones a page of entries
    can exceed the reader's byte limit (1 MiB here instead of 64). The pages shrink until
    they fit, every scrape of the follow phase still succeeds, and nothing is lost."""
    monkeypatch.setattr(_redis_conn, "MAX_REPLY_BYTES", 1 << 20)
    names = ["a", "b", "c"]
    big = "x" * 2048
    with redis_server.client() as client:
        for name in names:
            client.hset(f"bull:{name}:meta", "opts.maxLenEvents", 10000)
            client.xadd(f"bull:{name}:events", {"event": "added", "jobId": "0"})
    check = {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": names,
             "counters": "events"}  # fmt: skip
    async with running([check]) as runner:
        (first,) = await runner.scrape(60)
        assert first.success, first.error
        with redis_server.client() as client:
            pipe = client.pipeline(transaction=False)
            for name in names:
                for i in range(1500):
                    event = "failed" if i % 10 == 0 else "completed"
                    pipe.xadd(
                        f"bull:{name}:events", {"event": event, "jobId": str(i), "returnvalue": big}
                    )
            pipe.execute()
        for _ in range(40):
            (result,) = await runner.scrape(60)
            assert result.success, result.error
            completed = values(result, "bullmq_jobs_completed_total")
            failed = values(result, "bullmq_jobs_failed_total")
            if set(completed.values()) == {1350.0} and set(failed.values()) == {150.0}:
                break
        assert set(completed.values()) == {1350.0}
        assert set(failed.values()) == {150.0}
