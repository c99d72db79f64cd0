"""Drives the official ``bullmq`` PyPI package; run inside a side venv (.cache/bullmq-v5|v6).

Not a test module: tests/redis/conftest.py, the fire drills (tests/e2e/test_drills.py)
and the bench's cross-check (bench/scenarios/bullmq.py) run it as a subprocess with the
venv's Python, so that two
majors of the package (2.26.x writes BullMQ's v5 layout, 3.x the v6 layout) can be
exercised against the same exporter. Every command prints one JSON line last. Its STATES
are the reference's own list, deliberately not imported from the exporter (which this
venv does not have).

    bullmq_driver.py populate URL PREFIX NAME    queues NAME-all, NAME-children, NAME-paused
    bullmq_driver.py counts URL PREFIX QUEUE...  getJobCounts() of every state per queue
    bullmq_driver.py finish URL PREFIX QUEUE OK FAIL [metrics] [keep]
                                                 OK jobs completed and FAIL failed, all
                                                 removed on finish (removeOnComplete/Fail)
                                                 unless keep (history, retryable); prints
                                                 the queue's getJobCounts() after
    bullmq_driver.py retry URL PREFIX QUEUE N    retryJobs() of the failed jobs, and a
                                                 worker that completes N of them
    bullmq_driver.py hold URL PREFIX QUEUE N [LOCK_MS]
                                                 take N jobs and never finish (prints
                                                 "holding" once they are active; the test
                                                 kills it); LOCK_MS: lockDuration
    bullmq_driver.py add URL PREFIX QUEUE N      N jobs; prints their ids
    bullmq_driver.py serve URL PREFIX QUEUE      a worker until stdin closes; prints
                                                 getWorkers() count once it is running
    bullmq_driver.py workers URL PREFIX QUEUE    Queue.getWorkers() count
    bullmq_driver.py make URL PREFIX QUEUE PLAN_JSON
                                                 jobs in every state as the plan counts them
                                                 ({"waiting": 5, "active": 2, ...}; the
                                                 bench writes the same plan directly)
    bullmq_driver.py schedule URL PREFIX QUEUE ID EVERY_MS
                                                 upsertJobScheduler; its getJobSchedulers()
    bullmq_driver.py scheduled URL PREFIX QUEUE ID EVERY_MS
                                                 a job scheduler and a worker running it,
                                                 until stdin closes; one JSON line per
                                                 stdin line: "runs" once it ran twice,
                                                 "remove" its pending run removed by hand
                                                 right after a run (the package refuses to
                                                 remove a scheduler's job), "reschedule"
                                                 upserted again
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
import time
from typing import Any

from bullmq import FlowProducer, Queue, Worker

STATES = (
    "active",
    "completed",
    "delayed",
    "failed",
    "paused",
    "prioritized",
    "waiting",
    "waiting-children",
)
HOUR_MS = 3_600_000


def opts(url: str, prefix: str) -> dict[str, Any]:
    return {"connection": url, "prefix": prefix}


async def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def counts(url: str, prefix: str, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        queue = Queue(name, opts(url, prefix))
        try:
            out[name] = await queue.getJobCounts(*STATES)
            out[name]["is_paused"] = bool(await queue.isPaused())
        finally:
            await queue.close()
    return out


async def run_worker(
    url: str,
    prefix: str,
    name: str,
    ok: int,
    fail: int,
    extra: dict[str, Any],
    *,
    fixed: bool = False,
) -> None:
    """Process until ``ok`` jobs completed and ``fail`` failed, then close the worker.

    Jobs named "bad" fail, unless the worker is ``fixed`` (a retry after the fault)."""
    done = {"completed": 0, "failed": 0}

    async def process(job: Any, token: Any) -> Any:
        if job.name == "bad" and not fixed:
            raise RuntimeError("planned failure")
        return {"ok": True}

    worker = Worker(name, process, {**opts(url, prefix), **extra})
    worker.on("completed", lambda *a: done.__setitem__("completed", done["completed"] + 1))
    worker.on("failed", lambda *a: done.__setitem__("failed", done["failed"] + 1))

    async def finished() -> bool:
        return done["completed"] >= ok and done["failed"] >= fail

    try:
        await wait_for(finished, f"{ok} completed and {fail} failed jobs in {name}")
    finally:
        # Every job is finished: force skips the idle blocking fetch (drainDelay, 5 s).
        await worker.close(force=True)


async def populate(url: str, prefix: str, base: str) -> dict[str, Any]:
    all_q, children_q, paused_q = f"{base}-all", f"{base}-children", f"{base}-paused"
    queue = Queue(all_q, opts(url, prefix))
    paused = Queue(paused_q, opts(url, prefix))
    # Both majors accept (connection, options); 3.x also takes one mapping.
    flows = FlowProducer(url, {"prefix": prefix})
    try:
        # completed and failed: a worker runs 3 good and 2 bad jobs, then stops.
        for i in range(3):
            await queue.add("good", {"i": i})
        for i in range(2):
            await queue.add("bad", {"i": i})
        await run_worker(url, prefix, all_q, 3, 2, {})

        # active: a worker in another process takes 2 jobs and is killed holding them;
        # with no worker left, nothing moves them back (no stalled-jobs check runs).
        for i in range(2):
            await queue.add("hold", {"i": i})
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "hold",
            url,
            prefix,
            all_q,
            "2",
            stdout=asyncio.subprocess.DEVNULL,
        )

        async def holding() -> bool:
            return bool((await queue.getJobCounts("active"))["active"] >= 2)

        try:
            await wait_for(holding, "2 active jobs")
        finally:
            holder.kill()
            await holder.wait()

        # waiting, delayed, prioritized, waiting-children (children wait in their queue).
        first = await queue.add("wait", {"i": 0})
        for i in range(1, 4):
            await queue.add("wait", {"i": i})
        for i in range(2):
            await queue.add("later", {"i": i}, {"delay": HOUR_MS})
        for i in range(3):
            await queue.add("urgent", {"i": i}, {"priority": i + 1})
        await flows.add(
            {
                "name": "parent",
                "queueName": all_q,
                "data": {},
                "children": [
                    {"name": "child", "queueName": children_q, "data": {"i": i}} for i in range(2)
                ],
            }
        )

        # paused: 3 jobs, pause, 2 more and one prioritized.
        paused_first = await paused.add("wait", {"i": 0})
        for i in range(1, 3):
            await paused.add("wait", {"i": i})
        await paused.pause()
        for i in range(3, 5):
            await paused.add("wait", {"i": i})
        await paused.add("urgent", {}, {"priority": 1})
    finally:
        await flows.close()
        await queue.close()
        await paused.close()
    result = await counts(url, prefix, [all_q, children_q, paused_q])
    return {
        "counts": result,
        "oldest_waiting_ms": {all_q: first.timestamp, paused_q: paused_first.timestamp},
    }


async def finish(
    url: str, prefix: str, name: str, ok: int, fail: int, metrics: bool, keep: bool
) -> dict[str, Any]:
    queue = Queue(name, opts(url, prefix))
    try:
        removal = {"removeOnComplete": not keep, "removeOnFail": not keep}
        for i in range(ok):
            await queue.add("good", {"i": i}, removal)
        for i in range(fail):
            await queue.add("bad", {"i": i}, removal)
    finally:
        await queue.close()
    extra = {"metrics": {"maxDataPoints": 60}} if metrics else {}
    await run_worker(url, prefix, name, ok, fail, extra)
    after: dict[str, Any] = (await counts(url, prefix, [name]))[name]
    return after


async def retry(url: str, prefix: str, name: str, n: int) -> dict[str, Any]:
    queue = Queue(name, opts(url, prefix))
    try:
        await queue.retryJobs({"state": "failed"})
    finally:
        await queue.close()
    await run_worker(url, prefix, name, n, 0, {}, fixed=True)
    after: dict[str, Any] = (await counts(url, prefix, [name]))[name]
    return after


async def hold(url: str, prefix: str, name: str, n: int, lock_ms: int | None) -> None:
    forever = asyncio.Event()
    taken: list[Any] = []

    async def process(job: Any, token: Any) -> Any:
        taken.append(job.id)
        if len(taken) == n:
            print(json.dumps({"holding": taken}), flush=True)
        await forever.wait()

    extra = {"lockDuration": lock_ms, "lockRenewTime": lock_ms // 4} if lock_ms else {}
    worker = Worker(name, process, {**opts(url, prefix), "concurrency": n, **extra})
    await forever.wait()  # killed by the parent
    await worker.close()


async def add(url: str, prefix: str, name: str, n: int) -> list[str]:
    queue = Queue(name, opts(url, prefix))
    try:
        return [str((await queue.add("hold", {"i": i})).id) for i in range(n)]
    finally:
        await queue.close()


async def workers_count(url: str, prefix: str, name: str) -> int:
    queue = Queue(name, opts(url, prefix))
    try:
        return int(await queue.get_workers_count())
    finally:
        await queue.close()


async def serve(url: str, prefix: str, name: str) -> None:
    """A worker until stdin reaches EOF; prints getWorkers()' count once it runs."""

    async def process(job: Any, token: Any) -> Any:
        return None

    worker = Worker(name, process, opts(url, prefix))
    try:

        async def named() -> bool:
            return await workers_count(url, prefix, name) > 0

        await wait_for(named, f"worker of {name} listed by getWorkers()")
        count = await workers_count(url, prefix, name)
        print(json.dumps({"workers": count}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await worker.close(force=True)


async def make(url: str, prefix: str, name: str, plan: dict[str, int]) -> None:
    """One queue with ``plan[state]`` jobs per state, made by the package's own calls."""
    queue = Queue(name, opts(url, prefix))
    flows = FlowProducer(url, {"prefix": prefix})
    worker = Worker(name, _never, {**opts(url, prefix), "autorun": False})
    try:
        # Jobs a worker finishes: completed, failed, then the ones left active.
        finished = plan["completed"] + plan["failed"] + plan["active"]
        for i in range(finished):
            await queue.add("work", {"n": i}, {"removeOnComplete": False, "removeOnFail": False})
        for i in range(finished):
            job = await worker.getNextJob(f"token-{i}")
            if i < plan["completed"]:
                await job.moveToCompleted({"ok": True}, job.token)
            elif i < plan["completed"] + plan["failed"]:
                await job.moveToFailed(RuntimeError("boom"), job.token)
        for i in range(plan["delayed"]):
            await queue.add("later", {"n": i}, {"delay": HOUR_MS})
        for i in range(plan["prioritized"]):
            await queue.add("urgent", {"n": i}, {"priority": 1 + i})
        for i in range(plan["waiting-children"]):
            # The parent waits for one child in the same queue's wait list (counted there).
            await flows.add(
                {
                    "name": "parent",
                    "queueName": name,
                    "data": {"n": i},
                    "children": [{"name": "child", "queueName": name, "data": {}}],
                }
            )
        for i in range(plan["waiting"] + plan["paused"] - plan["waiting-children"]):
            await queue.add("work", {"n": i})
        if plan["paused"]:
            await queue.pause()
    finally:
        await worker.close(force=True)
        await flows.close()
        await queue.close()


async def _never(job: object, token: str) -> None:
    raise AssertionError("autorun is off: nothing processes jobs here")


async def schedule(url: str, prefix: str, name: str, scheduler: str, every: int) -> Any:
    queue = Queue(name, opts(url, prefix))
    try:
        await queue.upsertJobScheduler(scheduler, {"every": every})
        return await queue.getJobSchedulers()
    finally:
        await queue.close()


# A scheduler's pending run (the package names it repeat:<scheduler>:<due ms>) removed the
# way redis-cli would, in one step: the scheduler entry stays, nothing advances it again.
REMOVE_PENDING = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
local id = 'repeat:' .. ARGV[1] .. ':' .. due
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[3] .. id)
return {id, due}
"""


async def scheduled(url: str, prefix: str, name: str, scheduler: str, every: int) -> None:
    """A job scheduler and the worker running it, driven line by line from stdin."""
    queue = Queue(name, opts(url, prefix))
    runs = asyncio.Queue[int]()

    async def process(job: Any, token: Any) -> Any:
        return {"polled": 1}

    loop = asyncio.get_running_loop()
    worker = Worker(name, process, opts(url, prefix))
    worker.on("completed", lambda *_: runs.put_nowait(1))
    try:
        await queue.upsertJobScheduler(scheduler, {"every": every})
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            answer: dict[str, Any]
            if line == "runs":
                for _ in range(2):
                    await asyncio.wait_for(runs.get(), 60)
                answer = {"runs": 2}
            elif line == "remove":
                while not runs.empty():
                    runs.get_nowait()
                await asyncio.wait_for(runs.get(), 60)  # the next run is a period away
                keys = [f"{prefix}:{name}:{k}" for k in ("repeat", "delayed", "")]
                job, due = await queue.client.eval(REMOVE_PENDING, 3, *keys, scheduler)
                text = job.decode() if isinstance(job, bytes) else str(job)
                answer = {"removed": text, "due": int(due)}
            elif line == "reschedule":
                await queue.upsertJobScheduler(scheduler, {"every": every})
                answer = {"schedulers": len(await queue.getJobSchedulers())}
            else:
                answer = {"error": f"unknown command {line}"}
            print(json.dumps(answer), flush=True)
    finally:
        await worker.close(force=True)
        await queue.close()


async def _result(command: str, url: str, prefix: str, rest: list[str]) -> dict[str, Any]:
    """Run a command that ends with one result; its fields for the JSON line."""
    if command == "populate":
        return await populate(url, prefix, rest[0])
    if command == "counts":
        return {"counts": await counts(url, prefix, rest)}
    if command == "finish":
        ok, fail, flags = int(rest[1]), int(rest[2]), rest[3:]
        keep, metrics = "keep" in flags, "metrics" in flags
        return {"counts": await finish(url, prefix, rest[0], ok, fail, metrics, keep)}
    if command == "retry":
        return {"counts": await retry(url, prefix, rest[0], int(rest[1]))}
    if command == "add":
        return {"ids": await add(url, prefix, rest[0], int(rest[1]))}
    if command == "workers":
        return {"workers": await workers_count(url, prefix, rest[0])}
    if command == "make":
        await make(url, prefix, rest[0], json.loads(rest[1]))
        return {}
    if command == "schedule":
        return {"schedulers": await schedule(url, prefix, rest[0], rest[1], int(rest[2]))}
    raise SystemExit(f"unknown command {command}")


def main(argv: list[str]) -> None:
    command, url, prefix, *rest = argv
    version = importlib.metadata.version("bullmq")
    # The long-running ones print their own lines and are stopped by the caller.
    if command == "hold":
        lock_ms = int(rest[2]) if len(rest) > 2 else None
        asyncio.run(hold(url, prefix, rest[0], int(rest[1]), lock_ms))
        return
    if command == "serve":
        asyncio.run(serve(url, prefix, rest[0]))
        return
    if command == "scheduled":
        asyncio.run(scheduled(url, prefix, rest[0], rest[1], int(rest[2])))
        return
    result = asyncio.run(_result(command, url, prefix, rest))
    print(json.dumps({"bullmq": version, "pid": os.getpid(), **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
