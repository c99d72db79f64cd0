"""``bullmq``: BullMQ queue state read straight from Redis, counted as getJobCounts() counts.

Per queue ``<prefix>:<queue>``, BullMQ keeps ``wait``, ``paused`` and ``active`` lists,
``delayed``, ``prioritized``, ``waiting-children``, ``completed`` and ``failed`` sorted sets,
a ``meta`` hash (``paused`` field), an ``events`` stream and, when workers record metrics,
``metrics:completed`` / ``metrics:failed`` hashes. Its getCounts script answers LLEN for
the lists (less one for a legacy ``0:`` delay marker at the tail of ``wait``/``paused``,
which it also RPOPs) and ZCARD for the sets. This module reads the same keys with plain
read commands only, in one MULTI/EXEC per batch of queues (one round trip), so the numbers
are the script's without its side effect, and consistent within a batch.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import exceptions as rexc

from exporter.checks._redis_conn import (
    CommandTemplate,
    Key,
    RawRedis,
    RedisConnOptions,
    first_line,
    pack_text,
    parse_conn,
    reason,
)
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.fields import Reader, describe
from exporter.logs import event
from exporter.samples import Family, Sink

STATES = (
    "waiting", "paused", "active", "delayed", "prioritized", "waiting-children",
    "completed", "failed",
)
COUNTER_SOURCES = ("auto", "metrics", "events", "off")
DEFAULT_MAX_QUEUES = 1000
DEFAULT_DISCOVERY_INTERVAL = 60.0

BATCH_QUEUES = 250  # queues per MULTI/EXEC round trip
SCAN_COUNT = 2000  # keys per SCAN step: few round trips, short server work per step
EVENTS_PAGE = 1000  # stream entries per XRANGE
EVENTS_MAX_PAGES = 20  # per queue per scrape; the rest is read on the next scrape
TIMESTAMP_BATCH = 1000

JOBS = Family(
    "bullmq_queue_jobs", "gauge",
    "Jobs in each state, as BullMQ's Queue.getJobCounts() counts them.",
    ("prefix", "queue", "state"),
)
PAUSED = Family(
    "bullmq_queue_paused", "gauge", "1 when the queue is paused (meta.paused), else 0.",
    ("prefix", "queue"),
)
OLDEST_WAITING = Family(
    "bullmq_queue_oldest_waiting_job_timestamp_seconds", "gauge",
    "Creation time of the job next in line in the wait list; absent when nothing waits.",
    ("prefix", "queue"),
    past_time=True,  # a job timestamp of 1e24 s must not look fresh forever
)
COMPLETED = Family(
    "bullmq_jobs_completed_total", "counter",
    "Jobs completed, including those removed on completion.",
    ("prefix", "queue"),
)
FAILED = Family(
    "bullmq_jobs_failed_total", "counter",
    "Jobs failed with no retries left, including those removed on failure.",
    ("prefix", "queue"),
)
QUEUES = Family(
    "bullmq_queues", "gauge", "Queues reported under the prefix by this scrape.", ("prefix",)
)
CAP_REACHED = Family(
    "bullmq_queues_cap_reached", "gauge",
    "1 when discovery found more queues than max_queues and reported only the first ones.",
    ("prefix",),
)
SKIPPED = Family(
    "bullmq_queues_skipped", "gauge",
    "Queues left out of this scrape because a key is unreadable (wrong type); see the logs.",
    ("prefix",),
)

_FINISHED = ("completed", "failed")
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


@dataclass
class _Read:
    """What one scrape learned about one queue."""

    prefix: str
    queue: str
    exists: bool  # False: a listed queue with no meta hash and no id key (yet)
    counts: dict[str, int]
    paused: bool
    next_job: str | None
    entries: list[Any]  # events stream entries: [id, [field, value, ...]]
    metrics: dict[str, int | None]
    events_full: bool = False
    oldest: float | None = None


@dataclass
class _Discovery:
    at: float
    queues: tuple[str, ...]
    capped: bool


class _Skip(Exception):
    """A queue's keys could not be read; the message says which key and why."""


# Every count of one queue, in the order _parse_queue reads them; keys follow the base
# ``<prefix>:<queue>:``. The last two only when counters may come from worker metrics.
_QUEUE_READS: tuple[tuple[str, ...], ...] = (
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
    ("HGET", Key("metrics:completed"), "count"),
    ("HGET", Key("metrics:failed"), "count"),
)
_READS = CommandTemplate(_QUEUE_READS[:12])
_READS_WITH_METRICS = CommandTemplate(_QUEUE_READS)
# The key each reply of a queue's chunk read (its first argument), for a skip's reason;
# the events stream read, when there is one, comes last.
_KEYS = tuple(str(command[1]) for command in _QUEUE_READS)
_REPLY_KEYS = (*_KEYS[:12], "events")
_REPLY_KEYS_WITH_METRICS = (*_KEYS, "events")


class BullmqProbe(BaseProbe[BullmqOptions]):
    def __init__(self, spec: CheckSpec[BullmqOptions]) -> None:
        super().__init__(spec)
        self._redis = RawRedis(spec.options.conn)
        self._discovered: dict[str, _Discovery] = {}
        self._states: dict[tuple[str, str], _QueueState] = {}
        self._logged: dict[tuple[str, str], str] = {}

    async def close(self) -> None:
        await self._redis.close()

    async def collect(self, out: Sink) -> None:
        try:
            await self._collect(out)
        except rexc.RedisError as exc:
            raise CheckFailed(reason(exc, self.options.conn.where)) from None

    async def _collect(self, out: Sink) -> None:
        options = self.options
        targets: list[tuple[str, str]] = []
        capped: dict[str, bool] = {}
        for prefix in options.prefixes:
            if options.queues:
                names, capped[prefix] = options.queues, False
            else:
                names, capped[prefix] = await self._discover(prefix)
            targets.extend((prefix, name) for name in names)

        reads: list[_Read] = []
        skipped: dict[str, int] = dict.fromkeys(options.prefixes, 0)
        problems: list[str] = []
        for start in range(0, len(targets), BATCH_QUEUES):
            batch = targets[start : start + BATCH_QUEUES]
            for target, outcome in zip(batch, await self._read_batch(batch), strict=True):
                prefix, queue = target
                if isinstance(outcome, _Read):
                    reads.append(outcome)
                    if outcome.exists:
                        self._logged.pop(target, None)
                    else:
                        self._log_once(target, "no keys yet (not created, or misspelled?)",
                                       "bullmq listed queue not found", logging.INFO)
                elif outcome is None:
                    continue  # a discovered queue deleted since discovery
                else:
                    skipped[prefix] += 1
                    self._log_once(target, str(outcome), "bullmq queue skipped", _LOG)
                    if options.queues:
                        problems.append(f"{prefix}:{queue}: {outcome}")
        await self._follow_full_streams(reads)
        await self._read_oldest(reads)

        for read in reads:
            self._write_queue(out, read)
        for prefix in options.prefixes:
            out.add(QUEUES, sum(1 for r in reads if r.prefix == prefix), prefix=prefix)
            out.add(CAP_REACHED, 1 if capped[prefix] else 0, prefix=prefix)
            out.add(SKIPPED, skipped[prefix], prefix=prefix)
        # Forget queues that are gone, so memory follows the live queues.
        seen = {(r.prefix, r.queue) for r in reads}
        for key in [k for k in self._states if k not in seen]:
            del self._states[key]
        targeted = set(targets)
        for key in [k for k in self._logged if k not in targeted]:
            del self._logged[key]

        if problems:
            raise CheckFailed("; ".join(problems))

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
            event(_LOG, "bullmq queue discovery capped", check=self.spec.name, prefix=prefix,
                  found=len(names), max_queues=self.options.max_queues)
            names = names[: self.options.max_queues]
        self._discovered[prefix] = _Discovery(now, names, capped)
        return names, capped

    async def _read_batch(self, batch: Sequence[tuple[str, str]]) -> list[_Read | _Skip | None]:
        """One MULTI/EXEC for the batch: every count of every queue, consistent per batch."""
        metrics = self.options.counters in ("auto", "metrics")
        template = _READS_WITH_METRICS if metrics else _READS
        parts = [pack_text([("MULTI",)])]
        count = 2  # MULTI, EXEC
        modes: list[str] = []
        for prefix, queue in batch:
            base = f"{prefix}:{queue}:"
            parts.append(template.render(base))
            count += template.count
            mode = self._events_mode((prefix, queue))
            if mode == "position":
                parts.append(pack_text([("XREVRANGE", base + "events", "+", "-", "COUNT", 1)]))
                count += 1
            elif mode == "follow":
                state = self._states[(prefix, queue)]
                parts.append(pack_text([(
                    "XRANGE", base + "events", _after(state.stream_id or "0-0"), "+",
                    "COUNT", EVENTS_PAGE,
                )]))
                count += 1
            modes.append(mode)
        parts.append(pack_text([("EXEC",)]))
        payload = "".join(parts).encode("utf-8", "surrogateescape")
        replies = await self._redis.execute_packed(payload, count)
        # Queueing errors (ACL denials, unknown commands) make EXEC fail: report the first.
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        results: list[Any] = replies[-1]
        if results is None:
            raise rexc.ResponseError("EXEC was aborted")
        outcomes: list[_Read | _Skip | None] = []
        position = 0
        for (prefix, queue), mode in zip(batch, modes, strict=True):
            size = template.count + (0 if mode == "none" else 1)
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

    def _parse_queue(
        self, prefix: str, queue: str, replies: list[Any], mode: str
    ) -> _Read | None:
        metrics_read = self.options.counters in ("auto", "metrics")
        names = _REPLY_KEYS_WITH_METRICS if metrics_read else _REPLY_KEYS
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception):
                key = f"{prefix}:{queue}:{names[index] if index < len(names) else '?'}"
                raise _Skip(f"{key}: {first_line(reply)}")
        exists = replies[0] > 0
        if not exists and not self.options.queues:
            return None  # neither meta nor id: obliterated since discovery
        wait_tail: list[str] = replies[3]
        paused_tail: list[str] = replies[5]
        # The v5 layout moves a paused queue's jobs to the paused list: they wait there.
        next_job = _next_job(wait_tail) or _next_job(paused_tail)
        counts = {
            "waiting": _list_count(replies[2], wait_tail),
            "paused": _list_count(replies[4], paused_tail),
            "active": replies[6],
            "delayed": replies[7],
            "prioritized": replies[8],
            "waiting-children": replies[9],
            "completed": replies[10],
            "failed": replies[11],
        }
        position = 12
        metrics: dict[str, int | None] = dict.fromkeys(_FINISHED)
        if metrics_read:
            metrics["completed"] = _int_or_none(replies[12])
            metrics["failed"] = _int_or_none(replies[13])
            position = 14
        entries: list[Any] = []
        if mode != "none":
            entries = replies[position] or []
        # Not setdefault: its default would build a fresh state per queue on every scrape.
        state = self._states.get((prefix, queue))
        if state is None:
            state = self._states[(prefix, queue)] = _QueueState()
        if mode == "position":
            state.stream_id = entries[0][0] if entries else "0-0"
            entries = []
        return _Read(
            prefix=prefix, queue=queue, exists=exists, counts=counts,
            paused=replies[1] is not None,
            next_job=next_job, entries=entries, metrics=metrics,
            events_full=mode == "follow" and len(entries) == EVENTS_PAGE,
        )

    async def _follow_full_streams(self, reads: list[_Read]) -> None:
        """Read further pages of busy event streams, a bounded number per scrape."""
        pending = [r for r in reads if r.events_full]
        for _ in range(EVENTS_MAX_PAGES - 1):
            if not pending:
                return
            pages = await self._redis.execute([
                ("XRANGE", f"{r.prefix}:{r.queue}:events", _after(r.entries[-1][0]), "+",
                 "COUNT", EVENTS_PAGE)
                for r in pending
            ])
            still: list[_Read] = []
            for read, page in zip(pending, pages, strict=True):
                if isinstance(page, Exception) or not page:
                    continue
                read.entries.extend(page)
                if len(page) == EVENTS_PAGE:
                    still.append(read)
            pending = still

    async def _read_oldest(self, reads: list[_Read]) -> None:
        """Second round trip: the creation time of each queue's next waiting job."""
        waiting = [r for r in reads if r.next_job is not None]
        for start in range(0, len(waiting), TIMESTAMP_BATCH):
            chunk = waiting[start : start + TIMESTAMP_BATCH]
            replies = await self._redis.execute([
                ("HGET", f"{r.prefix}:{r.queue}:{r.next_job}", "timestamp") for r in chunk
            ])
            for read, raw in zip(chunk, replies, strict=True):
                millis = None if isinstance(raw, Exception) else _int_or_none(raw)
                # A job taken by a worker meanwhile keeps its hash; a removed one has none.
                if millis is not None and millis > 0:
                    read.oldest = millis / 1000.0

    def _write_queue(self, out: Sink, read: _Read) -> None:
        labels = {"prefix": read.prefix, "queue": read.queue}
        for name in STATES:
            out.add(JOBS, read.counts[name], state=name, **labels)
        out.add(PAUSED, 1 if read.paused else 0, **labels)
        if read.oldest is not None:
            out.add(OLDEST_WAITING, read.oldest, **labels)
        if self.options.counters == "off":
            return
        state = self._states[(read.prefix, read.queue)]
        finished = dict.fromkeys(_FINISHED, 0)
        for entry_id, fields in read.entries:
            # Entries are [id, [field, value, ...]]; BullMQ writes "event" first.
            kind = _field(fields, "event")
            if kind in finished:
                finished[kind] += 1
            state.stream_id = entry_id
        for name, family in (("completed", COMPLETED), ("failed", FAILED)):
            counter = state.counters[name]
            counter.events += finished[name]
            _advance(counter, read.metrics[name], self.options.counters)
            out.add(family, counter.value, **labels)

    def _log_once(self, target: tuple[str, str], why: str, msg: str, level: int) -> None:
        """Log a queue's problem when it starts or changes, not on every scrape."""
        if self._logged.get(target) != why:
            self._logged[target] = why
            event(level, msg, check=self.spec.name, prefix=target[0], queue=target[1],
                  reason=why)


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


KIND = Kind(
    name="bullmq",
    summary="BullMQ queues: jobs per state as getJobCounts(), paused, queue age, "
    "lifetime completed/failed.",
    parse=parse,
    probe=BullmqProbe,
    families=(JOBS, PAUSED, OLDEST_WAITING, COMPLETED, FAILED, QUEUES, CAP_REACHED, SKIPPED),
    target="url",
)
