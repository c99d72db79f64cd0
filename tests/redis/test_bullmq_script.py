"""The two read routes of the bullmq kind give the same numbers, the package's own.

The read-only script (``EVALSHA_RO``, Redis >= 7) and the pipelined reads (its fallback:
``server_script: false``, or a server or ACL that refuses the script) read queues the
official bullmq package made, with every signal present (a stalled job, an overdue
scheduler, worker metrics, a legacy delay marker, a key of the wrong type); both must
export the very same samples, scrape after scrape, equal to getJobCounts().
"""

from __future__ import annotations

import redis

from exporter.checks import KINDS
from exporter.checks.bullmq import STATES, BullmqProbe
from exporter.config import load_data
from exporter.samples import Sample, Sink
from tests.redis.conftest import Bullmq
from tests.servers import RedisServer

Exported = set[tuple[str, tuple[tuple[str, str], ...], float]]


def probe(check: dict[str, object]) -> BullmqProbe:
    spec = load_data({"checks": [{"name": "q", "kind": "bullmq", **check}]}, "<test>", {})
    made = KINDS["bullmq"].probe(spec.checks[0])
    assert isinstance(made, BullmqProbe)
    return made


def calls(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """(calls, rejected calls) per command since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(row["calls"]), int(row.get("rejected_calls", 0)))
        for name, row in stats.items()
    }


async def scrape(
    check: BullmqProbe, client: redis.Redis
) -> tuple[Sink, dict[str, tuple[int, int]]]:
    client.config_resetstat()
    sink = Sink("q")
    await check.collect(sink)
    return sink, calls(client)


def exported(sink: Sink) -> Exported:
    return {(s.family.name, s.labels, s.value) for s in sink.samples}


def jobs(sink: Sink, queue: str) -> dict[str, float]:
    found = {
        dict(s.labels)["state"]: s.value
        for s in sink.samples
        if s.family.name == "bullmq_queue_jobs" and ("queue", queue) in s.labels
    }
    return {state: found[state] for state in STATES}


def one(sink: Sink, family: str, queue: str) -> float:
    (found,) = [
        s.value for s in sink.samples if s.family.name == family and ("queue", queue) in s.labels
    ]
    return found


async def test_script_and_pipelined_reads_export_the_same_samples_as_get_job_counts(
    bullmq: Bullmq, redis_server: RedisServer
) -> None:
    url = redis_server.url
    base = f"route{bullmq.layout}"
    every, children, paused = f"{base}-all", f"{base}-children", f"{base}-paused"
    bullmq.run("populate", url, "bull", base)
    bullmq.run("schedule", url, "bull", every, "poll", "3600000")
    with redis_server.client() as client:
        client.rpush(f"bull:{children}:wait", "0:1700000000000")  # legacy delay marker
        client.hset(f"bull:{children}:metrics:completed", "count", 7)
        # An old-layout repeatable job whose next run is long past: overdue.
        client.zadd(f"bull:{paused}:repeat", {"nightly::::0 3 * * *": 1_700_000_000_000})
        # A worker died holding a job: its lock is gone while the job stays active.
        held = client.lrange(f"bull:{every}:active", 0, -1)
        client.delete(f"bull:{every}:{held[0]}:lock")
        client.hset("bull:broken:meta", "opts.maxLenEvents", 10)
        client.set("bull:broken:active", "not a list")
        client.acl_setuser(
            "monitor", enabled=True, passwords=["+watch-only"], keys=["~*"],
            commands=["+@read", "+multi", "+exec", "+ping", "+client|list"],
        )  # fmt: skip

    script = probe({"url": url})
    pipelined = probe({"url": url, "server_script": False})
    refused = probe({"url": url, "username": "monitor", "password": "watch-only"})
    stats = redis.Redis.from_url(url, decode_responses=True)
    try:
        for step in range(3):
            if step == 2:
                # Jobs finish between scrapes: the counters follow the events stream.
                bullmq.run("finish", url, "bull", children, "2", "1")
            by_script, script_calls = await scrape(script, stats)
            by_pipeline, pipeline_calls = await scrape(pipelined, stats)
            by_fallback, fallback_calls = await scrape(refused, stats)
            assert exported(by_script) == exported(by_pipeline), step
            assert exported(by_fallback) == exported(by_pipeline), step
            # Each route is the one that ran. The script: one call for all queues (sent
            # whole once, when the server did not know it yet); MULTIs only for what the
            # pipelined reads do better (the broken queue read again, which names its
            # key; the times of newly completed jobs). The pipelined reads: MULTI and no
            # script. The refused script: tried once, then left alone.
            assert script_calls["evalsha_ro"][0] == 1
            assert script_calls.get("eval_ro", (0, 0))[0] == (1 if step == 0 else 0)
            assert script_calls["multi"][0] <= 2
            assert "multi" in pipeline_calls
            assert "evalsha_ro" not in pipeline_calls
            assert "eval_ro" not in pipeline_calls
            assert "multi" in fallback_calls
            attempts = fallback_calls.get("evalsha_ro", (0, 0))
            assert attempts == ((0, 1) if step == 0 else (0, 0)), (step, attempts)
    finally:
        stats.close()
        for check in (script, pipelined, refused):
            await check.close()

    assert one(by_script, "bullmq_queue_stalled_jobs", every) == 1
    assert one(by_script, "bullmq_queue_schedulers", every) == 1
    assert one(by_script, "bullmq_queue_schedulers_overdue", every) == 0
    assert one(by_script, "bullmq_queue_schedulers_overdue", paused) == 1
    assert one(by_script, "bullmq_jobs_completed_total", children) == 7  # the metrics hash
    assert one(by_script, "bullmq_jobs_failed_total", children) == 1  # from the stream
    assert one(by_script, "bullmq_queue_recent_jobs", every) == 3
    skipped = [s.value for s in by_script.samples if s.family.name == "bullmq_queues_skipped"]
    assert skipped == [1]  # bull:broken, in both routes (samples equal above)
    oracle = bullmq.run("counts", url, "bull", every, children, paused)["counts"]
    for name in (every, children, paused):
        assert jobs(by_script, name) == {s: float(oracle[name][s]) for s in STATES}, name


async def test_kept_rows_still_show_every_change(bullmq: Bullmq, redis_server: RedisServer) -> None:
    """A queue whose script row is unchanged keeps its samples; any change shows."""
    url = redis_server.url
    names = ["counts", "stalled", "workers", "finished", "idle"]
    for name in names:
        if name != "finished":  # listed before it exists; its worker must find no other job
            bullmq.run("add", url, "bull", name, "2")
    (held,) = bullmq.run("add", url, "bull", "stalled", "1")["ids"]
    check = probe({"url": url, "queues": names})
    worker = redis.Redis.from_url(url)
    try:
        first, second = Sink("q"), Sink("q")
        await check.collect(first)
        await check.collect(second)
        with redis_server.client() as client:
            # As a worker holding the job would leave it: active, its lock gone.
            client.lrem("bull:stalled:wait", 1, held)
            client.lpush("bull:stalled:active", held)
        bullmq.run("add", url, "bull", "counts", "1")
        worker.client_setname("bull:workers")  # how the Python package names its worker
        bullmq.run("finish", url, "bull", "finished", "1", "0")
        third = Sink("q")
        await check.collect(third)
    finally:
        worker.close()
        await check.close()

    def of(sink: Sink, queue: str) -> list[Sample]:
        return [s for s in sink.samples if ("queue", queue) in s.labels]

    assert all(a is b for a, b in zip(of(first, "idle"), of(second, "idle"), strict=True))
    assert all(a is b for a, b in zip(of(second, "idle"), of(third, "idle"), strict=True))
    assert jobs(second, "counts")["waiting"] == 2
    assert jobs(third, "counts")["waiting"] == 3
    assert one(second, "bullmq_queue_stalled_jobs", "stalled") == 0
    assert one(third, "bullmq_queue_stalled_jobs", "stalled") == 1
    assert one(second, "bullmq_queue_workers", "workers") == 0
    assert one(third, "bullmq_queue_workers", "workers") == 1
    assert jobs(third, "workers") == jobs(second, "workers")
    assert one(second, "bullmq_jobs_completed_total", "finished") == 0
    assert one(second, "bullmq_queue_exists", "finished") == 0
    assert one(third, "bullmq_jobs_completed_total", "finished") == 1
