"""Scale-out on Prometheus' own machinery: two real Prometheus servers shard 1,000 TCP
targets by ``hashmod`` and probe them through the exporter's ``/probe``.

The exporter's config holds no target at all: one module and its allowed pattern. The
targets come from a ``file_sd`` file, each Prometheus keeps its half by relabelling (the
configuration docs/deployment.md shows), and 1,000 loopback listeners record every
connection, so the test sees from the targets' side that each one is probed by exactly
one Prometheus per interval and none is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.stack import ManagedProcess, wait_http_ok, write_yaml
from tests.support import free_port, require_binary

TARGETS = 1000
SHARDS = 2
INTERVAL = 5.0  # seconds; 200 probes a second through one exporter
ROUNDS = 4  # intervals every target must be seen in after both shards are up


class Listeners:
    """``TARGETS`` loopback TCP servers; each records when it was connected to."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.accepts: dict[str, list[float]] = {}

    async def start(self) -> None:
        for _ in range(TARGETS):
            holder: list[str] = []

            def on_connect(
                _: asyncio.StreamReader, writer: asyncio.StreamWriter, holder: list[str] = holder
            ) -> None:
                self.accepts[holder[0]].append(time.monotonic())
                writer.close()

            server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
            address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
            holder.append(address)
            self.accepts[address] = []
            self.servers.append(server)

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        await asyncio.gather(*(server.wait_closed() for server in self.servers))


def shard_config(shard: int, exporter: str, sd_file: Path) -> dict[str, Any]:
    """The relabelling of docs/deployment.md's sharding example, for shard ``shard``."""
    return {
        "global": {"scrape_interval": f"{INTERVAL:g}s", "scrape_timeout": "4s"},
        "scrape_configs": [
            {
                "job_name": "tcp-probe",
                "metrics_path": "/probe",
                "params": {"module": ["tcp_connect"]},
                "file_sd_configs": [{"files": [str(sd_file)]}],
                "relabel_configs": [
                    {
                        "source_labels": ["__address__"],
                        "modulus": SHARDS,
                        "target_label": "__tmp_hash",
                        "action": "hashmod",
                    },
                    {"source_labels": ["__tmp_hash"], "regex": str(shard), "action": "keep"},
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter},
                ],
            }
        ],
    }


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    found = Listeners()
    await found.start()
    yield found
    await found.stop()


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_two_prometheus_servers_shard_1000_targets_by_hashmod(
    tmp_path: Path, listeners: Listeners
) -> None:
    require_binary("prometheus", "prometheus")
    exporter_port = free_port()
    exporter_address = f"127.0.0.1:{exporter_port}"
    write_yaml(
        tmp_path / "exporter.yml",
        {
            "modules": {
                "tcp_connect": {
                    "kind": "tcp",
                    "timeout": "3s",
                    "allowed_targets": [r"127\.0\.0\.1:\d+"],
                }
            }
        },
    )
    sd_file = tmp_path / "targets.json"
    sd_file.write_text(json.dumps([{"targets": sorted(listeners.accepts)}]))
    processes = [
        ManagedProcess(
            "exporter",
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={tmp_path / 'exporter.yml'}",
                f"--web.listen-address={exporter_address}",
            ],
            tmp_path,
        )
    ]
    prometheus_urls = []
    for shard in range(SHARDS):
        home = tmp_path / f"prometheus{shard}"
        port = free_port()
        config = write_yaml(home / "prometheus.yml", shard_config(shard, exporter_address, sd_file))
        processes.append(
            ManagedProcess(
                f"prometheus{shard}",
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                tmp_path,
            )
        )
        prometheus_urls.append(f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            processes[0].start()
            await wait_http_ok(session, f"http://{exporter_address}/-/ready", processes[0])
            for process, url in zip(processes[1:], prometheus_urls, strict=True):
                process.start()
                await wait_http_ok(session, f"{url}/-/ready", process)
            await check_sharding(session, prometheus_urls, listeners, processes)
    finally:
        for process in processes:
            process.stop()


async def check_sharding(
    session: aiohttp.ClientSession,
    prometheus_urls: list[str],
    listeners: Listeners,
    processes: list[ManagedProcess],
) -> None:
    # 1. Both shards have probed their half: probe_success 1 for every target, once.
    deadline = time.monotonic() + 120
    while True:
        halves = [
            {r["metric"]["instance"] for r in await query(session, url, "probe_success == 1")}
            for url in prometheus_urls
        ]
        if sum(len(h) for h in halves) >= TARGETS:
            break
        if time.monotonic() > deadline:
            logs = "\n".join(p.log_tail() for p in processes)
            raise AssertionError(f"shards saw {[len(h) for h in halves]} targets\n{logs}")
        await asyncio.sleep(0.5)
    assert not halves[0] & halves[1], "a target is probed by both Prometheus servers"
    assert halves[0] | halves[1] == set(listeners.accepts), "a target is lost"
    assert all(len(h) > TARGETS * 0.35 for h in halves), [len(h) for h in halves]

    # 2. From the targets' side: ROUNDS more intervals, every target connected to once per
    #    interval. Two probers would put two connections into some interval.
    since = time.monotonic()
    deadline = since + INTERVAL * (ROUNDS + 6)
    while True:
        behind = [
            a for a, times in listeners.accepts.items() if sum(t > since for t in times) < ROUNDS
        ]
        if not behind:
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(behind)} targets not probed {ROUNDS} times, e.g. {behind[:3]}"
            )
        await asyncio.sleep(0.5)
    for address, times in listeners.accepts.items():
        recent = [t for t in times if t > since]
        gaps = [b - a for a, b in itertools.pairwise(recent)]
        # Prometheus keeps a fixed per-target offset: gaps are one interval, give or take
        # a loaded machine's delay; a second prober would leave gaps far below that.
        assert all(gap > INTERVAL * 0.5 for gap in gaps), (address, gaps)
        window = recent[-1] - since
        assert len(recent) <= window / INTERVAL + 2, (address, len(recent), window)

    # 3. Each Prometheus still holds exactly its own half; the exporter never said 0.
    for url, half in zip(prometheus_urls, halves, strict=True):
        up = {
            r["metric"]["instance"] for r in await query(session, url, 'up{job="tcp-probe"} == 1')
        }
        assert up == half
        assert not await query(session, url, "min_over_time(probe_success[1m]) == 0")
