"""Runs inside a side venv with the official ``bullmq`` package (not the project's venv).

``make URL QUEUE PLAN_JSON``: create a queue in every state with the real package.
``counts URL QUEUE...``: print ``Queue.getJobCounts()`` of each queue as JSON.
The bench uses it once per run to cross-check its direct writer (bench/bullmq_data.py).
"""

from __future__ import annotations

import asyncio
import json
import sys

from bullmq import FlowProducer, Queue, Worker

# Every state getJobCounts knows; its default list leaves "prioritized" out.
STATES = (
    "waiting", "paused", "active", "delayed", "prioritized", "waiting-children",
    "completed", "failed",
)  # fmt: skip


async def make(url: str, name: str, plan: dict[str, int]) -> None:
    queue = Queue(name, {"connection": url})
    flows = FlowProducer(url)
    worker = Worker(name, _never, {"connection": url, "autorun": False})
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
            await queue.add("later", {"n": i}, {"delay": 3_600_000})
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


async def counts(url: str, names: list[str]) -> None:
    out = {}
    for name in names:
        queue = Queue(name, {"connection": url})
        try:
            out[name] = await queue.getJobCounts(*STATES)
            out[name]["is_paused"] = bool(await queue.isPaused())
        finally:
            await queue.close()
    print(json.dumps(out))


def main() -> None:
    command, url, *rest = sys.argv[1:]
    if command == "make":
        asyncio.run(make(url, rest[0], json.loads(rest[1])))
    else:
        asyncio.run(counts(url, rest))


if __name__ == "__main__":
    main()
