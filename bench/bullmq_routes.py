"""Two ways to read the counts of N queues in one round trip, measured side by side:
the check's MULTI/EXEC of plain reads (``LLEN``/``ZCARD``/``LRANGE``/``HGET``...) and a
read-only server-side script (``EVAL_RO``, Redis >= 7: the server refuses writes in it)
that computes the same numbers and answers one flat array of integers.

    .venv/bin/python -m bench.bullmq_routes [--queues 1000] [--rounds 10]

Reported per route: wall time of the round trip including packing and parsing, Redis CPU
(INFO used_cpu delta) and reply size. Exploratory: the check uses the first route.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis

from bench.bullmq_data import Plan, queue_names, write_queues
from bench.harness import redis_server
from exporter.checks._redis_conn import CommandTemplate, Key, RawRedis, RedisConnOptions

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
        await raw.close()
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.queues, args.rounds))
