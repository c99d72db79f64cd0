"""Redis Sentinel for the ``redis`` and ``bullmq`` kinds: a failover is followed without
restarting the exporter. Real parts: two Debian redis-servers (master and replica) and
Debian's redis-sentinel, all on free loopback ports."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from exporter.runner import CheckResult
from tests.servers import RedisServer
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    require_binary,
    running,
    value,
    wait_until,
)

MASTER = "queues"


class Sentinel:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=10)  # fmt: skip

    def master(self) -> tuple[str, int]:
        with self.client() as client:
            host, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return str(host), int(port)


@pytest.fixture
def sentinel_pair(
    redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> Iterator[tuple[RedisServer, RedisServer, Sentinel]]:
    """A master, its replica and one sentinel (quorum 1, down after 1 s)."""
    binary = require_binary("redis-sentinel", "redis-sentinel")
    master = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(master.port))
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    log = tmp_path / "sentinel.log"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {log}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
    )
    process = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL)
    sentinel = Sentinel(process, port, log)
    try:

        def knows_replica() -> bool:
            try:
                with sentinel.client() as client:
                    replicas = client.execute_command("SENTINEL", "replicas", MASTER)
            except redis.exceptions.RedisError:
                return False
            return bool(replicas)

        wait_until(knows_replica, timeout=30, what="the sentinel to find the replica")
        yield master, replica, sentinel
    finally:
        process.kill()
        process.wait()


def queue(server: RedisServer, waiting: int) -> None:
    with server.client() as client:
        client.hset("bull:ingest:meta", "opts.maxLenEvents", 10000)
        for job in range(client.llen("bull:ingest:wait") + 1, waiting + 1):
            client.hset(f"bull:ingest:{job}", mapping={"name": "j", "timestamp": 1000 * job})
            client.lpush("bull:ingest:wait", str(job))


async def test_failover_is_followed_without_restart(
    sentinel_pair: tuple[RedisServer, RedisServer, Sentinel],
) -> None:
    master, replica, sentinel = sentinel_pair
    queue(master, waiting=3)
    with master.client() as client:
        client.wait(1, 5000)  # the replica has the queue
    common = {"url": "redis://any/0", "sentinels": [f"127.0.0.1:{sentinel.port}"],
              "sentinel_master": MASTER, "timeout": "2s"}  # fmt: skip
    checks = [
        {"name": "q", "kind": "bullmq", "queues": ["ingest"], **common},
        {"name": "r", "kind": "redis", **common},
    ]

    def waiting(result: CheckResult) -> float:
        return value(result, "bullmq_queue_jobs", prefix="bull", queue="ingest", state="waiting")

    async with running(checks) as runner:
        queues, server = await runner.scrape(30)
        assert queues.success, queues.error
        assert server.success, server.error
        assert waiting(queues) == 3

        master.kill()

        async def both_back() -> list[CheckResult] | None:
            results = await runner.scrape(30)
            return results if all(r.success for r in results) else None

        await async_wait_until(both_back, 60, "both checks to follow the failover")
        assert sentinel.master() == ("127.0.0.1", replica.port)
        queue(replica, waiting=5)  # written to the promoted replica only
        queues, server = await runner.scrape(30)
        assert queues.success, queues.error
        assert server.success, server.error
        assert waiting(queues) == 5


async def test_no_sentinel_answering_is_one_clear_reason(tmp_path: Path) -> None:
    port = free_port()
    checks = [
        {"name": "q", "kind": "bullmq", "url": "redis://any/0", "timeout": "2s",
         "sentinels": [f"127.0.0.1:{port}"], "sentinel_master": MASTER},
    ]  # fmt: skip
    async with running(checks) as runner:
        (result,) = await runner.scrape(30)
    assert not result.success
    assert result.error == (
        f"redis sentinel master {MASTER}: no sentinel named the master "
        f"(127.0.0.1:{port}: connection refused)"
    )


def test_sentinel_keys_are_validated() -> None:
    base = {"name": "q", "kind": "bullmq", "url": "redis://any/0"}
    assert config_problems({**base, "sentinels": ["127.0.0.1:26379"]}) == [
        "checks[0].sentinel_master: required with sentinels: the master's name"
    ]
    assert config_problems({**base, "sentinel_master": MASTER}) == [
        "checks[0].sentinels: required with sentinel_master: host:port of each sentinel"
    ]
    assert config_problems({**base, "sentinels": ["nohost"], "sentinel_master": MASTER}) == [
        'checks[0].sentinels: expected "host:port", got "nohost"'
    ]
