"""``/probe?module=&target=``: modules from the config, targets from the request, on loopback.

Real listeners and a real Redis server; the answers are parsed with prometheus_client's own
text parser.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_data, load_file
from exporter.fields import ConfigError
from exporter.probing import ProbePool, resolve
from exporter.server import RunningExporter
from tests.servers import RedisServer
from tests.support import async_wait_until, free_port, serving

CONFIG = """
checks: []
modules:
  tcp_local:
    kind: tcp
    timeout: 30s
    allowed_targets: ['127\\.0\\.0\\.1:\\d+']
  tcp_expect:
    kind: tcp
    timeout: 30s
    expect: "^never"
    allowed_targets: ['127\\.0\\.0\\.1:\\d+']
  redis_local:
    kind: redis
    labels: {team: cache}
    allowed_targets: ['redis://127\\.0\\.0\\.1:\\d+/\\d+']
"""


@pytest.fixture
async def served(
    tmp_path: Path, log_stream: io.StringIO
) -> AsyncIterator[tuple[str, RunningExporter]]:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    exporter = RunningExporter(
        load_file(path), lambda: load_file(path), prober=ProbePool(max_entries=3)
    )
    async with serving(exporter) as base:
        yield base, exporter


@pytest.fixture
async def listener() -> AsyncIterator[tuple[str, list[float]]]:
    """A loopback TCP server that accepts and stays silent; records each accept."""
    accepted: list[float] = []
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())
        writers.append(writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}", accepted
    server.close()
    for writer in writers:
        writer.close()
    await server.wait_closed()


async def probe(
    base: str, headers: Mapping[str, str] | None = None, **query: str
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/probe", params=query, headers=headers or {}) as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def test_a_tcp_target_from_the_request_is_probed(
    served: tuple[str, RunningExporter], listener: tuple[str, list[float]]
) -> None:
    base, _ = served
    address, accepted = listener
    status, body = await probe(base, module="tcp_local", target=address)
    assert status == 200, body
    found = samples(body)
    assert found["probe_success"] == [({}, 1.0)]
    assert 0 < found["probe_duration_seconds"][0][1] < 30
    assert found["tcp_connect_duration_seconds"][0][0] == {"check": "tcp_local"}
    assert len(accepted) == 1


async def test_a_closed_port_is_probe_success_0_not_an_http_error(
    served: tuple[str, RunningExporter], log_stream: io.StringIO
) -> None:
    base, _ = served
    status, body = await probe(base, module="tcp_local", target=f"127.0.0.1:{free_port()}")
    assert status == 200
    assert samples(body)["probe_success"] == [({}, 0.0)]
    assert "level=warn" not in log_stream.getvalue()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"target": "127.0.0.1:80"}, "missing module parameter"),
        ({"module": "nope", "target": "127.0.0.1:80"}, 'unknown module "nope"'),
        ({"module": "tcp_local"}, "missing target parameter"),
        ({"module": "tcp_local", "target": "10.0.0.1:22"}, "is not allowed by module tcp_local"),
        ({"module": "tcp_local", "target": "127.0.0.1:22\n"}, "control characters"),
        ({"module": "tcp_local", "target": "127.0.0.1:99999"}, "malformed target: address"),
        ({"module": "tcp_local", "target": "127.0.0.1:" + "9" * 3000}, "longer than 2048"),
        (
            {"module": "redis_local", "target": "redis://:hunter22@127.0.0.1:6379/0"},
            "carries credentials",
        ),
    ],
)
async def test_refused_requests_answer_400_with_one_line_and_log_no_error(
    served: tuple[str, RunningExporter],
    log_stream: io.StringIO,
    query: dict[str, str],
    reason: str,
) -> None:
    base, _ = served
    status, body = await probe(base, None, **query)
    assert status == 400
    assert reason in body
    assert body.count("\n") == 1
    assert body.endswith("\n")
    assert "hunter22" not in body
    levels = {line.split("level=")[1].split()[0] for line in log_stream.getvalue().splitlines()}
    assert levels <= {"debug", "info"}, log_stream.getvalue()
    async with aiohttp.ClientSession() as session, session.get(f"{base}/-/healthy") as resp:
        assert resp.status == 200


def test_credentials_in_an_allowed_target_are_refused() -> None:
    config = load_data(
        {"modules": {"r": {"kind": "redis", "allowed_targets": ["redis://.*"]}}}, "t"
    )
    for target in ("redis://:hunter22@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?password=x"):
        with pytest.raises(Exception, match="carries credentials") as info:
            resolve(config, "r", target)
        assert "hunter22" not in str(info.value)


async def test_the_answer_is_bounded_by_the_scrape_timeout_header(
    served: tuple[str, RunningExporter], listener: tuple[str, list[float]]
) -> None:
    base, _ = served
    address, _ = listener
    started = time.monotonic()
    # The listener never says "never": the module's own 30 s timeout would hold the probe.
    status, body = await probe(
        base,
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
        module="tcp_expect",
        target=address,
    )
    took = time.monotonic() - started
    assert status == 200
    assert samples(body)["probe_success"] == [({}, 0.0)]
    assert 0.9 <= took < 10, took  # 1.5 s minus the 0.5 s offset; generous upper bound


async def test_redis_probes_are_pooled_bounded_and_expire(
    redis_factory: Callable[..., RedisServer],
) -> None:
    server = redis_factory()
    config = load_data(
        {"modules": {"r": {"kind": "redis", "allowed_targets": [r"redis://127\.0\.0\.1:\d+/\d+"]}}},
        "t",
    )
    pool = ProbePool(max_entries=3, idle_seconds=3600)
    admin = redis.Redis(port=server.port)
    baseline = len(admin.client_list())

    def clients() -> int:
        return len(admin.client_list()) - baseline

    def at_most(count: int) -> Callable[[], Any]:
        async def check() -> bool:
            return await asyncio.to_thread(clients) <= count

        return check

    loop = asyncio.get_running_loop()
    try:
        for db in range(10):  # ten distinct targets against one server
            target = f"redis://127.0.0.1:{server.port}/{db}"
            outcome = await pool.run(resolve(config, "r", target), target, loop.time() + 10)
            assert outcome.success, outcome.error
            assert len(pool) <= 3
        await async_wait_until(at_most(3), what="evicted targets' connections closed")
        # Reused, not reopened: probing a pooled target again opens nothing new.
        target = f"redis://127.0.0.1:{server.port}/9"
        await pool.run(resolve(config, "r", target), target, loop.time() + 10)
        assert clients() <= 3
        pool.idle_seconds = 0.0
        assert pool.expire(loop.time()) == 3
        await async_wait_until(at_most(0), what="idle targets' connections closed")
        assert len(pool) == 0
    finally:
        await pool.close()
        admin.close()


async def test_ten_thousand_distinct_targets_keep_the_pool_bounded() -> None:
    config = load_data({"modules": {"t": {"kind": "tcp", "allowed_targets": [r".*"]}}}, "t")
    pool = ProbePool(max_entries=50)
    loop = asyncio.get_running_loop()
    ports = iter(range(20000, 30000))
    try:
        for _ in range(100):
            batch = [f"127.0.0.2:{next(ports)}" for _ in range(100)]
            await asyncio.gather(
                *(pool.run(resolve(config, "t", t), t, loop.time() + 10) for t in batch)
            )
            assert len(pool) <= 50
        # Closes finish as they go (at most one batch plus the pool is still closing).
        assert len(pool._closing) <= 150, len(pool._closing)
    finally:
        await pool.close()
    assert len(pool) == 0


def test_module_config_problems_name_their_path() -> None:
    bad: dict[str, Any] = {
        "modules": {
            "a": {"kind": "tcp", "address": "127.0.0.1:1", "allowed_targets": [".*"]},
            "b": {"kind": "tcp", "exepct": "x", "allowed_targets": [".*"]},
            "c": {"kind": "tcp"},
            "d": {"kind": "tcp", "allowed_targets": ["("]},
            "e": {"kind": "nope", "allowed_targets": [".*"]},
        }
    }
    with pytest.raises(ConfigError) as info:
        load_data(bad, "t")
    text = str(info.value)
    assert "modules.a.address: set by each /probe request's target" in text
    assert 'modules.b.exepct: unknown key, did you mean "expect"?' in text
    assert "modules.c.allowed_targets: required but missing" in text
    assert "modules.d.allowed_targets[0]: invalid regular expression" in text
    assert 'modules.e.kind: unknown kind "nope"' in text


def test_a_probe_only_config_needs_no_checks() -> None:
    config = load_data({"modules": {"t": {"kind": "tcp", "allowed_targets": [".*"]}}}, "t")
    assert config.checks == ()
    assert config.modules[0].name == "t"
    with pytest.raises(ConfigError, match="checks: required"):
        load_data({}, "t")


async def test_config_endpoint_shows_modules_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "modules:\n  r:\n    kind: redis\n    password: hunter22-module\n"
        "    allowed_targets: ['redis://127\\.0\\.0\\.1:\\d+/\\d+']\n"
    )
    exporter = RunningExporter(load_file(path), lambda: load_file(path))
    async with (
        serving(exporter) as base,
        aiohttp.ClientSession() as session,
        session.get(f"{base}/config") as response,
    ):
        body = await response.json()
    module = body["modules"]["r"]
    assert module["kind"] == "redis"
    assert module["allowed_targets"] == [r"redis://127\.0\.0\.1:\d+/\d+"]
    assert module["options"]["password"] == "<secret>"
    assert "hunter22-module" not in json.dumps(body)
