"""BullMQ queues written straight into Redis in BullMQ 5's layout (bullmq 2.26.x on PyPI).

Creating 1,000 queues through the real package takes minutes; writing the same keys with
pipelines takes about a second. The layout mirrors what the real package writes (the bench
cross-checks this writer once per run with the ``make`` and ``counts`` commands of
tests/redis/bullmq_driver.py, the real package's driver the tests use too):

    <prefix>:<queue>:meta              hash  opts.maxLenEvents, paused=1 when paused
    <prefix>:<queue>:id                string last job id
    <prefix>:<queue>:<id>              hash  one per job (name, data, opts, timestamp, ...)
    <prefix>:<queue>:wait | paused     list  waiting jobs (paused holds them while paused)
    <prefix>:<queue>:active            list  + <id>:lock string per active job
    <prefix>:<queue>:delayed           zset  score (fire time ms) * 4096 + (id & 0xfff)
    <prefix>:<queue>:prioritized       zset  score priority * 2**32 + pc; pc string
    <prefix>:<queue>:waiting-children  zset  parent ids; <parent>:dependencies set
    <prefix>:<queue>:completed|failed  zset  score finishedOn
    <prefix>:<queue>:marker            zset  "0" at 0 while jobs wait
    <prefix>:<queue>:events            stream added/completed/failed events
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Plan:
    """Jobs per state in one queue; ``waiting`` includes one child per waiting parent."""

    waiting: int = 5
    active: int = 2
    delayed: int = 3
    prioritized: int = 2
    waiting_children: int = 1
    completed: int = 10
    failed: int = 3

    def counts(self, paused: bool) -> dict[str, int]:
        """What BullMQ's getJobCounts answers for a queue written with this plan."""
        return {
            "waiting": 0 if paused else self.waiting,
            "paused": self.waiting if paused else 0,
            "active": self.active,
            "delayed": self.delayed,
            "prioritized": self.prioritized,
            "waiting-children": self.waiting_children,
            "completed": self.completed,
            "failed": self.failed,
        }

    def as_json(self, paused: bool) -> str:
        """The plan in the terms of tests/redis/bullmq_driver.py's ``make``."""
        return json.dumps(self.counts(paused))


def queue_names(count: int) -> list[str]:
    return [f"queue-{i:04d}" for i in range(count)]


def is_paused(index: int) -> bool:
    """Every tenth queue is paused, so the paused layout is part of every size."""
    return index % 10 == 9


def write_queues(client: redis.Redis, prefix: str, names: list[str], plan: Plan) -> None:
    """Write every queue, one pipeline each."""
    now = int(time.time() * 1000) - HOUR_MS  # jobs created an hour ago
    for index, name in enumerate(names):
        pipe = client.pipeline(transaction=False)
        _queue(pipe, f"{prefix}:{name}:", plan, is_paused(index), now)
        pipe.execute()


def _job(
    pipe: redis.client.Pipeline, base: str, job_id: int | str, stamp: int, **extra: object
) -> None:
    fields: dict[FieldT, EncodableT] = {
        "name": "work",
        "data": json.dumps({"n": job_id}),
        "opts": json.dumps({"attempts": 0, "delay": extra.get("delay", 0)}),
        "timestamp": stamp,
        "delay": 0,
        "priority": 0,
    }
    fields.update({k: v if isinstance(v, int | str) else json.dumps(v) for k, v in extra.items()})
    pipe.hset(f"{base}{job_id}", mapping=fields)
    pipe.xadd(f"{base}events", {"event": "added", "jobId": str(job_id), "name": "work"})


def _queue(pipe: redis.client.Pipeline, base: str, plan: Plan, paused: bool, now: int) -> None:
    meta: dict[FieldT, EncodableT] = {"opts.maxLenEvents": 10000}
    if paused:
        meta["paused"] = 1
    pipe.hset(f"{base}meta", mapping=meta)
    ids = itertools.count(1)  # job ids in the order BullMQ would have handed them out
    _finished_jobs(pipe, base, plan, ids, now)
    _held_jobs(pipe, base, plan, ids, now)
    _waiting_jobs(pipe, base, plan, ids, paused, now)
    pipe.set(f"{base}id", next(ids) - 1)


def _finished_jobs(
    pipe: redis.client.Pipeline, base: str, plan: Plan, ids: Iterator[int], now: int
) -> None:
    """Completed and failed jobs, with their events."""
    for _ in range(plan.completed):
        jid = next(ids)
        _job(pipe, base, jid, now, processedOn=now + 5, finishedOn=now + 9, atm=1, ats=1,
             returnvalue=json.dumps({"ok": True}))  # fmt: skip
        pipe.zadd(f"{base}completed", {str(jid): now + 9})
        pipe.xadd(f"{base}events", {"event": "completed", "jobId": str(jid), "prev": "active"})
    for _ in range(plan.failed):
        jid = next(ids)
        _job(pipe, base, jid, now, processedOn=now + 5, finishedOn=now + 9, atm=1, ats=1,
             failedReason=json.dumps("boom"))  # fmt: skip
        pipe.zadd(f"{base}failed", {str(jid): now + 9})
        pipe.xadd(f"{base}events", {"event": "failed", "jobId": str(jid), "prev": "active"})


def _held_jobs(
    pipe: redis.client.Pipeline, base: str, plan: Plan, ids: Iterator[int], now: int
) -> None:
    """Active (locked by a worker), delayed and prioritized jobs."""
    for _ in range(plan.active):
        jid = next(ids)
        _job(pipe, base, jid, now, processedOn=now + 5, ats=1)
        pipe.lpush(f"{base}active", str(jid))
        pipe.set(f"{base}{jid}:lock", f"token-{jid}", px=HOUR_MS)
    for _ in range(plan.delayed):
        jid = next(ids)
        _job(pipe, base, jid, now, delay=2 * HOUR_MS)
        pipe.zadd(f"{base}delayed", {str(jid): (now + 2 * HOUR_MS) * 4096 + (jid & 0xFFF)})
    for n in range(plan.prioritized):
        jid = next(ids)
        _job(pipe, base, jid, now, priority=1 + n)
        pipe.zadd(f"{base}prioritized", {str(jid): (1 + n) * 2**32 + n + 1})
    if plan.prioritized:
        pipe.set(f"{base}pc", plan.prioritized)


def _waiting_jobs(
    pipe: redis.client.Pipeline, base: str, plan: Plan, ids: Iterator[int], paused: bool, now: int
) -> None:
    """Waiting jobs (in the paused list when the queue is paused), the first
    ``plan.waiting_children`` of them children of a parent waiting for them."""
    waiting_list = f"{base}paused" if paused else f"{base}wait"
    for n in range(plan.waiting):
        jid = next(ids)
        if n < plan.waiting_children:
            # A parent waiting for this child: a uuid-like id in BullMQ, any id works.
            parent = f"parent-{jid}"
            _job(pipe, base, parent, now)
            pipe.zadd(f"{base}waiting-children", {parent: now})
            pipe.sadd(f"{base}{parent}:dependencies", f"{base}{jid}")
            _job(pipe, base, jid, now, parentKey=f"{base}{parent}",
                 parent={"id": parent, "queueKey": base.rstrip(":")})  # fmt: skip
        else:
            _job(pipe, base, jid, now)
        pipe.lpush(waiting_list, str(jid))  # LPUSH: the oldest job is at the tail
    if plan.waiting and not paused:
        pipe.zadd(f"{base}marker", {"0": 0})


def add_waiting(client: redis.Redis, prefix: str, names: list[str], tag: str) -> None:
    """One more waiting job (id ``tag``) in each named queue, written as ``Queue.add``
    writes one: the job hash, its ``added`` event, the id pushed on the wait list (the
    paused list of a paused queue)."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for name in names:
        base = f"{prefix}:{name}:"
        _job(pipe, base, tag, now)
        paused = is_paused(int(name.rsplit("-", 1)[1]))
        pipe.lpush(f"{base}paused" if paused else f"{base}wait", tag)
    pipe.execute()
