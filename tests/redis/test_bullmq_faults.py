"""bullmq kind when things go wrong: Redis down and back, bad keys, missing queues, caps,
bad configuration. Real redis-server; queue keys written in BullMQ's layout directly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers import RedisServer
from tests.support import config_problems, run_check, run_checks, running, value, values


def make_queue(server: RedisServer, name: str, waiting: int = 0, prefix: str = "bull") -> None:
    """A queue as BullMQ lays it out: meta hash, job hashes, ids in the wait list."""
    with server.client() as client:
        client.hset(f"{prefix}:{name}:meta", mapping={"opts.maxLenEvents": 10000})
        for job in range(1, waiting + 1):
            client.hset(f"{prefix}:{name}:{job}", mapping={"name": "j", "timestamp": 1000 * job})
            client.lpush(f"{prefix}:{name}:wait", str(job))


async def test_redis_killed_then_restarted_fails_then_recovers(redis_server: RedisServer) -> None:
    make_queue(redis_server, "ingest", waiting=3)
    checks = [
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "discovery_interval": "0s"},
        {"name": "r", "kind": "redis", "url": redis_server.url},
    ]
    async with running(checks) as runner:
        queues, server = await runner.scrape(30)
        assert queues.success, queues.error
        assert server.success, server.error
        assert (
            value(queues, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting") == 3
        )

        redis_server.kill()
        for _ in range(2):  # the pooled connections die first, then connecting fails
            queues, server = await runner.scrape(30)
            assert not queues.success
            assert not server.success
            port = redis_server.port
            assert queues.error == server.error == f"redis 127.0.0.1:{port}: connection refused"
            assert not values(queues, "bullmq_queue_jobs")  # nothing stale is reported

        redis_server.start()  # same port, empty dataset
        make_queue(redis_server, "ingest", waiting=1)
        queues, server = await runner.scrape(30)
        assert queues.success, queues.error
        assert server.success, server.error
        assert (
            value(queues, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting") == 1
        )
        assert value(server, "redis_uptime_seconds") < 60


async def test_wrong_type_key_skips_the_queue_with_a_logged_reason(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    make_queue(redis_server, "good", waiting=2)
    make_queue(redis_server, "broken", waiting=1)
    with redis_server.client() as client:
        client.delete("bull:broken:active")
        client.set("bull:broken:active", "not a list")
    caplog.set_level(logging.WARNING, logger="runbook_exporter")

    discovered = await run_check({"name": "q", "kind": "bullmq", "url": redis_server.url})
    assert discovered.success, discovered.error
    assert value(discovered, "bullmq_queues_skipped", prefix="bull") == 1
    assert value(discovered, "bullmq_queues", prefix="bull") == 1
    assert value(discovered, "bullmq_queue_jobs", prefix="bull", queue="good", state="waiting") == 2
    assert not [k for k in values(discovered, "bullmq_queue_jobs") if ("queue", "broken") in k]
    skipped = [r for r in caplog.records if r.getMessage() == "bullmq queue skipped"]
    assert len(skipped) == 1
    assert "bull:broken:active: WRONGTYPE" in skipped[0].__dict__["fields"]["reason"]

    # Asked for by name, the broken queue fails the check; the good one is still reported.
    listed = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": ["good", "broken"]}
    )
    assert not listed.success
    assert (listed.error or "").startswith("bull:broken: bull:broken:active: WRONGTYPE")
    assert value(listed, "bullmq_queue_jobs", prefix="bull", queue="good", state="waiting") == 2


async def test_listed_queue_before_it_exists_is_zero_and_counts_from_its_start(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """getJobCounts() of a queue with no keys is all zeros, so is ours; its counters count
    every event once the queue appears (nothing happened before), so a first failure is
    an increase that alerts can see. The missing queue is logged once (a typo?)."""
    make_queue(redis_server, "mail", waiting=1)
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    check = {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": ["mail", "ingest"]}
    async with running([check]) as runner:
        for _ in range(2):
            (before,) = await runner.scrape(30)
            assert before.success, before.error
            for state in ("waiting", "failed", "paused"):
                assert (
                    value(before, "bullmq_queue_jobs", prefix="bull", queue="ingest", state=state)
                    == 0
                )
            assert value(before, "bullmq_jobs_failed_total", prefix="bull", queue="ingest") == 0
        assert value(before, "bullmq_queues", prefix="bull") == 2
        logged = [r for r in caplog.records if r.getMessage() == "bullmq listed queue not found"]
        assert len(logged) == 1
        assert logged[0].__dict__["fields"]["queue"] == "ingest"

        make_queue(redis_server, "ingest")
        with redis_server.client() as client:
            for job in range(2):
                client.xadd("bull:ingest:events", {"event": "failed", "jobId": str(job)})
        (after,) = await runner.scrape(30)
        assert value(after, "bullmq_jobs_failed_total", prefix="bull", queue="ingest") == 2


async def test_discovery_cap_reports_instead_of_exploding(redis_server: RedisServer) -> None:
    for name in ("e", "d", "c", "b", "a"):
        make_queue(redis_server, name)
    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "max_queues": 3}
    )
    assert result.success, result.error
    assert value(result, "bullmq_queues_cap_reached", prefix="bull") == 1
    assert value(result, "bullmq_queues", prefix="bull") == 3
    queues = {dict(k)["queue"] for k in values(result, "bullmq_queue_paused")}
    assert queues == {"a", "b", "c"}


async def test_prefixes_and_legacy_id_key_discovery(redis_server: RedisServer) -> None:
    make_queue(redis_server, "ingest", waiting=1)
    make_queue(redis_server, "exports", waiting=2, prefix="app*1")  # glob characters
    with redis_server.client() as client:
        client.set("app*1:legacy:id", 7)  # a Bull 3 queue: no meta hash
        client.lpush("app*1:legacy:wait", "7")
        client.set("appx1:other:meta", "not a queue of this prefix")
        client.hset("bull:job:with:colons:meta", "x", 1)  # not a queue name
    base = {"name": "q", "kind": "bullmq", "url": redis_server.url, "prefix": ["bull", "app*1"]}

    plain = await run_check(base)
    assert plain.success, plain.error
    assert {
        (dict(k)["prefix"], dict(k)["queue"]) for k in values(plain, "bullmq_queue_paused")
    } == {("bull", "ingest"), ("app*1", "exports")}

    legacy = await run_check({**base, "discover_id_keys": True})
    assert legacy.success, legacy.error
    assert value(legacy, "bullmq_queue_jobs", prefix="app*1", queue="legacy", state="waiting") == 1
    assert value(legacy, "bullmq_queues", prefix="app*1") == 2


async def test_password_from_environment_and_auth_failure(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory(password="s3cret-pw")
    make_queue(server, "ingest", waiting=1)
    url = f"redis://:${{REDIS_PASSWORD}}@127.0.0.1:{server.port}/0"
    check = {"name": "q", "kind": "bullmq", "url": url}

    (good,) = await run_checks([check], env={"REDIS_PASSWORD": "s3cret-pw"})
    assert good.success, good.error
    (bad,) = await run_checks([check], env={"REDIS_PASSWORD": "wrong-pw"})
    assert not bad.success
    assert (bad.error or "").startswith(f"redis 127.0.0.1:{server.port}: authentication failed")
    assert "wrong-pw" not in (bad.error or "")
    (none,) = await run_checks([{"name": "q", "kind": "bullmq", "url": server.url}])
    assert not none.success
    assert "authentication failed" in (none.error or "")


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].url: required but missing"]),
        (
            {"url": "http://127.0.0.1:6379"},
            [
                "checks[0].url: expected a URL starting with redis:// or rediss:// or unix://, "
                'got "http://127.0.0.1:6379"'
            ],
        ),
        (
            {"url": "redis://127.0.0.1:6379/zero"},
            ['checks[0].url: database must be a number such as /0, got "/zero"'],
        ),
        (
            {"url": "redis://:pw@127.0.0.1:99999/0"},
            ["checks[0].url: invalid URL: Port out of range 0-65535"],
        ),
        ({"url": "redis://h/0", "prefix": []}, ["checks[0].prefix: must not be empty"]),
        (
            {"url": "redis://h/0", "prefix": ["bull", "bull"]},
            ['checks[0].prefix: duplicate prefix "bull"'],
        ),
        (
            {"url": "redis://h/0", "queues": []},
            ["checks[0].queues: must not be empty (leave queues out to discover them)"],
        ),
        (
            {"url": "redis://h/0", "queues": ["a:b"]},
            ["checks[0].queues: BullMQ queue names cannot contain ':', got \"a:b\""],
        ),
        (
            {"url": "redis://h/0", "queues": ["a"], "max_queues": 5},
            ["checks[0].max_queues: only used with discovery; leave it out when queues are listed"],
        ),
        (
            {"url": "redis://h/0", "max_queues": 0},
            ["checks[0].max_queues: must be at least 1, got 0"],
        ),
        (
            {"url": "redis://h/0", "counters": "sometimes"},
            ['checks[0].counters: expected one of auto, metrics, events, off, got "sometimes"'],
        ),
        (
            {"url": "redis://h/0", "discovery_interval": "soon"},
            ['checks[0].discovery_interval: expected a duration such as 5s, got "soon"'],
        ),
        (
            {"url": "redis://h/0", "tls_ca_file": "/etc/ssl/certs/ca-certificates.crt"},
            ["checks[0].tls_ca_file: only used with a rediss:// URL"],
        ),
        (
            {"url": "rediss://h/0", "tls_ca_file": "/nonexistent/ca.pem"},
            ['checks[0].tls_ca_file: no such file "/nonexistent/ca.pem"'],
        ),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, object], problems: list[str]
) -> None:
    assert config_problems({"name": "q", "kind": "bullmq", **options}) == problems


async def test_restart_between_scrapes_is_redialled_within_the_scrape(
    redis_server: RedisServer,
) -> None:
    make_queue(redis_server, "ingest", waiting=2)
    checks: list[dict[str, Any]] = [
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": ["ingest"]},
        {"name": "r", "kind": "redis", "url": redis_server.url},
    ]
    async with running(checks) as runner:
        for result in await runner.scrape(30):
            assert result.success, result.error
        redis_server.restart()  # the kept connections are now dead
        make_queue(redis_server, "ingest", waiting=5)
        after, server = await runner.scrape(30)
        assert after.success, after.error
        assert server.success, server.error
        assert (
            value(after, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting") == 5
        )


async def test_server_that_never_answers_times_out_and_is_hung_up_on() -> None:
    """A loopback peer that accepts and reads but never replies (a hung Redis)."""
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        hung_up.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run_check(
            {
                "name": "q",
                "kind": "bullmq",
                "timeout": "500ms",
                "url": f"redis://127.0.0.1:{port}/0",
            }
        )
        assert not result.success
        assert (result.error or "").startswith("timed out after")
        await asyncio.wait_for(hung_up.wait(), 10)


async def test_read_only_acl_user_over_unix_socket(
    redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    """The documented ACL (+@read +multi +exec +client|list) is enough; username from its
    own key. Without +client|list the check says so in one reason and still exports the
    counts; ``workers: false`` needs no more than +@read +multi +exec."""
    sock = tmp_path / "redis.sock"
    server = redis_factory("--unixsocket", str(sock), "--unixsocketperm", "700")
    make_queue(server, "ingest", waiting=3)
    with server.client() as client:
        client.acl_setuser(
            "monitor",
            enabled=True,
            passwords=["+watch-only"],
            keys=["~*"],
            commands=["+@read", "+multi", "+exec", "+ping", "+info", "+client|list"],
        )
        client.acl_setuser(
            "counts-only",
            enabled=True,
            passwords=["+watch-only"],
            keys=["~*"],
            commands=["+@read", "+multi", "+exec"],
        )
    check = {
        "name": "q",
        "kind": "bullmq",
        "url": f"unix://{sock}?db=0",
        "username": "monitor",
        "password": "watch-only",
    }
    result = await run_check(check)
    assert result.success, result.error
    assert value(result, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting") == 3
    assert value(result, "bullmq_queue_workers", prefix="bull", queue="ingest") == 0

    refused = await run_check({**check, "username": "counts-only"})
    assert not refused.success
    assert refused.error == (
        "CLIENT LIST refused (NOPERM this user has no permissions to run the 'client|list' "
        "command): bullmq_queue_workers needs +client|list in the user's ACL, or set "
        "workers: false"
    )
    assert value(refused, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting") == 3
    assert not values(refused, "bullmq_queue_workers")
    counts_only = await run_check({**check, "username": "counts-only", "workers": False})
    assert counts_only.success, counts_only.error
    assert not values(counts_only, "bullmq_queue_workers")
    denied = await run_check(
        {
            "name": "q",
            "kind": "bullmq",
            "url": f"unix://{sock}",
            "username": "monitor",
            "password": "guess",
        }
    )
    assert not denied.success
    assert (denied.error or "").startswith(f"redis {sock}: authentication failed (WRONGPASS")
