"""Real BullMQ jobs for the fire drills; runs inside a side venv with the ``bullmq`` package.

Not a test module: the drills run it as a subprocess with .cache/bullmq-v6/bin/python
(scripts/test-setup.d/bullmq.sh creates that venv). Prints one JSON line when done.

    bullmq_jobs.py fail URL PREFIX QUEUE N      N jobs whose worker raises (attempts: 1)
    bullmq_jobs.py complete URL PREFIX QUEUE N  N jobs that succeed (the queue exists
                                                and has history before the drill starts)
    bullmq_jobs.py recover URL PREFIX QUEUE N   the connector is fixed: retry the failed
                                                jobs with a worker that succeeds
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bullmq import Queue, Worker


async def run(action: str, url: str, prefix: str, name: str, count: int) -> dict[str, Any]:
    opts = {"connection": url, "prefix": prefix}
    queue = Queue(name, opts)
    done = {"completed": 0, "failed": 0}

    async def process(job: Any, token: Any) -> Any:
        if action == "fail":
            raise RuntimeError("upstream source unreachable (drill)")
        return {"records": 1}

    try:
        if action in ("fail", "complete"):
            for i in range(count):
                await queue.add("connector-run", {"run": i}, {"attempts": 1})
        worker = Worker(name, process, opts)
        worker.on("completed", lambda *_: done.__setitem__("completed", done["completed"] + 1))
        worker.on("failed", lambda *_: done.__setitem__("failed", done["failed"] + 1))
        try:
            if action == "recover":
                await queue.retryJobs({"state": "failed"})
            want = "failed" if action == "fail" else "completed"
            deadline = time.monotonic() + 60
            while done[want] < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out: {done} of {count} jobs")
                await asyncio.sleep(0.05)
        finally:
            await worker.close()
        return {**done, "counts": await queue.getJobCounts("failed", "completed", "waiting")}
    finally:
        await queue.close()


if __name__ == "__main__":
    action, url, prefix, name, count = sys.argv[1:6]
    print(json.dumps(asyncio.run(run(action, url, prefix, name, int(count)))))
