"""``redis``: PING round trip and server health from INFO (memory, clients, persistence, role).

Works for Redis and Valkey; sends only ``PING`` and ``INFO``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.alerting import DefaultAlert, Panel, TestInput, down
from exporter.checks._redis_conn import RedisConnOptions, make_client, parse_conn, reason
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.fields import Reader
from exporter.samples import Family, Sink

if TYPE_CHECKING:
    from redis.asyncio import Redis

PING_SECONDS = Family(
    "redis_ping_duration_seconds", "gauge", "Round trip of one PING on an open connection."
)
MEMORY_USED = Family("redis_memory_used_bytes", "gauge", "Memory used by Redis (used_memory).")
MEMORY_MAX = Family(
    "redis_memory_max_bytes", "gauge", "The maxmemory setting in bytes; 0 means no limit."
)
CONNECTED_CLIENTS = Family(
    "redis_connected_clients", "gauge", "Client connections, replicas excluded."
)
BLOCKED_CLIENTS = Family(
    "redis_blocked_clients", "gauge", "Clients waiting in a blocking call (BLMOVE, XREAD...)."
)
REJECTED_CONNECTIONS = Family(
    "redis_rejected_connections_total", "counter", "Connections refused because of maxclients."
)
EVICTED_KEYS = Family(
    "redis_evicted_keys_total", "counter", "Keys evicted because of the maxmemory limit."
)
RDB_LAST_BGSAVE_SUCCESS = Family(
    "redis_rdb_last_bgsave_success", "gauge", "1 when the last RDB background save succeeded."
)
RDB_LAST_SAVE_TIME = Family(
    "redis_rdb_last_save_timestamp_seconds",
    "gauge",
    "Unix time of the last successful RDB save.",
    past_time=True,
)
RDB_CHANGES = Family(
    "redis_rdb_changes_since_last_save",
    "gauge",
    "Writes since the last successful RDB save: what a restart without AOF would lose.",
)
AOF_ENABLED = Family("redis_aof_enabled", "gauge", "1 when the append-only file is enabled.")
AOF_LAST_WRITE_SUCCESS = Family(
    "redis_aof_last_write_success", "gauge", "1 when the last write to the AOF succeeded."
)
AOF_CURRENT_SIZE = Family(
    "redis_aof_current_size_bytes", "gauge", "Size of the append-only file now (AOF on only)."
)
AOF_BASE_SIZE = Family(
    "redis_aof_base_size_bytes",
    "gauge",
    "Size of the AOF at the last rewrite or start (AOF on only); auto-aof-rewrite-percentage "
    "grows from here.",
)
AOF_DELAYED_FSYNC = Family(
    "redis_aof_delayed_fsync_total",
    "counter",
    "Times an appendfsync everysec fsync was still running after 2 s (the disk lags).",
)
MAXMEMORY_POLICY = Family(
    "redis_maxmemory_policy_info",
    "gauge",
    "The maxmemory-policy (noeviction, allkeys-lru...); always 1.",
    ("policy",),
)
AOF_LAST_REWRITE_SUCCESS = Family(
    "redis_aof_last_rewrite_success", "gauge", "1 when the last AOF rewrite succeeded."
)
ROLE_INFO = Family(
    "redis_role_info",
    "gauge",
    "Replication role of the server (master or replica); always 1.",
    ("role",),
)
SERVER_INFO = Family(
    "redis_server_info",
    "gauge",
    "Server implementation (redis or valkey) and version; always 1.",
    ("server", "version"),
)
UPTIME = Family("redis_uptime_seconds", "gauge", "Seconds since the server started.")

# (family, INFO field): plain numbers copied as they are.
_NUMBERS = (
    (MEMORY_USED, "used_memory"),
    (MEMORY_MAX, "maxmemory"),
    (CONNECTED_CLIENTS, "connected_clients"),
    (BLOCKED_CLIENTS, "blocked_clients"),
    (REJECTED_CONNECTIONS, "rejected_connections"),
    (EVICTED_KEYS, "evicted_keys"),
    (RDB_LAST_SAVE_TIME, "rdb_last_save_time"),
    (RDB_CHANGES, "rdb_changes_since_last_save"),
    (AOF_ENABLED, "aof_enabled"),
    (AOF_CURRENT_SIZE, "aof_current_size"),
    (AOF_BASE_SIZE, "aof_base_size"),
    (AOF_DELAYED_FSYNC, "aof_delayed_fsync"),
    (UPTIME, "uptime_in_seconds"),
)
# (family, INFO field): 1 when the field says "ok".
_STATUSES = (
    (RDB_LAST_BGSAVE_SUCCESS, "rdb_last_bgsave_status"),
    (AOF_LAST_WRITE_SUCCESS, "aof_last_write_status"),
    (AOF_LAST_REWRITE_SUCCESS, "aof_last_bgrewrite_status"),
)


@dataclass(frozen=True)
class RedisOptions:
    conn: RedisConnOptions


def parse(reader: Reader) -> RedisOptions:
    return RedisOptions(conn=parse_conn(reader))


class RedisProbe(BaseProbe[RedisOptions]):
    def __init__(self, spec: CheckSpec[RedisOptions]) -> None:
        super().__init__(spec)
        self._client: Redis | None = None

    async def collect(self, out: Sink) -> None:
        from redis import exceptions as rexc

        if self._client is None:
            self._client = make_client(self.options.conn, self.spec.timeout)
        where = self.options.conn.where
        step = "PING"
        try:
            # The first command may have to connect (and authenticate): time the second.
            await self._client.ping()
            started = time.perf_counter()
            pong = await self._client.ping()
            ping = time.perf_counter() - started
            step = "INFO"
            info = await self._client.info()
        except rexc.RedisError as exc:
            raise CheckFailed(reason(exc, where)) from None
        except (TypeError, ValueError, AttributeError, IndexError):
            # redis-py's reply callbacks assume the documented reply type.
            raise CheckFailed(f"redis {where}: unexpected reply to {step}") from None
        if pong is not True:
            raise CheckFailed(f"redis {where}: PING did not answer PONG")
        if not isinstance(info, Mapping):
            raise CheckFailed(f"redis {where}: unexpected reply to INFO")
        out.add(PING_SECONDS, ping)
        write_info(out, info)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def write_info(out: Sink, info: Mapping[str, Any]) -> None:
    """Samples from a parsed INFO reply; fields a server does not report are left out."""
    for family, field in _NUMBERS:
        number = info_number(info.get(field))
        if number is not None:
            out.add(family, number)
    for family, field in _STATUSES:
        if field in info:
            out.add(family, 1.0 if str(info[field]) == "ok" else 0.0)
    policy = str(info.get("maxmemory_policy", ""))
    if policy:
        out.add(MAXMEMORY_POLICY, 1, policy=policy)
    role = str(info.get("role", ""))
    if role:
        out.add(ROLE_INFO, 1, role="replica" if role in ("slave", "replica") else role)
    server, version = _server(info)
    out.add(SERVER_INFO, 1, server=server, version=version)


def _server(info: Mapping[str, Any]) -> tuple[str, str]:
    if "valkey_version" in info or str(info.get("server_name", "")) == "valkey":
        return "valkey", str(info.get("valkey_version", info.get("redis_version", "")))
    return "redis", str(info.get("redis_version", ""))


def info_number(value: Any) -> float | None:
    """An INFO field as a number, or None when the server does not report it as one (a
    field a Redis version lacks, or writes as text, is left out rather than failing)."""
    if isinstance(value, int | float):  # bool included: True is 1.0
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


KIND = Kind(
    name="redis",
    summary="Redis/Valkey PING latency, memory vs maxmemory, clients, persistence, role.",
    parse=parse,
    probe=RedisProbe,
    families=(
        PING_SECONDS,
        MEMORY_USED,
        MEMORY_MAX,
        CONNECTED_CLIENTS,
        BLOCKED_CLIENTS,
        REJECTED_CONNECTIONS,
        EVICTED_KEYS,
        RDB_LAST_BGSAVE_SUCCESS,
        RDB_LAST_SAVE_TIME,
        RDB_CHANGES,
        AOF_ENABLED,
        AOF_LAST_WRITE_SUCCESS,
        AOF_LAST_REWRITE_SUCCESS,
        AOF_CURRENT_SIZE,
        AOF_BASE_SIZE,
        AOF_DELAYED_FSYNC,
        MAXMEMORY_POLICY,
        ROLE_INFO,
        SERVER_INFO,
        UPTIME,
    ),
    target="url",
    alerts=(
        down(
            "Redis",
            60.0,
            (
                "redis-cli -h HOST PING; check the process and its log.",
                "If it is out of memory or restarting in a loop, read INFO memory and the "
                "persistence section.",
            ),
        ),
        DefaultAlert(
            key="memory_near_max",
            name="MemoryNearMax",
            query="redis_memory_used_bytes{$sel} / (redis_memory_max_bytes{$sel} > 0)",
            op=">",
            threshold=0.9,
            unit="ratio",
            for_=300.0,
            severity="warning",
            summary="Redis {{ $labels.check }} uses {value} of maxmemory (warn above {threshold})",
            description=(
                "At maxmemory Redis evicts keys or refuses writes, depending on its "
                "policy: queues and caches lose data or stall."
            ),
            steps=(
                "redis-cli INFO memory; find big keys with redis-cli --bigkeys.",
                "Clean up (completed jobs kept forever) or raise maxmemory deliberately.",
            ),
            reads="redis_memory_used_bytes{$sel}",
            test=(
                TestInput(
                    "redis_memory_used_bytes{$sel}",
                    "gauge",
                    "threshold * 1000",
                    "threshold * 1000 + 1",
                ),
                TestInput("redis_memory_max_bytes{$sel}", "gauge", "1000", "1000"),
            ),
            value="(threshold * 1000 + 1) / 1000",
        ),
        DefaultAlert(
            key="rdb_save_failing",
            name="SnapshotFailing",
            query="redis_rdb_last_bgsave_success{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=300.0,
            severity="warning",
            summary="Redis {{ $labels.check }}: the last background save (RDB) failed",
            description=(
                "Persistence is failing: a restart would lose the data since the last "
                "good snapshot, and with stop-writes-on-bgsave-error Redis refuses writes."
            ),
            steps=(
                "Read the Redis log for the bgsave error (disk full, permissions, "
                "fork failed for memory).",
            ),
            reads="redis_rdb_last_bgsave_success{$sel}",
            test=(
                TestInput(
                    "redis_rdb_last_bgsave_success{$sel}", "gauge", "threshold + 1", "threshold"
                ),
            ),
        ),
        DefaultAlert(
            key="aof_write_failing",
            name="AofWriteFailing",
            query="redis_aof_last_write_success{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=120.0,
            severity="warning",
            summary="Redis {{ $labels.check }}: the last append-only-file write failed",
            description="Writes are not reaching the AOF: a restart would lose them.",
            steps=("Read the Redis log for the AOF error; check the disk under its dir.",),
            reads="redis_aof_last_write_success{$sel}",
            test=(
                TestInput(
                    "redis_aof_last_write_success{$sel}", "gauge", "threshold + 1", "threshold"
                ),
            ),
        ),
        # Policies a runbook may write down (maxmemory 512mb, appendonly yes): off until
        # the check's alerts: turn them on, since no value is right for every Redis.
        DefaultAlert(
            key="maxmemory",
            name="MaxmemoryDiffers",
            query="redis_memory_max_bytes{$sel}",
            op="!=",
            threshold=None,
            unit="bytes",
            for_=600.0,
            severity="info",
            summary="Redis {{ $labels.check }} maxmemory is {value}, the configured limit "
            "is {threshold}",
            description=(
                "redis.conf drifted from the limit written down for it: without it the "
                "data set can grow until the host swaps or the OOM killer stops Redis."
            ),
            steps=("redis-cli CONFIG GET maxmemory; restore the limit in redis.conf.",),
            reads="redis_memory_max_bytes{$sel}",
            test=(TestInput("redis_memory_max_bytes{$sel}", "gauge", "threshold", "0"),),
        ),
        DefaultAlert(
            key="aof_disabled",
            name="AofDisabled",
            query="redis_aof_enabled{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=600.0,
            severity="warning",
            summary="Redis {{ $labels.check }} runs without append-only-file persistence",
            description=(
                "appendonly is off although it is required: a restart loses every write "
                "since the last snapshot."
            ),
            steps=(
                "redis-cli CONFIG GET appendonly; set appendonly yes in redis.conf and "
                "CONFIG SET appendonly yes.",
            ),
            reads="redis_aof_enabled{$sel}",
            test=(TestInput("redis_aof_enabled{$sel}", "gauge", "threshold + 1", "threshold"),),
            on=False,
        ),
        DefaultAlert(
            key="aof_rewrite_failing",
            name="AofRewriteFailing",
            query="redis_aof_last_rewrite_success{$sel}",
            op="==",
            threshold=0,
            unit="bool",
            for_=600.0,
            severity="warning",
            summary="Redis {{ $labels.check }}: the last append-only-file rewrite failed",
            description=(
                "Without rewrites the AOF only grows (auto-aof-rewrite-percentage and "
                "-min-size no longer take effect): the disk fills and a restart replays "
                "all of it."
            ),
            steps=(
                "Read the Redis log for the rewrite error (disk full, fork failed for memory).",
                "Fix it, then redis-cli BGREWRITEAOF and watch aof_last_bgrewrite_status.",
            ),
            reads="redis_aof_last_rewrite_success{$sel}",
            test=(
                TestInput(
                    "redis_aof_last_rewrite_success{$sel}", "gauge", "threshold + 1", "threshold"
                ),
            ),
        ),
        # appendfsync everysec and auto-aof-rewrite-* (Redis' defaults: 100 %, 64mb):
        # proposed for a runbook that writes them down, off otherwise.
        DefaultAlert(
            key="aof_fsync_delayed",
            name="AofFsyncDelayed",
            query="increase(redis_aof_delayed_fsync_total{$sel}[15m])",
            op=">",
            threshold=0,
            unit="count",
            for_=0.0,
            severity="info",
            summary="Redis {{ $labels.check }}: {value} AOF fsyncs ran late in 15 minutes",
            description=(
                "With appendfsync everysec an fsync still running after 2 s delays writes: "
                "the disk under the AOF cannot keep up, and up to 2 s of writes are at risk."
            ),
            steps=("iostat -x 5 on the AOF's disk; look for other writers (backups, logs).",),
            reads="redis_aof_delayed_fsync_total{$sel}",
            test=(
                TestInput(
                    "redis_aof_delayed_fsync_total{$sel}",
                    "jump",
                    "threshold",
                    "threshold * 1.01 + 0.01",
                ),
            ),
            settle=900.0,
            on=False,
        ),
        DefaultAlert(
            key="aof_not_rewritten",
            name="AofNotRewritten",
            # Grown past `threshold` times its size after the last rewrite and past 64 MiB
            # (auto-aof-rewrite-min-size) without a rewrite; the outer parentheses make the
            # generator's comparison apply to the ratio, not to the size filter.
            query="((redis_aof_current_size_bytes{$sel} / "
            "clamp_min(redis_aof_base_size_bytes{$sel}, 1)) "
            "and (redis_aof_current_size_bytes{$sel} > 67108864))",
            op=">",
            threshold=2,
            unit="ratio",
            for_=3600.0,
            severity="info",
            summary="Redis {{ $labels.check }}: the AOF is {value} of its size after the last "
            "rewrite (rewrites at {threshold})",
            description=(
                "auto-aof-rewrite-percentage 100 should have rewritten the AOF by now: "
                "rewrites are off, failing or blocked, and the file and restart time grow."
            ),
            steps=(
                "redis-cli INFO persistence (aof_rewrite_scheduled, aof_last_bgrewrite_status) "
                "and CONFIG GET auto-aof-rewrite-*.",
                "redis-cli BGREWRITEAOF once the cause is fixed.",
            ),
            reads="redis_aof_current_size_bytes{$sel}",
            test=(
                TestInput(
                    "redis_aof_current_size_bytes{$sel}",
                    "gauge",
                    "threshold * 100000000",
                    "threshold * 101000000",
                ),
                TestInput("redis_aof_base_size_bytes{$sel}", "gauge", "100000000", "100000000"),
            ),
            value="threshold * 1.01",
            on=False,
        ),
        DefaultAlert(
            key="evictions",
            name="KeysEvicted",
            query="increase(redis_evicted_keys_total{$sel}[15m])",
            op=">",
            threshold=None,
            unit="count",
            for_=0.0,
            severity="warning",
            summary="Redis {{ $labels.check }} evicted {value} keys in 15 minutes "
            "(limit {threshold})",
            description=(
                "Redis is at maxmemory and drops keys by its policy. For a cache that is "
                "expected; for BullMQ queues (which need noeviction) it loses jobs."
            ),
            steps=(
                "redis-cli INFO memory (used_memory, maxmemory_policy) and --bigkeys.",
                "Raise maxmemory, trim what grows, or move queues to a noeviction server.",
            ),
            reads="redis_evicted_keys_total{$sel}",
            test=(
                # Just past the threshold (5 % of it would already be quiet), also at 0.
                TestInput(
                    "redis_evicted_keys_total{$sel}",
                    "jump",
                    "threshold",
                    "threshold * 1.01 + 0.01",
                ),
            ),
            settle=900.0,
        ),
        DefaultAlert(
            key="unsaved_changes",
            name="NotPersisted",
            # Neither persistence is protecting the writes: AOF is off and the last good
            # snapshot is old while writes have happened since (an idle server with an
            # old snapshot loses nothing, so changes must be > 0).
            # (and/unless keep the left side's value, the save time, and bind looser
            # than the comparison the generator appends: hence the outer parentheses.)
            query="time() - (redis_rdb_last_save_timestamp_seconds{$sel} "
            "and (redis_rdb_changes_since_last_save{$sel} > 0) "
            "unless (redis_aof_enabled{$sel} == 1))",
            op=">",
            threshold=2 * 3600.0,
            unit="seconds",
            for_=300.0,
            severity="warning",
            summary="Redis {{ $labels.check }}: writes since a snapshot {value} old and no "
            "AOF (limit {threshold})",
            description=(
                "Neither persistence covers the latest writes: the append-only file is "
                "off and no RDB snapshot succeeded for longer than the limit although "
                "data changed. A restart now loses them (queued jobs, schedules). The "
                "default save points snapshot within an hour of any change."
            ),
            steps=(
                "redis-cli INFO persistence: rdb_last_bgsave_status, "
                "rdb_changes_since_last_save, aof_enabled.",
                "redis-cli CONFIG GET save / appendonly: turn persistence on as the "
                "runbook says (appendonly yes, or save points), then BGSAVE once.",
            ),
            reads="redis_rdb_last_save_timestamp_seconds{$sel}",
            test=(
                TestInput(
                    "redis_rdb_last_save_timestamp_seconds{$sel}",
                    "age",
                    "threshold",
                    "threshold * 1.01",
                ),
                TestInput("redis_rdb_changes_since_last_save{$sel}", "gauge", "5", "5"),
                TestInput("redis_aof_enabled{$sel}", "gauge", "0", "0"),
            ),
        ),
    ),
    panels=(
        Panel(
            "Redis memory of maxmemory",
            'redis_memory_used_bytes{check=~"$check"} / '
            '(redis_memory_max_bytes{check=~"$check"} > 0)',
            "ratio",
        ),
        Panel("Redis clients", 'redis_connected_clients{check=~"$check"}', "count"),
    ),
)
