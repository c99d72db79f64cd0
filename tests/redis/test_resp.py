"""The bullmq kind's own RESP reader and packer (no server needed for the parser; the
packer's output is checked against a real redis-server with non-ASCII queue names)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis import exceptions as rexc

from exporter.checks._redis_conn import (
    Arg,
    CommandTemplate,
    Key,
    RawRedis,
    RedisConnOptions,
    pack,
    read_replies,
)
from tests.servers import RedisServer
from tests.support import run_check, value

REPLIES = (
    b"+OK\r\n+QUEUED\r\n:42\r\n$-1\r\n$6\r\nh\xc3\xa9llo\r\n*-1\r\n*0\r\n"
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$5\r\nevent\r\n$6\r\nfailed\r\n$0\r\n\r\n"
)
EXPECTED_COUNT = 9


async def test_replies_split_at_every_byte_parse_the_same() -> None:
    for cut in range(1, len(REPLIES)):
        reader = asyncio.StreamReader()
        reader.feed_data(REPLIES[:cut])
        reader.feed_data(REPLIES[cut:])
        reader.feed_eof()
        replies = await read_replies(reader, EXPECTED_COUNT)
        assert replies[:7] == ["OK", "QUEUED", 42, None, "héllo", None, []], cut
        assert isinstance(replies[7], rexc.ResponseError)
        assert str(replies[7]).startswith("WRONGTYPE")
        assert replies[8] == [["1-0", ["event", "failed"]], ""]


async def test_connection_closed_mid_reply_is_a_connection_error() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"*2\r\n:1\r\n")
    reader.feed_eof()
    with pytest.raises(rexc.ConnectionError, match="connection closed by server"):
        await read_replies(reader, 1)


def test_template_renders_what_pack_packs() -> None:
    template = CommandTemplate(
        [("LLEN", Key("wait")), ("HGET", Key("meta"), "paused"), ("EXISTS", Key("meta"), Key("id"))]
    )
    for base in ("bull:ingest:", "bull:café:", "{app}:q{1}:"):
        assert template.render(base).encode() == pack(
            [
                ("LLEN", base + "wait"),
                ("HGET", base + "meta", "paused"),
                ("EXISTS", base + "meta", base + "id"),
            ]
        )
    assert template.count == 3


def test_template_fills_in_per_use_values() -> None:
    template = CommandTemplate(
        [
            ("XRANGE", Key("events"), Arg("after"), "+", "COUNT", "100"),
            ("ZREVRANGEBYSCORE", Key("completed"), "+inf", Arg("since")),
        ]
    )
    for base, after, since in (("bull:a:", "1-1", "-inf"), ("bull:ü:", "17000-0", "{x}")):
        assert template.render(base, after, since).encode() == pack(
            [
                ("XRANGE", base + "events", after, "+", "COUNT", "100"),
                ("ZREVRANGEBYSCORE", base + "completed", "+inf", since),
            ]
        )
    with pytest.raises(ValueError, match="takes 2 values, got 1"):
        template.render("bull:a:", "1-1")


async def test_non_ascii_names_round_trip(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.hset("bull:café:meta", "opts.maxLenEvents", 10000)
        client.lpush("bull:café:wait", "1", "2")
        client.hset("bull:café:1", "timestamp", 1_700_000_000_000)
        client.hset("{ünï}:köln:meta", "opts.maxLenEvents", 10000)
    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "prefix": ["bull", "{ünï}"]}
    )
    assert result.success, result.error
    assert value(result, "bullmq_queue_jobs", prefix="bull", queue="café", state="waiting") == 2
    assert (
        value(
            result, "bullmq_queue_oldest_waiting_job_timestamp_seconds", prefix="bull", queue="café"
        )
        == 1_700_000_000
    )
    assert value(result, "bullmq_queues", prefix="{ünï}") == 1


async def test_parts_of_one_round_trip_are_handed_over_in_order_and_never_replayed(
    redis_server: RedisServer,
) -> None:
    raw = RawRedis(RedisConnOptions(redis_server.url, None, None, None, False))
    got: list[list[Any]] = []

    async def each(replies: list[Any]) -> None:
        got.append(replies)

    def parts() -> Iterator[tuple[bytes, int]]:
        yield pack([("PING",)]), 1
        yield pack([("ECHO", "a"), ("ECHO", "b")]), 2
        yield pack([("GET", "missing")]), 1

    try:
        await raw.execute_parts(parts(), each)
        assert got == [["PONG"], ["a", "b"], [None]]

        # The kept connection dies with the server: redialled, since nothing was handed over.
        redis_server.restart()
        got.clear()
        await raw.execute_parts(parts(), each)
        assert got == [["PONG"], ["a", "b"], [None]]

        # The connection dies after the first part was handed over: the error surfaces and
        # no part is handed over twice (a redial would repeat it).
        calls: list[list[Any]] = []

        async def restart_after_first(replies: list[Any]) -> None:
            calls.append(replies)
            redis_server.restart()

        blocking = [(pack([("PING",)]), 1), (pack([("BLPOP", "nothing", "10")]), 1)]
        with pytest.raises(rexc.ConnectionError):
            await raw.execute_parts(blocking, restart_after_first)
        assert calls == [["PONG"]]
    finally:
        await raw.close()
