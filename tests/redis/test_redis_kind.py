"""redis kind against real redis-server processes: INFO fields, roles, refusals, TLS
(TLS for the bullmq kind too)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import trustme

from tests.servers import RedisServer, TlsFiles
from tests.support import free_port, run_check, value, values, wait_until


async def test_memory_clients_persistence_and_role(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory("--maxmemory", "512mb")
    # A client parked in BLPOP, as an idle BullMQ worker is, counts as blocked.
    with socket.create_connection(("127.0.0.1", server.port)) as blocked, server.client() as c:
        blocked.sendall(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nnone\r\n$1\r\n0\r\n")
        wait_until(lambda: c.info("clients")["blocked_clients"] == 1, what="a blocked client")
        version = c.info("server")["redis_version"]
        result = await run_check({"name": "r", "kind": "redis", "url": server.url})
    assert result.success, result.error
    assert value(result, "redis_memory_max_bytes") == 512 * 1024 * 1024
    assert 0 < value(result, "redis_memory_used_bytes") < 512 * 1024 * 1024
    assert value(result, "redis_blocked_clients") == 1
    assert value(result, "redis_connected_clients") >= 3  # blocked, arranging, exporter
    assert value(result, "redis_rejected_connections_total") == 0
    assert value(result, "redis_rdb_last_bgsave_success") == 1
    assert value(result, "redis_aof_enabled") == 0
    assert value(result, "redis_aof_last_write_success") == 1
    assert value(result, "redis_role_info", role="master") == 1
    assert value(result, "redis_server_info", server="redis", version=version) == 1
    assert 0 < value(result, "redis_ping_duration_seconds") < 5


async def test_aof_turned_on_is_reported(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.config_set("appendonly", "yes")
        wait_until(
            lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0,
            what="the first AOF rewrite",
        )
        client.set("device:1:latest", "x" * 1000)
        size = client.info("persistence")["aof_current_size"]
    result = await run_check({"name": "r", "kind": "redis", "url": redis_server.url})
    assert result.success, result.error
    assert value(result, "redis_aof_enabled") == 1
    assert value(result, "redis_aof_current_size_bytes") == size > 1000
    assert value(result, "redis_aof_base_size_bytes") < size
    assert value(result, "redis_aof_delayed_fsync_total") == 0


async def test_maxmemory_policy_is_reported(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory("--maxmemory-policy", "allkeys-lru")
    result = await run_check({"name": "r", "kind": "redis", "url": server.url})
    assert result.success, result.error
    assert values(result, "redis_maxmemory_policy_info") == {(("policy", "allkeys-lru"),): 1}
    # AOF off: its sizes are not reported at all rather than as 0.
    assert values(result, "redis_aof_current_size_bytes") == {}


async def test_failed_snapshot_and_unsaved_writes_are_reported(
    redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    server = redis_factory("--dir", str(gone))
    # Redis writes its snapshot into its working directory: one that no longer exists
    # makes BGSAVE fail, as a full or unmounted disk does.
    gone.rmdir()
    with server.client() as client:
        client.set("job:1", "queued")
        client.set("job:2", "queued")
        last_save = client.lastsave().timestamp()
        client.bgsave()
        wait_until(
            lambda: (
                client.info("persistence")["rdb_bgsave_in_progress"] == 0
                and client.info("persistence")["rdb_last_bgsave_status"] == "err"
            ),
            what="a failed BGSAVE",
        )
        result = await run_check({"name": "r", "kind": "redis", "url": server.url})
    assert result.success, result.error
    assert value(result, "redis_rdb_last_bgsave_success") == 0
    assert value(result, "redis_rdb_changes_since_last_save") == 2
    assert value(result, "redis_rdb_last_save_timestamp_seconds") == last_save
    assert value(result, "redis_aof_enabled") == 0


async def test_replica_role(redis_factory: Callable[..., RedisServer]) -> None:
    primary = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(primary.port))
    result = await run_check({"name": "r", "kind": "redis", "url": replica.url})
    assert result.success, result.error
    assert values(result, "redis_role_info") == {(("role", "replica"),): 1.0}


async def test_refused_over_maxclients_then_counted(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory("--maxclients", "1")
    with socket.create_connection(("127.0.0.1", server.port)) as hog:
        hog.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert hog.recv(64) == b"+PONG\r\n"
        refused = await run_check({"name": "r", "kind": "redis", "url": server.url})
    assert not refused.success
    assert "max number of clients reached" in (refused.error or "")
    result = await run_check({"name": "r", "kind": "redis", "url": server.url})
    assert result.success, result.error
    assert value(result, "redis_rejected_connections_total") >= 1


async def test_nothing_listening_fails_with_reason() -> None:
    port = free_port()
    result = await run_check({"name": "r", "kind": "redis", "url": f"redis://127.0.0.1:{port}"})
    assert not result.success
    assert result.error == f"redis 127.0.0.1:{port}: connection refused"
    assert not result.samples


async def test_tls_with_ca_file(redis_factory: Callable[..., RedisServer], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    files = TlsFiles(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    server = redis_factory(tls=files)
    with server.client() as client:
        client.hset("bull:ingest:meta", "opts.maxLenEvents", 10000)

    for kind in ("redis", "bullmq"):  # redis-py client and the bullmq kind's own client
        trusted = await run_check(
            {"name": "r", "kind": kind, "url": server.url, "tls_ca_file": str(files.ca)}
        )
        assert trusted.success, trusted.error
        untrusted = await run_check({"name": "r", "kind": kind, "url": server.url})
        assert not untrusted.success
        assert "certificate verify failed" in (untrusted.error or "").lower(), untrusted.error
        skipped = await run_check(
            {"name": "r", "kind": kind, "url": server.url, "tls_insecure_skip_verify": True}
        )
        assert skipped.success, skipped.error
    assert value(trusted, "bullmq_queues", prefix="bull") == 1
