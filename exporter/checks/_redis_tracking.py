"""Which items a check read still hold what it read: Redis client-side caching.

A connection in tracking mode (``CLIENT TRACKING ON``, Redis >= 6) makes the server
remember every key it reads; when such a key is modified, deleted, expired or evicted, or
the database flushed, the server sends an invalidation naming it, once (the key is
forgotten until it is read again). With RESP2 the invalidations go to another connection
subscribed to ``__redis__:invalidate`` (``REDIRECT <its client id>``). This module keeps
that second connection and turns the invalidations into items (for the bullmq kind: the
queues whose keys they name) that must be read again; an item read while tracking held
and named by no invalidation since is unchanged.

The reading connection tracks opt-in (``OPTIN``): only the command right after a
``CLIENT CACHING YES`` has its keys remembered, so the check chooses them and nothing else
it reads fills the server's table. Only reads that name their keys are tracked (plain
commands, ``MULTI``/``EXEC``, scripts' declared ``KEYS``; not keys a script builds from
``ARGV``, and on Redis 7.0 each command inside a script re-tracks all its declared keys: a
script declaring thousands is quadratic), so the bullmq kind sends one multi-key
``EXISTS`` of the keys its script reads right before it, in the same round trip.

Why it is exact, not a guess:

* Before each scrape's reads, :meth:`ChangeTracking.sync` sends ``PING`` on the reading
  connection (alive now means alive since it was set up), then on the subscribed one, and
  reads up to that answer. The server sends an invalidation while
  it runs the write, so every write it ran before that ``PING`` is in what was read; a
  write it runs later is reported by the next scrape's sync (as any write landing just
  after a read is), even when its invalidation came in the same read as the ``PONG``
  (``RawRedis.exchange`` keeps what it parsed past the reply it waited for).
* Tracking is a property of one connection. When the reading connection was redialled
  (``RawRedis.dials`` moved), the subscribed one was lost, or an invalidation could not be
  read, every item counts as changed and tracking is set up again; both connections must
  reach the same server (the ``run_id`` of ``INFO server`` is compared: with Sentinel,
  two dials around a failover may not).
* A server or ACL that refuses any step (Redis < 6, ``CLIENT TRACKING`` or ``SUBSCRIBE``
  denied) leaves every item read on every scrape; the refusal is retried after
  ``RETRY`` seconds.
* Redis drops a closed connection's entries from its tracking table only when each key
  changes; keys that never change keep one entry per connection that ever tracked them.
  Past ``MAX_TRACKED_CONNECTIONS`` reading connections on one server, tracking stays off.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from redis import exceptions as rexc

from exporter.checks._redis_conn import RawRedis, RedisConnOptions, first_line, transient
from exporter.logs import event

CHANNEL = "__redis__:invalidate"
RETRY = 600.0  # seconds before a refused setup is tried again
# Redis forgets a closed connection's tracked keys only when each key changes (lazily),
# so every new reading connection leaves about 50 bytes per tracked key that stays the
# same in the server's memory. Past this many reading connections tracked on one server
# (one run_id: a restart empties the table), tracking stays off for the check's life.
MAX_TRACKED_CONNECTIONS = 10
# What an ACL user needs for tracking besides the reads (Redis 7 gives new users no
# channel at all).
NEEDS = f"+client|id +client|tracking +client|caching +subscribe +ping +info &{CHANNEL}"
_RUN_ID = re.compile(r"^run_id:(\w+)", re.MULTILINE)


class TrackingRefused(Exception):
    """The server or the ACL refused a step of setting up client tracking."""


class ChangeTracking:
    """The invalidations of one reading connection, turned into items to read again.

    ``items_of`` names the items a key belongs to (none for keys of nothing the check
    reads). A check calls :meth:`sync` before its reads and reads every item for which
    :meth:`unchanged` is false; before reading an item it has the server track the keys
    :meth:`lapsed` names (all of them when None) and calls :meth:`track`;
    :meth:`mark_read` records an item read on the tracked connection, :meth:`changed` one
    whose read did not count (a failed scrape); :meth:`settle` after the reads drops
    everything when that connection was redialled meanwhile (its reads were not
    tracked).
    """

    def __init__(
        self,
        options: RedisConnOptions,
        items_of: Callable[[str], Iterable[Hashable]],
        check: str,
    ) -> None:
        self._subscriber = RawRedis(options)
        self._items_of = items_of
        self._check = check
        self._unchanged: set[Hashable] = set()  # read while tracked, not reported since
        # Items whose keys the server tracks, but for the keys named by invalidations
        # since (the server forgets a key once it reports it): only those need tracking
        # again when the item is read.
        self._tracked: set[Hashable] = set()
        self._lapsed: dict[Hashable, set[str]] = {}
        self._dial: int | None = None  # the reading connection's dial that is tracked
        self._refused_at: float | None = None
        self._refusal: str | None = None
        # The server (run_id) and its reading connections (dial numbers) tracked so far.
        self._server: str | None = None
        self._connections: set[int] = set()
        self._worn_out = False

    @property
    def active(self) -> bool:
        """Whether this scrape's reads are tracked (after :meth:`sync`)."""
        return self._dial is not None

    async def sync(self, reading: RawRedis) -> bool:
        """Bring in every invalidation sent so far; set tracking up when it is not (then
        every item counts as changed). False: tracking is off (refused), read everything.

        Connection errors of the reading connection propagate (the scrape fails as it
        would on its first read); the subscribed connection's only turn tracking off
        until the next sync.
        """
        loop = asyncio.get_running_loop()
        if self._worn_out:
            return False
        if self._refused_at is not None and loop.time() - self._refused_at < RETRY:
            return False
        if self._dial is not None and self._subscriber.connected:
            # Both connections alive now means alive since tracking was set up: a closed
            # connection stays closed. A dead reading connection is redialled here, which
            # moves its dial count: the server forgot what it tracked.
            await reading.execute([("PING",)])
            if reading.dials == self._dial:
                try:
                    replies = await self._subscriber.exchange([("PING",)], _is_pong)
                except rexc.RedisError:
                    pass  # the subscribed connection is gone: set it up again
                else:
                    if not isinstance(replies[-1], Exception):
                        self._take(replies)
                        return True
                    await self._subscriber.close()
                    self.reset()
                    if not transient(replies[-1]):
                        self._refuse(first_line(replies[-1]))
                    return False
        return await self._set_up(reading)

    def unchanged(self, item: Hashable) -> bool:
        """Read while tracking held, and named by no invalidation since."""
        return item in self._unchanged

    def lapsed(self, item: Hashable) -> set[str] | None:
        """The item's keys the server stopped tracking (reported changed since they were
        tracked); None: all of them, the item was never tracked since tracking was set up."""
        if item not in self._tracked:
            return None
        return self._lapsed.get(item, set())

    def track(self, item: Hashable) -> None:
        """The item's keys (``lapsed``) are being read on the tracked connection now."""
        if self._dial is not None:
            self._tracked.add(item)
            self._lapsed.pop(item, None)

    def mark_read(self, item: Hashable) -> None:
        if self._dial is not None:
            self._unchanged.add(item)

    def changed(self, item: Hashable) -> None:
        """Count the item as changed (read it next time), as an invalidation would."""
        self._unchanged.discard(item)

    def settle(self, reading: RawRedis) -> None:
        """After the reads: when the reading connection was redialled during them, they
        were not tracked, so nothing read counts as unchanged."""
        if self._dial is not None and reading.dials != self._dial:
            self.reset()

    def forget(self, item: Hashable) -> None:
        """Nothing is kept about ``item`` any more (the check no longer reads it)."""
        self._unchanged.discard(item)
        self._tracked.discard(item)
        self._lapsed.pop(item, None)

    async def close(self) -> None:
        await self._subscriber.close()

    def reset(self) -> None:
        """Count every item as changed and set tracking up again on the next sync."""
        self._forget_all()
        self._dial = None

    def _forget_all(self) -> None:
        """Every item changed (tracking itself stays set up)."""
        self._unchanged.clear()
        self._tracked.clear()
        self._lapsed.clear()

    def _take(self, replies: list[Any]) -> None:
        for reply in replies:
            if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == "message"):
                continue
            keys = reply[2]
            if keys is None:  # FLUSHALL / FLUSHDB: every key
                self._forget_all()
                continue
            unchanged, tracked, lapsed = self._unchanged, self._tracked, self._lapsed
            for key in [keys] if isinstance(keys, str) else keys:
                for item in self._items_of(key):
                    unchanged.discard(item)
                    if item in tracked:
                        if item in lapsed:
                            lapsed[item].add(key)
                        else:
                            lapsed[item] = {key}

    async def _set_up(self, reading: RawRedis) -> bool:
        self.reset()
        await self._subscriber.close()
        try:
            started = await self._start(reading)
        except TrackingRefused as exc:
            self._refuse(str(exc))
            started = False
        if not started:
            await self._subscriber.close()
        return started

    async def _start(self, reading: RawRedis) -> bool:
        """Subscribe, then turn tracking on for ``reading``, redirected to the subscriber.
        False: not now (every item is read this scrape); TrackingRefused: not allowed."""
        subscribing = [("CLIENT", "ID"), ("INFO", "server"), ("SUBSCRIBE", CHANNEL)]
        try:
            subscribed = await self._subscriber.exchange(
                subscribing, lambda reply: isinstance(reply, Exception) or _is_subscribed(reply)
            )
            client_id, info, _ = _replies(subscribed, subscribing)
        except rexc.RedisError:
            return False  # no second connection now (maxclients?): try next scrape
        tracking = [("CLIENT", "TRACKING", "OFF"),
                    ("CLIENT", "TRACKING", "ON", "REDIRECT", str(client_id), "OPTIN"),
                    ("INFO", "server")]  # fmt: skip
        _, _, reading_info = _replies(await reading.execute(tracking), tracking)
        server = _run_id(info)
        if server != _run_id(reading_info):
            return False  # two dials reached two servers (a failover between them)
        if server != self._server:
            self._server, self._connections = server, set()
        self._connections.add(reading.dials)
        if len(self._connections) > MAX_TRACKED_CONNECTIONS:
            # Nothing was tracked on this connection yet (OPTIN): stop before it is.
            self._worn_out = True
            event(
                logging.WARNING,
                "bullmq change tracking turned off, reading every queue on every scrape",
                check=self._check,
                reason=f"the reading connection was dialled {len(self._connections)} times "
                "on this Redis server, and Redis keeps what each closed connection tracked "
                "until the keys change; see why the connection drops (scrape timeouts?), or "
                "set track_changes: false",
            )
            return False
        self._dial = reading.dials
        self._refused_at = self._refusal = None
        return True

    def _refuse(self, why: str) -> None:
        self._refused_at = asyncio.get_running_loop().time()
        if why != self._refusal:
            self._refusal = why
            event(
                logging.INFO,
                "bullmq change tracking refused, reading every queue on every scrape",
                check=self._check,
                reason=why,
                needs=NEEDS,
            )


def _replies(replies: list[Any], commands: Sequence[tuple[str, ...]]) -> list[Any]:
    """One reply per command; an error reply is a refusal, named by its command."""
    for command, reply in zip(commands, replies, strict=False):
        if transient(reply):
            raise reply  # not a refusal: set up again on the next scrape
        if isinstance(reply, Exception):
            what = " ".join(command[:2] if command[0] == "CLIENT" else command)
            raise TrackingRefused(f"{what}: {first_line(reply)}")
    if len(replies) < len(commands):
        raise TrackingRefused("unexpected reply")
    return replies[: len(commands)]


def _is_pong(reply: Any) -> bool:
    # In RESP2's subscribed mode PING answers ["pong", ""]; an error ends the read too.
    return isinstance(reply, Exception) or (isinstance(reply, list) and reply[:1] == ["pong"])


def _is_subscribed(reply: Any) -> bool:
    return isinstance(reply, list) and reply[:1] == ["subscribe"]


def _run_id(info: Any) -> str | None:
    match = _RUN_ID.search(info) if isinstance(info, str) else None
    return match[1] if match else None
