"""Ways to read N queues in one round trip, measured side by side.

Counts only: the check's MULTI/EXEC of plain reads (``LLEN``/``ZCARD``/``LRANGE``/
``HGET``...) and a read-only server-side script (``EVAL_RO``, Redis >= 7: the server
refuses writes in it) that computes the same numbers and answers one flat array of
integers. The whole per-queue set (counts, existence, schedulers, active ids, metrics,
recent jobs: every read of the check's first round trip): the check's own
``_read_batches`` against one ``EVALSHA_RO`` per queue whose script makes the same reads
and answers them as one array (the same replies the check parses, so its parser runs on
them and the results are compared), interleaved.

    .venv/bin/python -m bench.bullmq_routes [--queues 1000] [--rounds 10]

Reported per route: wall time of the round trip including packing and parsing, Redis CPU
(INFO used_cpu delta). Exploratory, from before the check adopted a script: the check now
reads with its own script (exporter/checks/bullmq.py SCRIPT: flat integer rows, reads
skipped where keys are absent) and the MULTI/EXEC reads as the fallback; bench/scenarios/
bullmq.py measures both against Node BullMQ in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.bullmq_data import Plan, queue_names, write_queues
from bench.harness import redis_server
from exporter.checks import KINDS
from exporter.checks._redis_conn import Arg, CommandTemplate, Key, RawRedis, RedisConnOptions
from exporter.checks.bullmq import _after, _recent_bound
from exporter.config import load_data
from exporter.samples import Sink

COUNTS = (
    ("EXISTS", Key("meta"), Key("id")),
    ("HGET", Key("meta"), "paused"),
    ("LLEN", Key("wait")),
    ("LRANGE", Key("wait"), "-2", "-1"),
    ("LLEN", Key("paused")),
    ("LRANGE", Key("paused"), "-2", "-1"),
    ("LLEN", Key("active")),
    ("ZCARD", Key("delayed")),
    ("ZCARD", Key("prioritized")),
    ("ZCARD", Key("waiting-children")),
    ("ZCARD", Key("completed")),
    ("ZCARD", Key("failed")),
)
# Per queue base in ARGV: the same reads, the marker rule applied server-side; 12 integers
# per queue (exists, paused flag, waiting, paused, active, 5 sets, has-next, 0).
SCRIPT = """
local out = {}
for i = 1, #ARGV do
  local b = ARGV[i]
  local function count(list)
    local n = redis.call('LLEN', b .. list)
    local tail = redis.call('LRANGE', b .. list, -1, -1)[1]
    if tail and string.sub(tail, 1, 2) == '0:' then n = math.max(n - 1, 0) end
    return n
  end
  out[#out + 1] = redis.call('EXISTS', b .. 'meta', b .. 'id')
  out[#out + 1] = redis.call('HEXISTS', b .. 'meta', 'paused')
  out[#out + 1] = count('wait')
  out[#out + 1] = count('paused')
  out[#out + 1] = redis.call('LLEN', b .. 'active')
  for _, s in ipairs({'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'}) do
    out[#out + 1] = redis.call('ZCARD', b .. s)
  end
end
return out
"""


async def main(queues: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as server:
        client = redis.Redis(port=server.port)
        names = queue_names(queues)
        write_queues(client, "bull", names, Plan())
        raw = RawRedis(RedisConnOptions(server.url, None, None, None, False))
        template = CommandTemplate(COUNTS)
        bases = [f"bull:{name}:" for name in names]

        async def multi() -> int:
            parts = ["*1\r\n$5\r\nMULTI\r\n"]
            parts += [template.render(base) for base in bases]
            parts.append("*1\r\n$4\r\nEXEC\r\n")
            replies = await raw.execute_packed(
                "".join(parts).encode(), 2 + template.count * len(bases)
            )
            return len(replies[-1])

        async def script() -> int:
            (reply,) = await raw.execute([("EVAL_RO", SCRIPT, 0, *bases)])
            return len(reply)

        for label, action in (("MULTI/EXEC of plain reads", multi),
                              ("EVAL_RO script", script)):  # fmt: skip
            await action()
            walls, cpus = [], []
            for _ in range(rounds):
                info = client.info("cpu")
                before = info["used_cpu_user"] + info["used_cpu_sys"]
                started = time.perf_counter()
                await action()
                walls.append(time.perf_counter() - started)
                info = client.info("cpu")
                cpus.append(info["used_cpu_user"] + info["used_cpu_sys"] - before)
            print(f"{label:28s} {queues} queues: wall {statistics.median(walls) * 1000:6.1f} "
                  f"ms, Redis CPU {statistics.median(cpus) * 1000:6.1f} ms")  # fmt: skip
        await whole_set(server.url, client, names, rounds)
        await raw.close()
        client.close()


# The reads of the check's first round trip for a queue whose counters follow its events
# stream (the bench's data has no worker metrics), in the check's order, as one script per
# queue (ARGV: base, newest completed score already sampled, recent_jobs, the stream id to
# read from, the page size).
WHOLE = """
local b = ARGV[1]
return {
  redis.call('EXISTS', b .. 'meta', b .. 'id'),
  redis.call('ZRANGE', b .. 'repeat', 0, 0, 'WITHSCORES'),
  redis.call('LRANGE', b .. 'active', 0, 999),
  redis.call('HGET', b .. 'meta', 'paused'),
  redis.call('LLEN', b .. 'wait'),
  redis.call('LRANGE', b .. 'wait', -2, -1),
  redis.call('LLEN', b .. 'paused'),
  redis.call('LRANGE', b .. 'paused', -2, -1),
  redis.call('LLEN', b .. 'active'),
  redis.call('ZCARD', b .. 'delayed'),
  redis.call('ZCARD', b .. 'prioritized'),
  redis.call('ZCARD', b .. 'waiting-children'),
  redis.call('ZCARD', b .. 'completed'),
  redis.call('ZCARD', b .. 'failed'),
  redis.call('HGET', b .. 'metrics:completed', 'count'),
  redis.call('HGET', b .. 'metrics:failed', 'count'),
  redis.call('ZREVRANGEBYSCORE', b .. 'completed', '+inf', ARGV[2], 'WITHSCORES',
             'LIMIT', 0, ARGV[3]),
  redis.call('XRANGE', b .. 'events', ARGV[4], '+', 'COUNT', ARGV[5]),
}
"""


async def whole_set(url: str, client: redis.Redis, names: list[str], rounds: int) -> None:
    check = {"name": "b", "kind": "bullmq", "url": url, "max_queues": len(names)}
    spec = load_data({"checks": [check]}, "<bench>", {}).checks[0]
    probe: Any = KINDS["bullmq"].probe(spec)
    raw = RawRedis(RedisConnOptions(url, None, None, None, False))
    try:
        for _ in range(2):  # the streams positioned, counters on the events
            await probe.collect(Sink("b"))
        targets = [("bull", name) for name in names]
        assert all(probe._events_mode(t) == "follow" for t in targets), "not following"
        sha = client.script_load(WHOLE)
        template = CommandTemplate([("EVALSHA_RO", sha, "0", Key(""), Arg("since"),
                                     str(spec.options.recent_jobs), Arg("after"),
                                     str(probe._first_page))])  # fmt: skip

        async def multi() -> list[Any]:
            outcomes, _ = await probe._read_batches(targets, int(time.time() * 1000), False)
            return list(outcomes)

        async def script() -> list[Any]:
            states = [probe._states[t] for t in targets]
            text = "".join(template.render(f"{p}:{q}:", _recent_bound(state),
                                           _after(state.stream_id or "0-0"))
                           for (p, q), state in zip(targets, states, strict=True))  # fmt: skip
            replies = await raw.execute_packed(text.encode(), len(targets))
            return [probe._parse_queue(p, q, reply, "follow")
                    for (p, q), reply in zip(targets, replies, strict=True)]  # fmt: skip

        routes = {"whole set: MULTI/EXEC (the check)": multi,
                  "whole set: EVALSHA_RO per queue": script}  # fmt: skip
        mine, theirs = await multi(), await script()
        assert [vars(r) for r in mine] == [vars(r) for r in theirs], "the routes differ"
        walls: dict[str, list[float]] = {label: [] for label in routes}
        cpus: dict[str, list[float]] = {label: [] for label in routes}
        for _ in range(rounds):
            for label, action in routes.items():
                info = client.info("cpu")
                before = info["used_cpu_user"] + info["used_cpu_sys"]
                started = time.perf_counter()
                await action()
                walls[label].append(time.perf_counter() - started)
                info = client.info("cpu")
                cpus[label].append(info["used_cpu_user"] + info["used_cpu_sys"] - before)
        for label in routes:
            print(f"{label:36s} {len(names)} queues: wall "
                  f"{statistics.median(walls[label]) * 1000:6.1f} ms, Redis CPU "
                  f"{statistics.median(cpus[label]) * 1000:6.1f} ms")  # fmt: skip
    finally:
        await raw.close()
        await probe.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.rounds))
