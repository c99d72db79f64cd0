"""bullmq kind vs the official bullmq package: the exporter's numbers are getJobCounts().

Jobs are created by the real package (2.26.x writes BullMQ's v5 layout, 3.x the v6 layout)
in every state on a real redis-server; the package's own getJobCounts() is the oracle.
"""

from __future__ import annotations

from typing import Any

from exporter.checks import KINDS
from exporter.checks.bullmq import STATES
from exporter.config import load_data
from exporter.runner import CheckResult
from exporter.samples import Sample, Sink
from tests.redis.conftest import Bullmq
from tests.servers import RedisServer
from tests.support import run_check, running, value, values

# Commands a scrape may send besides those the server itself flags "readonly": the
# MULTI/EXEC that batches reads, connection setup, and CLIENT LIST (for the workers).
# Commands that touch no data: transactions, server and connection state (client tracking:
# CLIENT ID, CLIENT TRACKING, CLIENT CACHING, and SUBSCRIBE for the invalidations).
NOT_DATA = {"multi", "exec", "ping", "info", "client|list", "client|setinfo", "hello", "select",
            "auth", "client|id", "client|tracking", "client|caching", "subscribe"}  # fmt: skip


def jobs(result: CheckResult, queue: str) -> dict[str, float]:
    return {
        state: value(result, "bullmq_queue_jobs", prefix="bull", queue=queue, state=state)
        for state in STATES
    }


def expected(counts: dict[str, Any]) -> dict[str, float]:
    return {state: float(counts[state]) for state in STATES}


async def test_every_state_equals_get_job_counts(bullmq: Bullmq, redis_server: RedisServer) -> None:
    base = f"ingest{bullmq.layout}"
    made = bullmq.run("populate", redis_server.url, "bull", base)
    names = [f"{base}-all", f"{base}-children", f"{base}-paused"]

    with redis_server.client() as client:
        client.config_resetstat()
    result = await run_check({"name": "q", "kind": "bullmq", "url": redis_server.url})
    assert result.success, result.error
    with redis_server.client() as client:
        used = {name.removeprefix("cmdstat_") for name in client.info("commandstats")}
        used -= {"config|resetstat"}  # the test's own
        flags = {}
        for name in used - NOT_DATA:
            command = name.split("|")[0]
            flags[name] = client.execute_command("COMMAND", "INFO", command)[command]["flags"]
    writes = {name for name, flag in flags.items() if "readonly" not in flag}
    assert not writes, f"the scrape sent commands Redis does not flag readonly: {writes}"

    # The oracle, asked after the scrape: nothing moved in between (no worker runs).
    after = bullmq.run("counts", redis_server.url, "bull", *names)["counts"]
    assert after == made["counts"]
    for name in names:
        assert jobs(result, name) == expected(after[name]), name
        paused = value(result, "bullmq_queue_paused", prefix="bull", queue=name)
        assert paused == (1.0 if after[name]["is_paused"] else 0.0), name

    # Every state of the fully populated queue is non-zero: each one is really exercised.
    everything = after[f"{base}-all"]
    assert all(everything[s] > 0 for s in STATES if s != "paused"), everything
    assert value(result, "bullmq_queues", prefix="bull") == 3
    assert value(result, "bullmq_queues_cap_reached", prefix="bull") == 0

    for name, millis in made["oldest_waiting_ms"].items():
        oldest = value(
            result, "bullmq_queue_oldest_waiting_job_timestamp_seconds", prefix="bull", queue=name
        )
        assert oldest == millis / 1000


async def test_paused_queue_layout_per_major(bullmq: Bullmq, redis_server: RedisServer) -> None:
    """v5 (2.26.x) moves a paused queue's jobs to the paused list, v6 (3.x) keeps them waiting.

    Both are reported as that package's getJobCounts() reports them, with the queue paused.
    """
    base = f"pause{bullmq.layout}"
    made = bullmq.run("populate", redis_server.url, "bull", base)
    name = f"{base}-paused"
    with redis_server.client() as client:
        wait, paused = client.llen(f"bull:{name}:wait"), client.llen(f"bull:{name}:paused")
    if bullmq.layout == "v5":
        assert (wait, paused) == (0, 5)
    else:
        assert (wait, paused) == (5, 0)
    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": [name]}
    )
    assert result.success, result.error
    counts = made["counts"][name]
    assert jobs(result, name) == expected(counts)
    assert (counts["waiting"], counts["paused"]) == (wait, paused)
    assert value(result, "bullmq_queue_paused", prefix="bull", queue=name) == 1
    # Paused jobs still wait, in either list: the queue's age is reported for both layouts.
    oldest = value(
        result, "bullmq_queue_oldest_waiting_job_timestamp_seconds", prefix="bull", queue=name
    )
    assert oldest == made["oldest_waiting_ms"][name] / 1000


async def test_legacy_marker_is_not_counted_and_not_removed(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    """A ``0:<ts>`` delay marker left at the tail of wait by BullMQ < 5 is not a job.

    getCounts subtracts it (and RPOPs it); the exporter subtracts it and leaves it there.
    """
    base = f"marker{bullmq.layout}"
    made = bullmq.run("populate", redis_server.url, "bull", base)
    children, lonely = f"{base}-children", f"{base}-lonely"
    with redis_server.client() as client:
        client.rpush(f"bull:{children}:wait", "0:1700000000000")
        client.hset(f"bull:{lonely}:meta", "opts.maxLenEvents", 10000)
        client.rpush(f"bull:{lonely}:wait", "0:1700000000000")

    result = await run_check(
        {"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": [children, lonely]}
    )
    assert result.success, result.error
    with redis_server.client() as client:
        assert client.lindex(f"bull:{children}:wait", -1) == "0:1700000000000"
        assert client.llen(f"bull:{lonely}:wait") == 1
    # Before the oracle runs: its getCounts script RPOPs the marker, after which the job
    # before it is no longer next to the tail (a flaky 1 ms difference otherwise).
    child_age = made_child_age(redis_server, children)

    oracle = bullmq.run("counts", redis_server.url, "bull", children, lonely)["counts"]
    assert jobs(result, children) == expected(oracle[children])
    assert jobs(result, lonely) == expected(oracle[lonely])
    assert oracle[children]["waiting"] == made["counts"][children]["waiting"] == 2
    assert oracle[lonely]["waiting"] == 0
    # The marker is skipped when looking for the next job, too.
    assert values(result, "bullmq_queue_oldest_waiting_job_timestamp_seconds") == {
        (("prefix", "bull"), ("queue", children)): child_age,
    }


def made_child_age(server: RedisServer, queue: str) -> float:
    with server.client() as client:
        tail = client.lrange(f"bull:{queue}:wait", -2, -1)
        return int(client.hget(f"bull:{queue}:{tail[0]}", "timestamp")) / 1000


async def test_unchanged_queues_reuse_their_samples_changed_ones_are_rewritten(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    bullmq.run("add", url, "bull", "mail", "2")
    bullmq.run("add", url, "bull", "sms", "1")
    check = {"name": "q", "kind": "bullmq", "url": url, "queues": ["mail", "sms"]}

    def of(result: CheckResult, queue: str) -> list[Sample]:
        return [s for s in result.samples if ("queue", queue) in s.labels]

    async with running([check]) as runner:
        (first,) = await runner.scrape(30)
        (second,) = await runner.scrape(30)
        bullmq.run("add", url, "bull", "mail", "3")
        (third,) = await runner.scrape(30)
    for result in (first, second, third):
        assert result.success, result.error
    oracle = bullmq.run("counts", url, "bull", "mail", "sms")["counts"]
    # Nothing changed for sms: the very same sample objects come back.
    assert all(a is b for a, b in zip(of(second, "sms"), of(third, "sms"), strict=True))
    assert of(first, "sms") == of(third, "sms")
    # mail gained jobs: rewritten, and equal to the package's getJobCounts().
    assert not any(a is b for a, b in zip(of(second, "mail"), of(third, "mail"), strict=True))
    assert jobs(second, "mail")["waiting"] == 2
    assert jobs(third, "mail") == expected(oracle["mail"])
    assert jobs(third, "sms") == expected(oracle["sms"])


async def test_kept_samples_follow_the_sinks_base_labels(redis_server: RedisServer) -> None:
    spec = load_data(
        {"checks": [{"name": "q", "kind": "bullmq", "url": redis_server.url, "queues": ["a"]}]},
        "<test>", {},
    ).checks[0]  # fmt: skip
    probe = KINDS["bullmq"].probe(spec)
    try:
        sinks = [Sink("q", ()), Sink("q", ()), Sink("q", (("team", "ops"),))]
        for sink in sinks:
            await probe.collect(sink)
    finally:
        await probe.close()
    jobs_of = [[s for s in sink.samples if s.family.name == "bullmq_queue_jobs"] for sink in sinks]
    assert len(jobs_of[0]) == len(STATES)
    assert all(a is b for a, b in zip(jobs_of[0], jobs_of[1], strict=True))
    assert len(jobs_of[2]) == len(STATES)
    assert all(s.labels[:2] == (("check", "q"), ("team", "ops")) for s in jobs_of[2])
