"""``bullmq``: BullMQ queue state read straight from Redis, counted as getJobCounts() counts.

Per queue ``<prefix>:<queue>``, BullMQ keeps ``wait``, ``paused`` and ``active`` lists,
``delayed``, ``prioritized``, ``waiting-children``, ``completed`` and ``failed`` sorted sets,
a ``meta`` hash (``paused`` field), an ``events`` stream and, when workers record metrics,
``metrics:completed`` / ``metrics:failed`` hashes. Its getCounts script answers LLEN for
the lists (less one for a legacy ``0:`` delay marker at the tail of ``wait``/``paused``,
which it also RPOPs) and ZCARD for the sets. This module reads the same keys with plain
read commands only, so the numbers are the script's without its side effect: on Redis >= 7
with one read-only server-side script per batch of queues (``EVALSHA_RO``, which the server
refuses to let write; it answers a compact row per queue), else (older servers, an ACL
without the scripting commands, ``server_script: false``) with the same reads pipelined in
one MULTI/EXEC per batch. Either way one round trip for the reads (the pipelined route
adds one or two for job timestamps and locks), consistent within a batch. With the
script, Redis' client tracking (``track_changes``, exporter/checks/_redis_tracking.py;
two PINGs before the reads) tells which queues changed since they were read: the others
keep their samples unread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.alerting import DefaultAlert, Panel, TestInput
from exporter.checks._redis_conn import (
    Arg,
    CommandTemplate,
    Key,
    ProtocolViolation,
    RawRedis,
    RedisConnOptions,
    ReplyLimitExceeded,
    first_line,
    pack_text,
    parse_conn,
    reason,
    transient,
)
from exporter.checks._redis_tracking import ChangeTracking
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.fields import Reader, describe
from exporter.logs import event
from exporter.samples import Family, Sample, Sink

STATES = (
    "waiting",
    "paused",
    "active",
    "delayed",
    "prioritized",
    "waiting-children",
    "completed",
    "failed",
)
COUNTER_SOURCES = ("auto", "metrics", "events", "off")
DEFAULT_MAX_QUEUES = 1000
DEFAULT_DISCOVERY_INTERVAL = 60.0
DEFAULT_SCHEDULE_GRACE = 300.0
DEFAULT_RECENT_JOBS = 100
QUANTILES = (("0.5", 0.5), ("0.9", 0.9), ("1", 1.0))

BATCH_QUEUES = 250  # queues per MULTI/EXEC
PIPELINED_BATCHES = 4  # MULTI/EXECs sent together in one round trip (1,000 queues)
SCAN_COUNT = 2000  # keys per SCAN step: few round trips, short server work per step
# The events stream is read in bounded pages: the first (EVENTS_FIRST_PAGE entries) with
# the counts, further ones (EVENTS_PAGE) for at most FOLLOW_QUEUES_PER_TRIP busy queues
# per round trip, so no reply exceeds a few MiB, until EVENTS_TIME_SHARE of the check's
# timeout is spent; the rest is read on the next scrape, from where this one stopped.
EVENTS_FIRST_PAGE = 100
EVENTS_PAGE = 1000
FOLLOW_QUEUES_PER_TRIP = 20
EVENTS_TIME_SHARE = 0.5
TIMESTAMP_BATCH = 1000
# Active jobs per queue whose locks are checked for stalled jobs (the first ones of the
# active list); a queue has as many active jobs as its workers' concurrency.
STALLED_SAMPLE = 1000
STALLED_BUDGET = 100_000  # lock checks per scrape over all queues
# After the server refused the script (not Redis >= 7, ACL), the pipelined reads are used;
# the script is tried again after this long (an upgrade or ACL change is picked up).
SCRIPT_RETRY = 600.0
# With change tracking, a queue is read again at the latest this long after its last read
# whatever the invalidations say (seconds; each queue from half of it, see
# _refresh_after): a bound on any staleness the tracking could not see.
REFRESH_AGE = 300.0

JOBS = Family(
    "bullmq_queue_jobs",
    "gauge",
    "Jobs in each state, as BullMQ's Queue.getJobCounts() counts them.",
    ("prefix", "queue", "state"),
)
PAUSED = Family(
    "bullmq_queue_paused",
    "gauge",
    "1 when the queue is paused (meta.paused), else 0.",
    ("prefix", "queue"),
)
OLDEST_WAITING = Family(
    "bullmq_queue_oldest_waiting_job_timestamp_seconds",
    "gauge",
    "Creation time of the job next in line in the wait list; absent when nothing waits.",
    ("prefix", "queue"),
    past_time=True,  # a job timestamp of 1e24 s must not look fresh forever
)
COMPLETED = Family(
    "bullmq_jobs_completed_total",
    "counter",
    "Jobs completed, including those removed on completion.",
    ("prefix", "queue"),
)
FAILED = Family(
    "bullmq_jobs_failed_total",
    "counter",
    "Jobs failed with no retries left, including those removed on failure.",
    ("prefix", "queue"),
)
QUEUES = Family(
    "bullmq_queues", "gauge", "Queues reported under the prefix by this scrape.", ("prefix",)
)
CAP_REACHED = Family(
    "bullmq_queues_cap_reached",
    "gauge",
    "1 when discovery found more queues than max_queues and reported only the first ones.",
    ("prefix",),
)
EXISTS = Family(
    "bullmq_queue_exists",
    "gauge",
    "1 when the queue has a meta hash or id key; 0 for a listed queue that does not exist.",
    ("prefix", "queue"),
)
WORKERS = Family(
    "bullmq_queue_workers",
    "gauge",
    "Redis connections named as this queue's workers, as Queue.getWorkers() finds them.",
    ("prefix", "queue"),
)
STALLED = Family(
    "bullmq_queue_stalled_jobs",
    "gauge",
    "Active jobs whose lock key is gone (the worker died or hung past its lock).",
    ("prefix", "queue"),
)
SCHEDULERS = Family(
    "bullmq_queue_schedulers",
    "gauge",
    "Repeatable jobs / job schedulers of the queue (entries of its repeat set).",
    ("prefix", "queue"),
)
SCHEDULER_NEXT = Family(
    "bullmq_queue_scheduler_next_run_timestamp_seconds",
    "gauge",
    "When the queue's earliest scheduled run is due; absent without schedulers.",
    ("prefix", "queue"),
)
SCHEDULERS_OVERDUE = Family(
    "bullmq_queue_schedulers_overdue",
    "gauge",
    "Schedulers whose next run is more than schedule_grace in the past (not advancing).",
    ("prefix", "queue"),
)
RECENT_WAIT = Family(
    "bullmq_queue_recent_job_wait_seconds",
    "gauge",
    "Wait (processedOn - timestamp) of the last recent_jobs completed jobs, by quantile.",
    ("prefix", "queue", "quantile"),
)
RECENT_PROCESSING = Family(
    "bullmq_queue_recent_job_processing_seconds",
    "gauge",
    "Processing time (finishedOn - processedOn) of the last recent_jobs completed jobs.",
    ("prefix", "queue", "quantile"),
)
RECENT_JOBS = Family(
    "bullmq_queue_recent_jobs",
    "gauge",
    "Completed jobs behind the recent_job quantiles (at most recent_jobs).",
    ("prefix", "queue"),
)
SKIPPED = Family(
    "bullmq_queues_skipped",
    "gauge",
    "Queues left out of this scrape because a key is unreadable (wrong type); see the logs.",
    ("prefix",),
)

_FINISHED = ("completed", "failed")
_STATE_LABELS = tuple((name, (("state", name),)) for name in STATES)
_QUANTILE_LABELS = tuple((q, (("quantile", label),)) for label, q in QUANTILES)
_LOG = logging.WARNING


@dataclass(frozen=True)
class BullmqOptions:
    conn: RedisConnOptions
    prefixes: tuple[str, ...]
    queues: tuple[str, ...]  # empty: discover
    discover_id_keys: bool
    max_queues: int
    discovery_interval: float
    counters: str
    workers: bool
    schedule_grace: float
    recent_jobs: int
    server_script: bool  # read with the read-only script when the server allows it
    track_changes: bool  # read only the queues Redis' client tracking reports changed


def parse(reader: Reader) -> BullmqOptions:
    conn = parse_conn(reader)
    prefixes = _names(reader, "prefix", ("bull",), what="prefix")
    queues = _names(reader, "queues", (), what="queue name")
    for name in queues:
        if ":" in name:
            reader.error("queues", f"BullMQ queue names cannot contain ':', got {describe(name)}")
    discover_id_keys = reader.bool("discover_id_keys", False)
    max_queues = reader.int("max_queues", DEFAULT_MAX_QUEUES, minimum=1)
    interval = reader.duration("discovery_interval", DEFAULT_DISCOVERY_INTERVAL, positive=False)
    counters = reader.choice("counters", COUNTER_SOURCES, "auto")
    workers = reader.bool("workers", True)
    grace = reader.duration("schedule_grace", DEFAULT_SCHEDULE_GRACE, positive=False)
    recent_jobs = reader.int("recent_jobs", DEFAULT_RECENT_JOBS, minimum=0)
    server_script = reader.bool("server_script", True)
    track_changes = reader.bool("track_changes", True)
    if reader.has("queues"):
        for key in ("discover_id_keys", "max_queues", "discovery_interval"):
            if reader.has(key):
                reader.error(key, "only used with discovery; leave it out when queues are listed")
    return BullmqOptions(
        conn=conn,
        prefixes=prefixes,
        queues=queues,
        discover_id_keys=bool(discover_id_keys),
        max_queues=int(max_queues),
        discovery_interval=float(interval),
        counters=str(counters),
        workers=bool(workers),
        schedule_grace=float(grace),
        recent_jobs=int(recent_jobs),
        server_script=bool(server_script),
        track_changes=bool(track_changes),
    )


def _names(reader: Reader, key: str, default: tuple[str, ...], *, what: str) -> tuple[str, ...]:
    value = reader.str_list(key, default)
    if not reader.has(key) or not isinstance(value, tuple):
        return default
    if not value:
        hint = " (leave queues out to discover them)" if key == "queues" else ""
        reader.error(key, f"must not be empty{hint}")
        return default
    seen: set[str] = set()
    for name in value:
        if not name:
            reader.error(key, f"a {what} must not be empty")
        elif name in seen:
            reader.error(key, f"duplicate {what} {describe(name)}")
        seen.add(name)
    return tuple(value)


@dataclass
class _Counter:
    """One lifetime counter of one queue: where it comes from and how to continue it."""

    source: Literal["metrics", "events"] | None = None
    events: int = 0  # finished jobs seen in the events stream since following began
    offset: int = 0  # added to the metrics count so a switch from events does not jump
    value: int = 0


@dataclass
class _QueueState:
    stream_id: str | None = None  # last events-stream id read; None: not positioned yet
    counters: dict[str, _Counter] = field(
        default_factory=lambda: {name: _Counter() for name in _FINISHED}
    )
    # The last recent_jobs completed jobs: (id, wait, processing) oldest first, and the
    # finish time (ms) of the newest, after which the next scrape reads newer ones.
    recent: deque[tuple[str, float, float]] = field(default_factory=deque)
    recent_since: str = "-inf"
    figures: tuple[tuple[float, float], ...] | None = None  # (wait, run) per quantile
    # The values the last samples were written from, and those samples (reused while the
    # values stay the same; the sink's base labels are checked once per scrape).
    written: tuple[Any, ...] = ()
    samples: list[Sample] | None = None
    # The script's row those samples were written from, when nothing was pending in it
    # (no events read, no newly completed job): the same row again means the same samples
    # (with the same worker count), without parsing it.
    raw: list[Any] | None = None
    workers: int | None = None
    # The script's last row of this queue, pending parts included: what the samples are
    # rebuilt from when only the worker count moved on a queue not read (change tracking).
    row: list[Any] | None = None
    # The events stream was not read to its end (a burst beyond the scrape's share of
    # time): read again on the next scrape, whatever change tracking says.
    behind: bool = False
    # Seconds after a read at which change tracking reads the queue anyway, fixed per
    # queue (_refresh_after), and the loop time that comes to.
    refresh_after: float = 0.0
    refresh_due: float = 0.0
    # Loop time at which an active job's lock can expire first (-inf: every scrape, some
    # locks were not read; None: no lock expires), from the script's row.
    lock_due: float | None = None


@dataclass
class _Read:
    """What one scrape learned about one queue."""

    prefix: str
    queue: str
    exists: bool  # False: a listed queue with no meta hash and no id key (yet)
    counts: dict[str, int]
    paused: bool
    next_job: str | None
    metrics: dict[str, int | None]
    schedulers: int
    next_run: float | None  # seconds
    next_run_ms: float  # the same as read (the repeat set's score), 0 without schedulers
    overdue: int
    active: list[str]  # the first STALLED_SAMPLE active job ids
    # Events stream entries read this scrape: finished jobs per event, the last id read
    # (None: none), and whether a full page came back (more may follow).
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FINISHED, 0))
    last_id: str | None = None
    events_more: bool = False
    oldest: float | None = None
    stalled: int = 0
    # Completed jobs newer than the ones already sampled: (id, finishedOn ms), oldest first;
    # the second round trip fills in their timings.
    completed_new: list[tuple[str, str]] = field(default_factory=list)
    timings: list[tuple[str, float, float]] = field(default_factory=list)
    # Read by the script: oldest, stalled and schedulers are final (no second round trip
    # for them); raw is its row when it can stand for the same samples next time.
    settled: bool = False
    raw: list[Any] | None = None


@dataclass
class _Discovery:
    at: float
    queues: tuple[str, ...]
    capped: bool


class _Skip(Exception):
    """A queue's keys could not be read; the message says which key and why."""


class _ScriptRefused(Exception):
    """The server refused the read-only script (Redis < 7, ACL, scripting disabled)."""


_AGAIN = object()  # a script row that raised an error: read through the pipelined route


# Every count of one queue, in the order _parse_queue reads them; keys follow the base
# ``<prefix>:<queue>:``. The last two only when counters may come from worker metrics.
_QUEUE_READS: tuple[tuple[str, ...], ...] = (
    ("EXISTS", Key("meta"), Key("id")),
    # The earliest scheduled run; only a queue that has one needs ZCARD (and ZCOUNT when
    # that run is overdue) in the second round trip.
    ("ZRANGE", Key("repeat"), "0", "0", "WITHSCORES"),
    ("LRANGE", Key("active"), "0", str(STALLED_SAMPLE - 1)),
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
    ("HGET", Key("metrics:completed"), "count"),
    ("HGET", Key("metrics:failed"), "count"),
)
_BASE_READS = len(_QUEUE_READS) - 2
# The key each reply of a queue's chunk read (its first argument), for a skip's reason;
# then the events stream read, when there is one.
_KEYS = tuple(str(command[1]) for command in _QUEUE_READS)
_REPLY_KEYS = (*_KEYS[:_BASE_READS], "events")
_REPLY_KEYS_WITH_METRICS = (*_KEYS, "events")

# The first round trip's reads as one read-only script over a batch of queues (EVALSHA_RO),
# computing server-side what the pipelined route reads in up to three round trips: counts,
# the next job's creation time, stalled jobs (their locks checked atomically with the active
# list), schedulers and overdue ones, events counted per page. One flat row per queue:
#   exists, paused, waiting, paused-list, active, delayed, prioritized, waiting-children,
#   completed, failed, schedulers, overdue, stalled, completed events, failed events,
#   events read (integers), then the last event id read, the score of the earliest
#   scheduled run, the next job's timestamp, the metrics:completed and metrics:failed
#   counts (strings, or nil), the milliseconds until the earliest of its active jobs'
#   locks expires (0: none will, -1: not every lock was read), then id, score, ... of the
#   jobs completed after ``since``.
# A queue whose reads raised an error (a key of the wrong type) is nil: it is read again
# through the pipelined route, which names the key.
# ARGV: overdue cut-off (ms), recent_jobs, events page size, "1" to read the metrics
# hashes, lock checks allowed; then per queue: key base, the recent-jobs bound (see
# _recent_bound) and the events position ("" not read, "-" find its end, else the first
# id to read).
SCRIPT = """
local rcall = redis.call
local cutoff, recent, page = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local metrics, budget = ARGV[4] == '1', tonumber(ARGV[5])

local function list_count(b, list)
  local n = rcall('LLEN', b .. list)
  if n == 0 then return 0, false end
  local last = rcall('LINDEX', b .. list, -1)
  if string.sub(last, 1, 2) == '0:' then  -- a legacy delay marker, not a job
    if n == 1 then return 0, false end
    return n - 1, rcall('LINDEX', b .. list, -2)
  end
  return n, last
end

local function event_of(fields)
  if fields[1] == 'event' then return fields[2] end
  for k = 1, #fields - 1, 2 do
    if fields[k] == 'event' then return fields[k + 1] end
  end
end

local function read_queue(b, since, after)
  local meta = b .. 'meta'
  local waiting, next_wait = list_count(b, 'wait')
  local paused, next_paused = list_count(b, 'paused')
  local active = rcall('LLEN', b .. 'active')
  local completed = rcall('ZCARD', b .. 'completed')
  -- One EXISTS for the queue's existence (meta or id: weight 1 each) and for the rare
  -- schedulers and worker metrics (each key named 3 times: EXISTS counts every mention).
  local r, mc, mf = b .. 'repeat', b .. 'metrics:completed', b .. 'metrics:failed'
  local found = rcall('EXISTS', meta, b .. 'id', r, r, r, mc, mc, mc, mf, mf, mf)
  local exists, optional = found % 3, found >= 3
  local row = {
    exists, exists > 0 and rcall('HEXISTS', meta, 'paused') or 0,
    waiting, paused, active, rcall('ZCARD', b .. 'delayed'),
    rcall('ZCARD', b .. 'prioritized'), rcall('ZCARD', b .. 'waiting-children'),
    completed, rcall('ZCARD', b .. 'failed'), 0, 0, 0, 0, 0, 0,
    false, false, false, false, false, 0}
  local first = optional and rcall('ZRANGE', r, 0, 0, 'WITHSCORES') or {}
  if first[1] then
    row[11] = rcall('ZCARD', r)
    row[18] = first[2]
    if tonumber(first[2]) < tonumber(cutoff) then
      row[12] = rcall('ZCOUNT', r, '-inf', '(' .. cutoff)
    end
  end
  if active > 0 then
    row[22] = -1
    if budget > 0 then
      local ids = rcall('LRANGE', b .. 'active', 0, math.min(999, budget - 1))
      budget = budget - #ids
      -- A job whose lock is gone is stalled; the soonest lock expiry is when one can be.
      local stalled, soonest = 0, 0
      for k = 1, #ids do
        local ttl = rcall('PTTL', b .. ids[k] .. ':lock')
        if ttl == -2 then
          stalled = stalled + 1
        elseif ttl >= 0 and (soonest == 0 or ttl < soonest) then
          soonest = math.max(ttl, 1)
        end
      end
      row[13] = stalled
      if #ids == active then row[22] = soonest end
    end
  end
  if after == '-' then
    local last = rcall('XREVRANGE', b .. 'events', '+', '-', 'COUNT', 1)[1]
    row[17] = last and last[1] or '0-0'
  elseif after ~= '' then
    local entries = rcall('XRANGE', b .. 'events', after, '+', 'COUNT', page)
    for k = 1, #entries do
      local kind = event_of(entries[k][2])
      if kind == 'completed' then row[14] = row[14] + 1
      elseif kind == 'failed' then row[15] = row[15] + 1 end
    end
    row[16] = #entries
    if #entries > 0 then row[17] = entries[#entries][1] end
  end
  local next_job = next_wait or next_paused
  if next_job then row[19] = rcall('HGET', b .. next_job, 'timestamp') or false end
  if metrics and optional then
    row[20] = rcall('HGET', mc, 'count') or false
    row[21] = rcall('HGET', mf, 'count') or false
  end
  if recent > 0 and completed > 0 then
    local jobs = rcall('ZREVRANGEBYSCORE', b .. 'completed', '+inf', since, 'WITHSCORES',
                       'LIMIT', 0, recent)
    for k = 1, #jobs do row[22 + k] = jobs[k] end
  end
  return row
end

local out = {}
for i = 6, #ARGV, 3 do
  local ok, row = pcall(read_queue, ARGV[i], ARGV[i + 1], ARGV[i + 2])
  out[#out + 1] = ok and row or false
end
return out
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


class _ScriptTrip:
    """The requests and replies of one script round trip (see BullmqProbe._script_batches).

    A refused or unknown script is noted and the round trip read to its end (the
    connection stays usable); rows after a NOSCRIPT or a refusal are not parsed, so a
    second round trip (or the pipelined reads) reads every queue exactly once.
    """

    def __init__(
        self, probe: BullmqProbe, targets: Sequence[tuple[str, str]], with_clients: bool
    ) -> None:
        self.probe = probe
        self.targets = targets
        self.with_clients = with_clients
        self.starts = range(0, len(targets), BATCH_QUEUES)
        self.modes: list[list[str]] = []
        self.parsed = -1 if with_clients else 0  # parts handed over, CLIENT LIST first
        self.clients: Any = None
        self.outcomes: list[Any] = []
        self.unknown = False  # NOSCRIPT: the server does not have the script yet
        self.refusal: Exception | None = None

    def parts(self, call: tuple[str, str], head: tuple[str, ...]) -> Iterator[tuple[bytes, int]]:
        """``call``: the command and the script's SHA-1 or text; ``head``: the ARGV
        shared by every batch. Packed one batch at a time as the round trip is written."""
        if self.with_clients:
            yield pack_text([("CLIENT", "LIST")]).encode(), 1
        tracked = self.probe._tracking.active
        for start in self.starts:
            batch = self.targets[start : start + BATCH_QUEUES]
            args, modes = self.probe._script_args(batch)
            self.modes.append(modes)
            commands: list[tuple[str, ...]] = [(*call, "0", *head, *args)]
            keys = self.probe._keys_to_track(batch) if tracked else []
            if keys:
                # Keys a script builds are not tracked (and declared KEYS cost the server
                # a tracking update per key per call inside it: quadratic); one EXISTS of
                # the keys the script reads makes the server track them, before it runs.
                # Tracking is opt-in (OPTIN): nothing else this connection reads (job
                # hashes, locks, pages of events) fills the server's tracking table.
                commands[:0] = [("CLIENT", "CACHING", "YES"), ("EXISTS", *keys)]
            yield pack_text(commands).encode("utf-8", "surrogateescape"), len(commands)

    async def take(self, replies: list[Any]) -> None:
        from redis import exceptions as rexc

        index, self.parsed = self.parsed, self.parsed + 1
        reply = replies[-1]
        if any(isinstance(r, Exception) for r in replies[:-1]):
            self.probe._tracking.reset()  # not tracked: nothing read counts as unchanged
        if index < 0:
            self.clients = reply
            return
        if isinstance(reply, rexc.ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                self.unknown = True
            elif "user_script" in str(reply):
                raise reply  # the script itself failed: a defect, not a refusal
            elif transient(reply):
                raise reply  # BUSY, LOADING: this scrape fails, the script is not refused
            else:
                self.refusal = reply
            return
        if self.unknown or self.refusal is not None:
            return
        start = self.starts[index]
        batch = self.targets[start : start + BATCH_QUEUES]
        if not isinstance(reply, list) or len(reply) != len(batch):
            raise ProtocolViolation("protocol error: script reply of unexpected shape")
        self.outcomes.extend(self.probe._parse_rows(batch, self.modes[index], reply))
        await asyncio.sleep(0)  # one batch's parsing at a time on the event loop


class BullmqProbe(BaseProbe[BullmqOptions]):
    def __init__(self, spec: CheckSpec[BullmqOptions]) -> None:
        super().__init__(spec)
        self._redis = RawRedis(spec.options.conn)
        self._discovered: dict[str, _Discovery] = {}
        self._states: dict[tuple[str, str], _QueueState] = {}
        self._logged: dict[tuple[str, str], str] = {}
        # Events page sizes; halved when a round trip exceeds RawRedis' byte limit (entries
        # with large return values), so the stream positions keep advancing.
        self._first_page = EVENTS_FIRST_PAGE
        self._follow_page = EVENTS_PAGE
        self._follow_queues = FOLLOW_QUEUES_PER_TRIP
        self._samples_base: tuple[tuple[str, str], ...] = ()
        self._script_refused_at: float | None = None  # loop time of the last refusal
        self._read_started = 0.0  # loop time at which this scrape's reads were sent
        # The client names of each target's workers, for the targets they were made for.
        self._worker_names: tuple[list[tuple[str, str]], dict[str, tuple[str, str]]] = ([], {})
        self._tracking = ChangeTracking(spec.options.conn, self._queues_of, spec.name)

    async def close(self) -> None:
        await self._redis.close()
        await self._tracking.close()

    def _keys_to_track(self, batch: Sequence[tuple[str, str]]) -> list[str]:
        """The keys of ``batch`` the server does not track (yet, or any more), for the
        ``EXISTS`` sent before the batch's script; the queues count as tracked from that
        round trip on."""
        tracking = self._tracking
        keys: list[str] = []
        for target in batch:
            base = f"{target[0]}:{target[1]}:"
            lapsed = tracking.lapsed(target)
            if lapsed is None:
                keys += [base + suffix for suffix in _TRACKED_SUFFIXES]
            else:
                keys += [key for key in lapsed if key[len(base) :] in _TRACKED_SET]
            tracking.track(target)
        return keys

    def _queues_of(self, key: str) -> list[tuple[str, str]]:
        """The queue a key belongs to, under each prefix it starts with (queue names
        have no ':')."""
        return [
            (prefix, key[len(prefix) + 1 :].split(":", 1)[0])
            for prefix in self.options.prefixes
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1] == ":"
        ]

    async def _to_read(
        self, targets: list[tuple[str, str]], now_ms: int, now: float
    ) -> list[tuple[str, str]]:
        """The targets to read this scrape, in order; syncs change tracking first (a round
        trip on each connection). All of them without the script route (off or refused)
        or without tracking (off, refused, just set up); else those never read or changed
        since (an invalidation, a failed scrape), those whose events stream was not read to
        its end, those whose figures move with time alone (a lock due, a scheduled run past
        the grace) and those read long enough ago (:func:`_refresh_after`)."""
        options = self.options
        if (
            not options.track_changes
            or not options.server_script
            or self._script_refused_at is not None
            or not await self._tracking.sync(self._redis)
        ):
            return targets
        tracking, states = self._tracking, self._states
        cutoff = now_ms - options.schedule_grace * 1000
        chosen: list[tuple[str, str]] = []
        for target in targets:
            state = states.get(target)
            row = None if state is None or state.samples is None else state.row
            if (
                state is None
                or row is None
                or not tracking.unchanged(target)
                or state.behind
                # An active job's lock can have expired (no key the tracking names
                # changes then): a stalled job shows when it can, not a refresh later.
                or (state.lock_due is not None and state.lock_due <= now)
                # An earliest scheduled run past the grace: overdue ones grow with time.
                or (row[17] and float(row[17]) < cutoff)
                or state.refresh_due <= now
            ):
                # Counted as read only once its samples are written (end of _collect): a
                # scrape failing before that (BUSY, a timeout) may have moved its state.
                tracking.changed(target)
                chosen.append(target)
        return chosen

    async def collect(self, out: Sink) -> None:
        from redis import exceptions as rexc

        try:
            await self._collect(out)
        except rexc.RedisError as exc:
            raise CheckFailed(reason(exc, self.options.conn.where)) from None

    async def _collect(self, out: Sink) -> None:  # noqa: C901 - debt (issue 18): the bullmq scrape pipeline; hot path kept flat for speed (bench)
        options = self.options
        loop = asyncio.get_running_loop()
        events_until = loop.time() + self.spec.timeout * EVENTS_TIME_SHARE
        targets: list[tuple[str, str]] = []
        capped: dict[str, bool] = {}
        for prefix in options.prefixes:
            if options.queues:
                names, capped[prefix] = options.queues, False
            else:
                names, capped[prefix] = await self._discover(prefix)
            targets.extend((prefix, name) for name in names)
        if out.base != self._samples_base:
            # Kept samples carry the sink's base labels: keep none across a change.
            self._samples_base = out.base
            for state in self._states.values():
                state.samples = None

        # What to write, in target order: a queue read this scrape, or the target of one
        # whose script row is the same as when its kept samples were written.
        order: list[_Read | tuple[str, str]] = []
        reads: list[_Read] = []
        skipped: dict[str, int] = dict.fromkeys(options.prefixes, 0)
        problems: list[str] = []
        clients: Any = None
        now_ms = int(time.time() * 1000)
        read_at = self._read_started = loop.time()
        to_read = await self._to_read(targets, now_ms, read_at)
        group = BATCH_QUEUES * PIPELINED_BATCHES
        # The script checks locks batch by batch: each gets an equal share of the budget.
        lock_checks = STALLED_BUDGET // max(-(-len(to_read) // BATCH_QUEUES), 1)
        found: dict[tuple[str, str], Any] = {}
        for start in range(0, max(len(to_read), 1), group):
            batch = to_read[start : start + group]
            # CLIENT LIST rides along with the first batch, outside its MULTI: an ACL
            # denial of it must not abort the counts.
            with_clients = options.workers and start == 0 and bool(targets)
            if not batch and not with_clients:
                break
            outcomes, listed = await self._read_group(batch, now_ms, with_clients, lock_checks)
            if with_clients:
                clients = listed
            found.update(zip(batch, outcomes, strict=True))
        for target in targets:
            # Not read: unchanged since its last read, as client tracking reports.
            outcome = found.get(target, target)
            prefix, queue = target
            if isinstance(outcome, _Read):
                reads.append(outcome)
                order.append(outcome)
                if outcome.exists:
                    self._logged.pop(target, None)
                else:
                    self._log_once(
                        target,
                        "no keys yet (not created, or misspelled?)",
                        "bullmq listed queue not found",
                        logging.INFO,
                    )
            elif outcome is None:
                continue  # a discovered queue deleted since discovery
            elif isinstance(outcome, _Skip):
                skipped[prefix] += 1
                self._log_once(target, str(outcome), "bullmq queue skipped", _LOG)
                if options.queues:
                    problems.append(f"{prefix}:{queue}: {outcome}")
            else:
                order.append(target)
        await self._follow_streams(reads, events_until)
        await self._second_trip(reads, now_ms)

        workers: dict[tuple[str, str], int] | None = None
        if options.workers and targets:
            if isinstance(clients, Exception):
                problems.append(
                    f"CLIENT LIST refused ({first_line(clients)}): bullmq_queue_workers needs "
                    "+client|list in the user's ACL, or set workers: false"
                )
            else:
                if self._worker_names[0] != targets:  # changes with discovery only
                    self._worker_names = (targets, _worker_names(targets))
                workers = _workers(clients, self._worker_names[1])
        for index, item in enumerate(order):
            if index and not index % BATCH_QUEUES:
                await asyncio.sleep(0)  # let other work run between slices of queues
            if isinstance(item, _Read):
                self._write_queue(out, item, workers)
            else:
                self._write_kept(out, item, workers)
        if self._tracking.active:  # their samples are written: they count as read
            for target in to_read:
                self._tracking.mark_read(target)
                kept = self._states.get(target)  # none for a queue gone or skipped
                if kept is not None:
                    kept.refresh_due = read_at + kept.refresh_after
            self._tracking.settle(self._redis)
        reported = [item.prefix if isinstance(item, _Read) else item[0] for item in order]
        for prefix in options.prefixes:
            out.add(QUEUES, reported.count(prefix), prefix=prefix)
            out.add(CAP_REACHED, 1 if capped[prefix] else 0, prefix=prefix)
            out.add(SKIPPED, skipped[prefix], prefix=prefix)
        # Forget queues that are gone, so memory follows the live queues.
        seen = {(i.prefix, i.queue) if isinstance(i, _Read) else i for i in order}
        for key in [k for k in self._states if k not in seen]:
            del self._states[key]
            self._tracking.forget(key)
        targeted = set(targets)
        for key in [k for k in self._logged if k not in targeted]:
            del self._logged[key]

        if problems:
            raise CheckFailed("; ".join(problems))

    async def _read_group(
        self,
        targets: Sequence[tuple[str, str]],
        now_ms: int,
        with_clients: bool,
        lock_checks: int,
    ) -> tuple[list[_Read | _Skip | tuple[str, str] | None], Any]:
        """The first round trip for up to PIPELINED_BATCHES batches: the script's when the
        server takes it, else (or after a refusal, until SCRIPT_RETRY) the pipelined reads."""
        loop = asyncio.get_running_loop()
        refused = self._script_refused_at
        if self.options.server_script and (
            refused is None or loop.time() - refused >= SCRIPT_RETRY
        ):
            try:
                outcomes, clients = await self._script_batches(
                    targets, now_ms, with_clients, lock_checks
                )
            except _ScriptRefused as exc:
                self._script_refused_at = loop.time()
                if refused is None:
                    event(
                        logging.INFO,
                        "bullmq read-only script refused, reading with pipelined commands",
                        check=self.spec.name,
                        reason=str(exc),
                    )
            else:
                self._script_refused_at = None
                again = [t for t, o in zip(targets, outcomes, strict=True) if o is _AGAIN]
                if again:
                    # A key of the wrong type: the pipelined reads name it.
                    redone, _ = await self._read_batches(again, now_ms, False)
                    found = dict(zip(again, redone, strict=True))
                    outcomes = [found[t] if o is _AGAIN else o
                                for t, o in zip(targets, outcomes, strict=True)]  # fmt: skip
                return outcomes, clients
        pipelined, clients = await self._read_batches(targets, now_ms, with_clients)
        return list(pipelined), clients

    async def _script_batches(
        self,
        targets: Sequence[tuple[str, str]],
        now_ms: int,
        with_clients: bool,
        lock_checks: int,
    ) -> tuple[list[Any], Any]:
        """One round trip: an ``EVALSHA_RO`` of :data:`SCRIPT` per BATCH_QUEUES queues (the
        script sent whole in a second one when the server does not know it yet), each
        batch parsed as soon as its rows are in. Outcomes per target: a :class:`_Read`, a
        :class:`_Skip`, None (gone since discovery), the target itself (the same row as its
        kept samples) or ``_AGAIN``. ``lock_checks``: per batch, for stalled jobs. Raises
        :class:`_ScriptRefused` when the server refuses the script."""
        from redis import exceptions as rexc

        options = self.options
        head = (
            str(now_ms - int(options.schedule_grace * 1000)),
            str(options.recent_jobs),
            str(self._first_page),
            "1" if options.counters in ("auto", "metrics") else "0",
            str(lock_checks),
        )
        trip = _ScriptTrip(self, targets, with_clients)
        await self._redis.execute_parts(trip.parts(("EVALSHA_RO", SCRIPT_SHA), head), trip.take)
        if trip.unknown and not trip.outcomes:
            trip = _ScriptTrip(self, targets, with_clients)
            await self._redis.execute_parts(trip.parts(("EVAL_RO", SCRIPT), head), trip.take)
        if trip.refusal is not None:
            raise _ScriptRefused(first_line(trip.refusal))
        if trip.unknown:
            raise rexc.ResponseError("NOSCRIPT: the script cache was flushed during the scrape")
        return trip.outcomes, trip.clients

    def _script_args(self, batch: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Per queue: key base, recent-jobs lower bound, events position (see SCRIPT)."""
        args: list[str] = []
        modes: list[str] = []
        for target in batch:
            base = f"{target[0]}:{target[1]}:"
            mode = self._events_mode(target)
            state = self._states.get(target)
            if mode == "follow" and state is not None:
                after = _after(state.stream_id or "0-0")
            else:
                after = "-" if mode == "position" else ""
            args += (base, _recent_bound(state), after)
            modes.append(mode)
        return args, modes

    def _parse_rows(
        self, batch: Sequence[tuple[str, str]], modes: list[str], rows: list[Any]
    ) -> list[Any]:
        """One outcome per queue of a batch's script reply (see :meth:`_script_batches`).
        Each row's lock TTL is taken out (set to 0 in place) before the row is compared
        with, or kept as, the queue's last: it changes on every read and is relative."""
        outcomes: list[Any] = []
        states = self._states
        for target, mode, row in zip(batch, modes, rows, strict=True):
            if row is None:
                outcomes.append(_AGAIN)
                continue
            try:
                # When a lock can expire next (relative, so not part of the row compared).
                lock_ttl, row[_LOCK_TTL] = int(row[_LOCK_TTL]), 0
            except (TypeError, ValueError, IndexError) as exc:
                outcomes.append(
                    _Skip(f"{target[0]}:{target[1]}: unexpected reply ({type(exc).__name__})")
                )
                continue
            state = states.get(target)
            if (
                state is not None
                and state.raw is not None
                and row == state.raw
                and state.samples is not None
            ):
                state.lock_due = _lock_due(self._read_started, lock_ttl)
                outcomes.append(target)  # the same row as the kept samples were made of
                continue
            try:
                outcomes.append(self._read_of_row(target[0], target[1], row, mode))
                state = states.get(target)
                if state is not None:
                    state.lock_due = _lock_due(self._read_started, lock_ttl)
            except (TypeError, ValueError, IndexError, AttributeError) as exc:
                # Not what the script answers: a broken or hostile server.
                outcomes.append(
                    _Skip(f"{target[0]}:{target[1]}: unexpected reply ({type(exc).__name__})")
                )
        return outcomes

    def _read_of_row(self, prefix: str, queue: str, row: list[Any], mode: str) -> _Read | None:
        """A :class:`_Read` from the script's row for one queue (layout: see SCRIPT)."""
        (exists, paused, waiting, paused_jobs, active, delayed, prioritized, children,
         done, failed, schedulers, overdue, stalled, completed_events, failed_events,
         entries) = (int(number) for number in row[:16])  # fmt: skip
        last_id, first_run, stamp, metric_completed, metric_failed = row[16:21]
        completed = row[_LOCK_TTL + 1 :]
        if not exists and not self.options.queues:
            return None  # neither meta nor id: obliterated since discovery
        state = self._states.get((prefix, queue))
        if state is None:
            state = self._states[(prefix, queue)] = _QueueState(
                refresh_after=_refresh_after((prefix, queue))
            )
        state.row = row
        counts = {
            "waiting": waiting, "paused": paused_jobs, "active": active, "delayed": delayed,
            "prioritized": prioritized, "waiting-children": children, "completed": done,
            "failed": failed,
        }  # fmt: skip
        millis = _int_or_none(stamp)
        read = _Read(
            prefix=prefix, queue=queue, exists=exists > 0, counts=counts, paused=paused > 0,
            next_job=None,
            metrics={"completed": _int_or_none(metric_completed),
                     "failed": _int_or_none(metric_failed)},
            schedulers=schedulers, next_run=float(first_run) / 1000.0 if first_run else None,
            next_run_ms=float(first_run) if first_run else 0.0, overdue=overdue, active=[],
            stalled=stalled, oldest=millis / 1000.0 if millis is not None and millis > 0 else None,
            settled=True,
        )  # fmt: skip
        _take_completed(read, state, completed)
        if mode == "position":
            state.stream_id = last_id or "0-0"
        elif mode == "follow":
            read.finished["completed"] = completed_events
            read.finished["failed"] = failed_events
            read.last_id = last_id or None
            read.events_more = entries == self._first_page
        if mode != "position" and not entries and not read.completed_new:
            read.raw = row
        return read

    async def _discover(self, prefix: str) -> tuple[tuple[str, ...], bool]:
        """Queue names under ``prefix`` by SCAN (never KEYS), cached ``discovery_interval``."""
        now = time.monotonic()
        cached = self._discovered.get(prefix)
        if cached is not None and now - cached.at < self.options.discovery_interval:
            return cached.queues, cached.capped
        suffixes = ("meta", "id") if self.options.discover_id_keys else ("meta",)
        found: set[str] = set()
        for suffix in suffixes:
            pattern = f"{_glob_escape(prefix)}:*:{suffix}"
            head, tail = len(prefix) + 1, len(suffix) + 1
            cursor = "0"
            while True:
                (reply,) = await self._redis.execute(
                    [("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)]
                )
                if isinstance(reply, Exception):
                    raise reply
                cursor, keys = reply
                for key in keys:
                    name = key[head:-tail]
                    # BullMQ refuses ':' in queue names (such keys belong to something
                    # else) and names are JavaScript strings, so valid UTF-8.
                    if name and ":" not in name and name.isprintable():
                        found.add(name)
                if cursor == "0":
                    break
        names = tuple(sorted(found))
        capped = len(names) > self.options.max_queues
        if capped:
            event(
                _LOG,
                "bullmq queue discovery capped",
                check=self.spec.name,
                prefix=prefix,
                found=len(names),
                max_queues=self.options.max_queues,
            )
            names = names[: self.options.max_queues]
        self._discovered[prefix] = _Discovery(now, names, capped)
        return names, capped

    async def _read_batches(
        self, targets: Sequence[tuple[str, str]], now_ms: int, with_clients: bool
    ) -> tuple[list[_Read | _Skip | None], Any]:
        """One round trip: a MULTI/EXEC per BATCH_QUEUES queues, each written as soon as it
        is packed, each parsed as soon as its replies are in.

        Every count of a queue comes from one transaction, so it is consistent per batch.
        With ``with_clients``, a CLIENT LIST goes first in the same round trip; its reply
        (text, or the error object) is returned beside the outcomes.
        """
        from redis import exceptions as rexc

        starts = range(0, len(targets), BATCH_QUEUES)
        modes: list[list[str]] = []

        def parts() -> Iterator[tuple[bytes, int]]:
            # Packed one batch at a time as the round trip is written: Redis runs the
            # first batch while the next ones are packed.
            if with_clients:
                yield pack_text([("CLIENT", "LIST")]).encode(), 1
            for start in starts:
                text, count, batch_modes = self._pack_batch(targets[start : start + BATCH_QUEUES])
                modes.append(batch_modes)
                yield text.encode("utf-8", "surrogateescape"), count

        clients: Any = None
        outcomes: list[_Read | _Skip | None] = []
        parsed = -1 if with_clients else 0  # parts handed over so far, CLIENT LIST first

        async def each(replies: list[Any]) -> None:
            # Each batch is parsed as soon as its replies are in, while Redis runs the next.
            nonlocal clients, parsed
            index, parsed = parsed, parsed + 1
            if index < 0:
                clients = replies[0]
                return
            # Queueing errors (ACL denials, unknown commands) make EXEC fail: report the
            # first.
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            results: list[Any] | None = replies[-1]
            if results is None:
                raise rexc.ResponseError("EXEC was aborted")
            start = starts[index]
            batch = targets[start : start + BATCH_QUEUES]
            outcomes.extend(self._parse_batch(batch, modes[index], results))
            await asyncio.sleep(0)  # one batch's parsing at a time on the event loop

        try:
            await self._redis.execute_parts(parts(), each)
        except ReplyLimitExceeded:
            # First events pages of busy streams with large entries: smaller ones from the
            # next scrape on (this one fails; nothing was counted, positions are kept).
            self._first_page = max(self._first_page // 2, 1)
            raise
        return outcomes, clients

    def _reads(self) -> tuple[tuple[str, ...], ...]:
        metrics = self.options.counters in ("auto", "metrics")
        return _QUEUE_READS if metrics else _QUEUE_READS[:_BASE_READS]

    def _pack_batch(self, batch: Sequence[tuple[str, str]]) -> tuple[str, int, list[str]]:
        """One batch's MULTI ... EXEC as RESP text, its command count and events modes."""
        reads = self._reads()
        recent = self.options.recent_jobs
        if recent:
            # Only jobs finished since the newest one already sampled (an Arg per queue).
            reads += (("ZREVRANGEBYSCORE", Key("completed"), "+inf", Arg("since"),
                       "WITHSCORES", "LIMIT", "0", str(recent)),)  # fmt: skip
        # One template per events mode: the stream read differs (and so its arguments).
        templates = {
            "none": CommandTemplate(reads),
            "position": CommandTemplate(
                (*reads, ("XREVRANGE", Key("events"), "+", "-", "COUNT", "1"))
            ),
            "follow": CommandTemplate(
                (
                    *reads,
                    ("XRANGE", Key("events"), Arg("after"), "+", "COUNT", str(self._first_page)),
                )
            ),
        }
        parts = [pack_text([("MULTI",)])]
        count = 2  # MULTI, EXEC
        modes: list[str] = []
        for prefix, queue in batch:
            base = f"{prefix}:{queue}:"
            mode = self._events_mode((prefix, queue))
            state = self._states.get((prefix, queue))
            values: list[str] = []
            if recent:
                values.append(_recent_bound(state))
            if mode == "follow" and state is not None:
                values.append(_after(state.stream_id or "0-0"))
            template = templates[mode]
            parts.append(template.render(base, *values))
            count += template.count
            modes.append(mode)
        parts.append(pack_text([("EXEC",)]))
        return "".join(parts), count, modes

    def _parse_batch(
        self, batch: Sequence[tuple[str, str]], modes: list[str], results: list[Any]
    ) -> list[_Read | _Skip | None]:
        per_queue = (
            len(_QUEUE_READS) if self.options.counters in ("auto", "metrics") else (_BASE_READS)
        )
        fixed = per_queue + (1 if self.options.recent_jobs else 0)  # + recent jobs
        outcomes: list[_Read | _Skip | None] = []
        position = 0
        for (prefix, queue), mode in zip(batch, modes, strict=True):
            size = fixed + (0 if mode == "none" else 1)
            chunk = results[position : position + size]
            position += size
            try:
                outcomes.append(self._parse_queue(prefix, queue, chunk, mode))
            except _Skip as exc:
                outcomes.append(exc)
        return outcomes

    def _events_mode(self, key: tuple[str, str]) -> str:
        """``position`` (find the stream's end), ``follow`` (read new entries) or ``none``."""
        if self.options.counters in ("off", "metrics"):
            return "none"
        state = self._states.get(key)
        if state is None:
            return "position"
        if self.options.counters == "auto" and all(
            c.source == "metrics" for c in state.counters.values()
        ):
            # Both counters come from worker metrics: the stream is not needed, and its
            # position goes stale; find its end again if a counter falls back to it.
            state.stream_id = None
            return "none"
        return "position" if state.stream_id is None else "follow"

    def _parse_queue(self, prefix: str, queue: str, replies: list[Any], mode: str) -> _Read | None:
        metrics_read = self.options.counters in ("auto", "metrics")
        names = _REPLY_KEYS_WITH_METRICS if metrics_read else _REPLY_KEYS
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception):
                key = f"{prefix}:{queue}:{names[index] if index < len(names) else '?'}"
                raise _Skip(f"{key}: {first_line(reply)}")
        try:
            return self._read_of(prefix, queue, replies, mode, metrics_read)
        except (TypeError, ValueError, IndexError) as exc:
            # Not what Redis answers to these commands: a broken or hostile server.
            raise _Skip(f"{prefix}:{queue}: unexpected reply ({type(exc).__name__})") from None

    def _read_of(
        self, prefix: str, queue: str, replies: list[Any], mode: str, metrics_read: bool
    ) -> _Read | None:
        (exists_count, first_run, active, paused_field, wait_len, wait_tail,
         paused_len, paused_tail, active_len, *sets) = replies[:_BASE_READS]  # fmt: skip
        exists = int(exists_count) > 0
        if not exists and not self.options.queues:
            return None  # neither meta nor id: obliterated since discovery
        # The v5 layout moves a paused queue's jobs to the paused list: they wait there.
        next_job = _next_job(wait_tail) or _next_job(paused_tail)
        counts = {
            "waiting": _list_count(int(wait_len), wait_tail),
            "paused": _list_count(int(paused_len), paused_tail),
            "active": int(active_len),
            **{name: int(n) for name, n in zip(STATES[3:], sets, strict=True)},
        }
        position = _BASE_READS
        metrics: dict[str, int | None] = dict.fromkeys(_FINISHED)
        if metrics_read:
            metrics["completed"] = _int_or_none(replies[position])
            metrics["failed"] = _int_or_none(replies[position + 1])
            position += 2
        completed: list[Any] = []
        if self.options.recent_jobs:
            completed = replies[position]
            position += 1
        # Not setdefault: its default would build a fresh state per queue on every scrape.
        state = self._states.get((prefix, queue))
        if state is None:
            state = self._states[(prefix, queue)] = _QueueState(
                refresh_after=_refresh_after((prefix, queue))
            )
        read = _Read(
            prefix=prefix, queue=queue, exists=exists, counts=counts,
            paused=paused_field is not None, next_job=next_job, metrics=metrics,
            schedulers=0, next_run=float(first_run[1]) / 1000.0 if first_run else None,
            next_run_ms=float(first_run[1]) if first_run else 0.0,
            overdue=0, active=list(active),
        )  # fmt: skip
        _take_completed(read, state, completed)
        if mode == "position":
            entries = replies[position] or []
            state.stream_id = entries[0][0] if entries else "0-0"
        elif mode == "follow":
            page = replies[position] or []
            _count_events(read, page)
            read.events_more = len(page) == self._first_page
        return read

    async def _follow_streams(self, reads: list[_Read], until: float) -> None:
        """Read further pages of busy event streams until the scrape's share of time is
        spent; a stream not caught up goes on from its last entry on the next scrape."""
        loop = asyncio.get_running_loop()
        pending = [r for r in reads if r.events_more]
        while pending and loop.time() < until:
            size, page_size = self._follow_queues, self._follow_page
            trip, pending = pending[:size], pending[size:]
            commands = [
                ("XRANGE", f"{r.prefix}:{r.queue}:events", _after(r.last_id or "0-0"), "+",
                 "COUNT", page_size)
                for r in trip
            ]  # fmt: skip
            try:
                pages = await self._redis.execute(commands)
            except ReplyLimitExceeded:
                # Large entries (big return values): fewer per round trip from now on. What
                # was read counts; the rest follows on the next scrapes.
                if len(trip) > 1:
                    self._follow_queues = len(trip) // 2
                else:
                    self._follow_page = max(self._follow_page // 2, 1)
                return
            for read, page in zip(trip, pages, strict=True):
                if isinstance(page, Exception) or not isinstance(page, list):
                    read.events_more = False
                    continue  # the stream went away meanwhile: what was read counts
                _count_events(read, page)
                read.events_more = len(page) == page_size
                if read.events_more:
                    pending.append(read)

    async def _second_trip(self, reads: list[_Read], now_ms: int) -> None:  # noqa: C901 - debt (issue 18): the bullmq second round trip; hot path kept flat for speed
        """Second round trip: the creation time of each queue's next waiting job, how many
        of each queue's active jobs hold a lock (a lock gone while the job is still
        active: stalled, see :meth:`_stalled_trip`) and the times of newly completed jobs."""
        from redis import exceptions as rexc

        waiting = [r for r in reads if r.next_job is not None]
        budget = STALLED_BUDGET
        for read in reads:
            # Keep the transaction's reply bounded whatever the queues' concurrency.
            read.active = read.active[: max(budget, 0)]
            budget -= len(read.active)
        busy = [r for r in reads if r.active]
        finished = [r for r in reads if r.completed_new]
        scheduled = [r for r in reads if r.next_run is not None and not r.settled]
        if not waiting and not busy and not finished and not scheduled:
            return
        # A run is overdue when due before this cut-off (ms); only a queue whose earliest
        # run is overdue needs them counted.
        overdue_before = now_ms - int(self.options.schedule_grace * 1000)
        late = [r for r in scheduled if r.next_run_ms < overdue_before]
        commands: list[tuple[str, ...]] = [("MULTI",)]
        for read in waiting:
            commands.append(("HGET", f"{read.prefix}:{read.queue}:{read.next_job}", "timestamp"))
        for read in busy:
            # One EXISTS for all locks of the queue: it answers how many exist, and when
            # that is all of them (the usual case) no job of the queue is stalled.
            base = f"{read.prefix}:{read.queue}:"
            commands.append(("EXISTS", *(f"{base}{job}:lock" for job in read.active)))
        for read in finished:
            base = f"{read.prefix}:{read.queue}:"
            commands.extend(
                ("HMGET", base + job, "timestamp", "processedOn", "finishedOn")
                for job, _ in read.completed_new
            )
        commands.extend(("ZCARD", f"{r.prefix}:{r.queue}:repeat") for r in scheduled)
        commands.extend(
            ("ZCOUNT", f"{r.prefix}:{r.queue}:repeat", "-inf", f"({overdue_before}") for r in late
        )
        commands.append(("EXEC",))
        replies = await self._redis.execute(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        results = replies[-1]
        if not isinstance(results, list):
            raise rexc.ResponseError("EXEC was aborted")
        position = 0
        for read in waiting:
            raw = results[position]
            position += 1
            millis = None if isinstance(raw, Exception) else _int_or_none(raw)
            # A job taken by a worker meanwhile keeps its hash; a removed one has none.
            if millis is not None and millis > 0:
                read.oldest = millis / 1000.0
        suspects = []
        for read in busy:
            held = results[position]
            position += 1
            if isinstance(held, Exception) or held != len(read.active):
                suspects.append(read)
        for read in finished:
            fields = results[position : position + len(read.completed_new)]
            position += len(read.completed_new)
            for (job, _), raw in zip(read.completed_new, fields, strict=True):
                times = [_int_or_none(v) for v in raw] if isinstance(raw, list) else []
                created, processed, done = [*times, None, None, None][:3]
                # A job removed meanwhile (or never processed) has nothing to measure.
                if created is None or processed is None or done is None:
                    continue
                read.timings.append((job, (processed - created) / 1000, (done - processed) / 1000))
        for read in scheduled:
            read.schedulers = _int_or_none(results[position]) or 0
            position += 1
        for read in late:
            read.overdue = _int_or_none(results[position]) or 0
            position += 1
        if suspects:
            await self._stalled_trip(suspects)

    async def _stalled_trip(self, reads: list[_Read]) -> None:
        """Third round trip, only for queues with an active job whose lock is gone: which
        jobs, and whether each is still active (read in the same transaction: a job that
        finished since the first round trip lost its lock and left the active list at
        once, so it is not stalled)."""
        from redis import exceptions as rexc

        commands: list[tuple[str, ...]] = [("MULTI",)]
        for read in reads:
            base = f"{read.prefix}:{read.queue}:"
            commands.extend(("EXISTS", f"{base}{job}:lock") for job in read.active)
            commands.append(("LRANGE", base + "active", "0", str(STALLED_SAMPLE - 1)))
        commands.append(("EXEC",))
        replies = await self._redis.execute(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        results = replies[-1]
        if not isinstance(results, list):
            raise rexc.ResponseError("EXEC was aborted")
        position = 0
        for read in reads:
            locks = results[position : position + len(read.active)]
            still = results[position + len(read.active)]
            position += len(read.active) + 1
            active_now = set(still) if isinstance(still, list) else set()
            read.stalled = sum(
                1 for job, lock in zip(read.active, locks, strict=True)
                if lock == 0 and job in active_now
            )  # fmt: skip

    def _write_queue(
        self, out: Sink, read: _Read, workers: dict[tuple[str, str], int] | None
    ) -> None:
        state = self._states[(read.prefix, read.queue)]
        options = self.options
        recent = self._update_timings(read, state) if options.recent_jobs else None
        counters: tuple[int, ...] = ()
        state.behind = read.events_more
        if options.counters != "off":
            if read.last_id is not None:
                state.stream_id = read.last_id
            for name in _FINISHED:
                counter = state.counters[name]
                counter.events += read.finished[name]
                _advance(counter, read.metrics[name], options.counters)
            counters = (state.counters["completed"].value, state.counters["failed"].value)
        workers_now = None if workers is None else workers.get((read.prefix, read.queue), 0)
        # Everything this queue's samples are made of: most queues look the same from one
        # scrape to the next, and then their samples are reused instead of rebuilt.
        values = (
            *read.counts.values(), read.paused, read.exists, read.stalled, read.schedulers,
            read.overdue, read.next_run, workers_now, read.oldest, recent, counters,
        )  # fmt: skip
        state.raw, state.workers = read.raw, workers_now
        if state.samples is not None and values == state.written:
            out.extend(state.samples)
            return
        start = len(out.samples)
        self._write_samples(out, read, workers_now, recent, counters)
        state.written = values
        state.samples = out.samples[start:]

    def _write_kept(
        self, out: Sink, target: tuple[str, str], workers: dict[tuple[str, str], int] | None
    ) -> None:
        """A queue whose script row is the one its kept samples were written from."""
        state = self._states[target]
        workers_now = None if workers is None else workers.get(target, 0)
        if workers_now == state.workers and state.samples is not None:
            out.extend(state.samples)
            return
        # Only the worker count moved: the row (nothing pending in it) gives the rest.
        assert state.row is not None
        # Mode "none": the events and jobs it counted are already in the state.
        read = self._read_of_row(target[0], target[1], state.row, "none")
        assert read is not None  # a kept row is of a queue that exists or is listed
        self._write_queue(out, read, workers)

    def _write_samples(
        self,
        out: Sink,
        read: _Read,
        workers: int | None,
        recent: tuple[int, tuple[tuple[float, float], ...]] | None,
        counters: tuple[int, ...],
    ) -> None:
        # Label pairs in the families' order (prefix, queue[, state|quantile]), built once.
        labels = (("prefix", read.prefix), ("queue", read.queue))
        add = out.add_ordered
        counts = read.counts
        for name, state_label in _STATE_LABELS:
            add(JOBS, counts[name], labels + state_label)
        add(PAUSED, 1 if read.paused else 0, labels)
        add(EXISTS, 1 if read.exists else 0, labels)
        add(STALLED, read.stalled, labels)
        add(SCHEDULERS, read.schedulers, labels)
        add(SCHEDULERS_OVERDUE, read.overdue, labels)
        if read.next_run is not None:
            add(SCHEDULER_NEXT, read.next_run, labels)
        if workers is not None:
            add(WORKERS, workers, labels)
        if read.oldest is not None:
            add(OLDEST_WAITING, read.oldest, labels)
        if recent is not None:
            jobs, figures = recent
            add(RECENT_JOBS, jobs, labels)
            for (_, quantile_label), (wait, run) in zip(_QUANTILE_LABELS, figures, strict=False):
                add(RECENT_WAIT, wait, labels + quantile_label)
                add(RECENT_PROCESSING, run, labels + quantile_label)
        for family, value in zip((COMPLETED, FAILED), counters, strict=False):
            add(family, value, labels)

    def _update_timings(
        self, read: _Read, state: _QueueState
    ) -> tuple[int, tuple[tuple[float, float], ...]]:
        """Add this scrape's finished jobs to the queue's recent ones; their count and the
        (wait, processing) figures per quantile."""
        recent = state.recent
        if read.timings or state.figures is None:
            recent.extend(read.timings)
            while len(recent) > self.options.recent_jobs:
                recent.popleft()
            waits = sorted(wait for _, wait, _ in recent)
            runs = sorted(run for _, _, run in recent)
            # Kept until new jobs arrive: most scrapes of most queues bring none.
            state.figures = tuple(
                (_nearest_rank(waits, q), _nearest_rank(runs, q)) for _, q in QUANTILES
            ) if recent else ()  # fmt: skip
        if read.completed_new:
            state.recent_since = read.completed_new[-1][1]
        return len(recent), state.figures

    def _log_once(self, target: tuple[str, str], why: str, msg: str, level: int) -> None:
        """Log a queue's problem when it starts or changes, not on every scrape."""
        if self._logged.get(target) != why:
            self._logged[target] = why
            event(level, msg, check=self.spec.name, prefix=target[0], queue=target[1], reason=why)


# The keys SCRIPT reads of every queue (it builds them from the queue's base); the job
# hashes and locks it reads besides are not tracked (see BullmqProbe._to_read).
_TRACKED_SUFFIXES = (
    "meta", "id", "wait", "paused", "active", "completed", "failed", "delayed",
    "prioritized", "waiting-children", "repeat", "metrics:completed", "metrics:failed",
    "events",
)  # fmt: skip


_TRACKED_SET = frozenset(_TRACKED_SUFFIXES)
_LOCK_TTL = 21  # the script row's milliseconds until an active job's lock can expire


def _refresh_after(target: tuple[str, str]) -> float:
    """How long after its last read a queue is read again whatever change tracking says:
    between half of REFRESH_AGE and all of it, fixed per queue by its name, so that the
    queues read together on the first scrape are not all read again on the same one."""
    spread = zlib.crc32(f"{target[0]}:{target[1]}".encode("utf-8", "surrogateescape"))
    return REFRESH_AGE * (0.5 + 0.5 * spread / 2**32)


def _lock_due(read_at: float, lock_ttl: int) -> float | None:
    """When (loop time) a queue's earliest lock can expire, from the script's answer;
    counted from before the read was sent, so never later than the lock's expiry."""
    if lock_ttl < 0:
        return -math.inf  # some locks were not read: read the queue on every scrape
    return read_at + lock_ttl / 1000 if lock_ttl else None


def _recent_bound(state: _QueueState | None) -> str:
    """The lower bound of the recent-jobs read: after the newest job already sampled.

    Exclusive, so a scrape in which no job finished reads nothing. A job whose finishedOn
    equals that newest one's but which lands in the set after this scrape is not sampled,
    as no job is whose finishedOn (the worker's clock) is older than that: the quantiles
    are of the jobs seen finishing, not a census.
    """
    if state is None or state.recent_since == "-inf":
        return "-inf"
    return f"({state.recent_since}"


def _take_completed(read: _Read, state: _QueueState, completed: list[Any]) -> None:
    """Set ``read.completed_new`` from the recent-jobs read (newest first, as
    [id, score, id, score, ...]; usually empty), skipping jobs already sampled (a job
    completed again after a retry comes back with a newer score)."""
    if completed:
        known = {job for job, _, _ in state.recent}
        pairs = zip(completed[0::2], completed[1::2], strict=True)
        read.completed_new = [(str(j), str(f)) for j, f in pairs if j not in known][::-1]


def _nearest_rank(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values by the nearest-rank method (an observed value)."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _count_events(read: _Read, page: list[Any]) -> None:
    """Count the finished jobs of a page of stream entries ([id, [field, value, ...]])."""
    finished = read.finished
    for entry_id, fields in page:
        # BullMQ writes "event" first.
        kind = _field(fields, "event")
        if kind in finished:
            finished[kind] += 1
        read.last_id = entry_id


def _worker_names(queues: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The client names BullMQ gives the workers of each queue: Node BullMQ
    ``<prefix>:<base64 of the queue name>``, the Python package ``<prefix>:<queue name>``
    (a worker given a name appends ``:w:<name>``, see :func:`_workers`)."""
    names: dict[str, tuple[str, str]] = {}
    for prefix, queue in queues:
        names[f"{prefix}:{queue}"] = (prefix, queue)
        encoded = base64.b64encode(queue.encode("utf-8", "surrogateescape")).decode("ascii")
        names[f"{prefix}:{encoded}"] = (prefix, queue)
    return names


def _workers(listing: Any, names: dict[str, tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Connections per queue named as BullMQ names its workers' connections
    (:func:`_worker_names`): the connections ``Queue.getWorkers()`` returns, from one
    CLIENT LIST for all queues."""
    found: dict[tuple[str, str], int] = {}
    text = listing if isinstance(listing, str) else ""
    for line in text.splitlines():
        name = _client_name(line)
        if not name:
            continue
        owner = names.get(name)
        if owner is None and ":w:" in name:
            # The prefix may contain ":w:" itself: try every split point.
            start = name.find(":w:")
            while owner is None and start >= 0:
                owner = names.get(name[:start])
                start = name.find(":w:", start + 1)
        if owner is not None:
            found[owner] = found.get(owner, 0) + 1
    return found


def _client_name(line: str) -> str:
    # CLIENT LIST lines are "id=7 addr=... name=<name> age=..."; names have no spaces.
    start = line.find(" name=")
    if start < 0:
        return ""
    start += 6
    end = line.find(" ", start)
    return line[start:] if end < 0 else line[start:end]


def _field(fields: list[str], name: str) -> str | None:
    if fields and fields[0] == name:
        return fields[1]
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == name:
            return fields[index + 1]
    return None


def _advance(counter: _Counter, metric: int | None, mode: str) -> None:
    """Pick the counter's source for this scrape and update its value without jumps."""
    if mode == "events" or (mode == "auto" and metric is None):
        if counter.source == "metrics":
            # The metrics hash went away (obliterated queue, metrics turned off): go on
            # from the last value with the stream, which was positioned meanwhile.
            counter.events = counter.value
        counter.source = "events"
        counter.value = counter.events
        return
    count = metric or 0
    if counter.source == "events":
        # Workers started recording metrics: continue from the events-based count, which
        # already includes this scrape's stream entries (read in the same MULTI/EXEC).
        counter.offset = counter.events - count
    elif counter.source is None:
        counter.offset = 0
    counter.source = "metrics"
    counter.value = max(count + counter.offset, 0)


def _list_count(length: int, tail: list[str]) -> int:
    """LLEN as getCounts reports it: a legacy ``0:<ts>`` marker at the tail is not a job."""
    if tail and _is_marker(tail[-1]):
        return length - 1 if length > 1 else 0
    return length


def _next_job(tail: list[str]) -> str | None:
    """The id a worker takes next (the list's tail), stepping over a legacy marker."""
    if tail and _is_marker(tail[-1]):
        tail = tail[:-1]
    return tail[-1] if tail else None


def _is_marker(item: str) -> bool:
    return item.startswith("0:")


def _after(stream_id: str) -> str:
    """The smallest stream id greater than ``stream_id`` (exclusive ranges need Redis 6.2)."""
    millis, _, seq = stream_id.partition("-")
    return f"{millis}-{int(seq or 0) + 1}"


def _int_or_none(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


_GLOB = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


def _per_queue(
    *,
    key: str,
    name: str,
    query: str,
    op: str,
    threshold: float,
    severity: str,
    summary: str,
    description: str,
    steps: tuple[str, ...],
    test: tuple[TestInput, ...],
) -> DefaultAlert:
    """A per-queue default alert, held for 5 minutes; its missing-data guard watches the
    queue's always-present ``bullmq_queue_paused`` (one guard per check, not per alert)."""
    return DefaultAlert(
        key=key,
        name=name,
        query=query,
        op=op,
        threshold=threshold,
        unit="count",
        for_=300.0,
        severity=severity,
        summary=summary,
        description=description,
        steps=steps,
        reads="bullmq_queue_paused{$sel}",
        test=test,
        labels=(("prefix", "bull"), ("queue", "q")),
        scope="queue",
    )


KIND = Kind(
    name="bullmq",
    summary="BullMQ queues: jobs per state as getJobCounts(), paused, queue age, "
    "lifetime completed/failed, existence, workers, stalled jobs, schedulers, recent job "
    "timings.",
    parse=parse,
    probe=BullmqProbe,
    families=(
        JOBS,
        PAUSED,
        OLDEST_WAITING,
        COMPLETED,
        FAILED,
        EXISTS,
        WORKERS,
        STALLED,
        SCHEDULERS,
        SCHEDULER_NEXT,
        SCHEDULERS_OVERDUE,
        RECENT_WAIT,
        RECENT_PROCESSING,
        RECENT_JOBS,
        QUEUES,
        CAP_REACHED,
        SKIPPED,
    ),
    target="url",
    alerts=(
        DefaultAlert(
            key="failed_jobs",
            name="JobsFailing",
            query="increase(bullmq_jobs_failed_total{$sel}[15m])",
            op=">",
            threshold=5,
            unit="count",
            for_=300.0,
            severity="warning",
            summary="queue {{ $labels.queue }} ({{ $labels.check }}): {value} jobs failed "
            "in 15 minutes (warn above {threshold})",
            description="Jobs keep failing: their work is not done unless retried.",
            steps=(
                "Read the failed jobs' failedReason (Bull Board, or Queue.getFailed() in a shell).",
                "Fix the cause, then retry the failed jobs.",
            ),
            reads="bullmq_jobs_failed_total{$sel}",
            test=(
                # Just past the threshold: one more job than 5 is 20 % past it, and a
                # threshold moved 5 % would still fire (the mutation test).
                TestInput(
                    'bullmq_jobs_failed_total{$sel,prefix="bull",queue="q"}',
                    "jump",
                    "threshold",
                    "threshold * 1.01 + 0.01",
                ),
            ),
            labels=(("prefix", "bull"), ("queue", "q")),
            scope="queue",
            settle=900.0,
        ),
        DefaultAlert(
            key="backlog",
            name="Backlog",
            query='bullmq_queue_jobs{$sel,state="waiting"}',
            op=">",
            threshold=1000,
            unit="count",
            for_=900.0,
            severity="warning",
            summary="queue {{ $labels.queue }} ({{ $labels.check }}) has {value} jobs "
            "waiting (warn above {threshold})",
            description="Work arrives faster than the workers take it, or no worker runs.",
            steps=(
                "Check the workers are running and not stuck (active count, their log).",
                "Scale the workers or find what slowed them (a slow dependency).",
            ),
            reads="bullmq_queue_paused{$sel}",
            test=(
                TestInput(
                    'bullmq_queue_jobs{$sel,prefix="bull",queue="q",state="waiting"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("prefix", "bull"), ("queue", "q"), ("state", "waiting")),
            scope="queue",
        ),
        DefaultAlert(
            key="oldest_waiting_age",
            name="OldestWaiting",
            query="time() - bullmq_queue_oldest_waiting_job_timestamp_seconds{$sel}",
            op=">",
            threshold=900.0,
            unit="seconds",
            for_=300.0,
            severity="warning",
            summary="the oldest waiting job of {{ $labels.queue }} ({{ $labels.check }}) "
            "has waited {value} (warn above {threshold})",
            description="Jobs wait too long before a worker picks them up.",
            steps=(
                "Check the workers of this queue are running and consuming.",
                "Check the queue is not paused and the workers' concurrency.",
            ),
            # The oldest-waiting series goes when the queue drains: watch the queue's
            # always-present series instead.
            reads="bullmq_queue_paused{$sel}",
            test=(
                TestInput(
                    'bullmq_queue_oldest_waiting_job_timestamp_seconds{$sel,prefix="bull",'
                    'queue="q"}',
                    "age",
                    "threshold",
                    "threshold * 1.01",
                ),
            ),
            labels=(("prefix", "bull"), ("queue", "q")),
            scope="queue",
        ),
        DefaultAlert(
            key="paused",
            name="Paused",
            query="bullmq_queue_paused{$sel}",
            op=">",
            threshold=0,
            unit="bool",
            for_=900.0,
            severity="warning",
            summary="queue {{ $labels.queue }} ({{ $labels.check }}) is paused",
            description="A paused queue takes no work; jobs pile up as waiting.",
            steps=("Find who paused it (deploy, maintenance) and resume it when done.",),
            reads="bullmq_queue_paused{$sel}",
            test=(
                TestInput(
                    'bullmq_queue_paused{$sel,prefix="bull",queue="q"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("prefix", "bull"), ("queue", "q")),
            scope="queue",
        ),
        _per_queue(
            key="no_workers",
            name="NoWorkers",
            query="(bullmq_queue_workers{$sel} and on (check, prefix, queue) "
            'sum by (check, prefix, queue) (bullmq_queue_jobs{$sel,state=~"waiting|prioritized"})'
            " > 0)",
            op="==",
            threshold=0,
            severity="critical",
            summary="queue {{ $labels.queue }} ({{ $labels.check }}) has work waiting and no "
            "worker connected",
            description="Nothing consumes the queue: its jobs wait until a worker starts.",
            steps=(
                "Check the worker process or deployment of this queue (crashed, scaled to 0, "
                "connected to another Redis or prefix).",
                "Start it; the waiting count falls once it consumes.",
            ),
            test=(
                TestInput(
                    'bullmq_queue_workers{$sel,prefix="bull",queue="q"}',
                    "gauge",
                    "threshold + 1",
                    "threshold",
                ),
                TestInput(
                    'bullmq_queue_jobs{$sel,prefix="bull",queue="q",state="waiting"}',
                    "gauge",
                    "5",
                    "5",
                ),
            ),
        ),
        _per_queue(
            key="stalled",
            name="JobsStalled",
            query="bullmq_queue_stalled_jobs{$sel}",
            op=">",
            threshold=0,
            severity="warning",
            summary="{value} active jobs of {{ $labels.queue }} ({{ $labels.check }}) lost "
            "their lock (stalled)",
            description="A worker died or hung mid-job; BullMQ retries them only while a "
            "worker runs its stalled-job check.",
            steps=("Find the worker that held the jobs (its log, restarts, OOM kills).",),
            test=(
                TestInput(
                    'bullmq_queue_stalled_jobs{$sel,prefix="bull",queue="q"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
        ),
        _per_queue(
            key="schedulers_overdue",
            name="SchedulersOverdue",
            query="bullmq_queue_schedulers_overdue{$sel}",
            op=">",
            threshold=0,
            severity="warning",
            summary="{value} schedules of {{ $labels.queue }} ({{ $labels.check }}) are "
            "overdue (not advancing)",
            description="Repeatable jobs are past their next run: no worker picks up the "
            "schedule, so the periodic work is not done.",
            steps=("Check the queue's workers run; list its job schedulers and their next run.",),
            test=(
                TestInput(
                    'bullmq_queue_schedulers_overdue{$sel,prefix="bull",queue="q"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
        ),
        _per_queue(
            key="missing_queue",
            name="QueueMissing",
            query="bullmq_queue_exists{$sel}",
            op="==",
            threshold=0,
            severity="warning",
            summary="listed queue {{ $labels.queue }} ({{ $labels.check }}) does not exist",
            description="The check lists this queue but Redis has no trace of it: wrong name, "
            "prefix or database, or the queue was obliterated.",
            steps=("Compare the queue name and prefix with the producer's configuration.",),
            test=(
                TestInput(
                    'bullmq_queue_exists{$sel,prefix="bull",queue="q"}',
                    "gauge",
                    "threshold + 1",
                    "threshold",
                ),
            ),
        ),
    ),
    panels=(
        Panel("Workers", 'bullmq_queue_workers{check=~"$check"}', "count", "{{queue}}"),
        Panel(
            "Queue jobs by state",
            'sum by (check, queue, state) (bullmq_queue_jobs{check=~"$check"})',
            "count",
            "{{queue}} {{state}}",
        ),
        Panel(
            "Oldest waiting job age",
            'time() - bullmq_queue_oldest_waiting_job_timestamp_seconds{check=~"$check"}',
            "seconds",
            "{{queue}}",
        ),
    ),
)
