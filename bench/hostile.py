"""``python -m bench.hostile [--code DIR]``: what a hostile target does to a serving exporter.

Each attack runs against a real ``python -m exporter`` process on loopback and reports the
worst ``/-/healthy`` latency while it runs (asked every 50 ms), the scrape's wall time for
a 4.5 s deadline (timeout header 5 s), and the process's RSS growth. ``--code DIR`` runs
the exporter from another checkout (e.g. ``git archive <commit> | tar -x -C DIR``) to
compare before and after; the numbers are in docs/benchmarks.md. Not a test: no
assertions, only figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers import ExporterProcess, LoopbackServers, read_command
from tests.support import free_port


def start_exporter(
    code: Path, config: str, *flags: str, fd_limit: int | None = None
) -> ExporterProcess:
    """Start the exporter of checkout ``code`` on ``config`` (in a fresh temporary dir)."""
    where = Path(tempfile.mkdtemp(prefix="hostile-"))
    (where / "config.yml").write_text(config)
    process = ExporterProcess(
        where / "config.yml",
        free_port(),
        flags,
        fd_limit,
        stderr_path=where / "stderr.log",
        code=code,
    )
    process.start()
    return process


def stop_seconds(process: ExporterProcess) -> float:
    """Seconds SIGTERM took (SIGKILL after 30 s: returned as inf)."""
    started = time.monotonic()
    if process.stop(timeout=30) == -9:
        return float("inf")
    return time.monotonic() - started


def kill(process: ExporterProcess) -> None:
    assert process.proc is not None
    process.proc.kill()
    process.proc.wait()


async def under_attack(
    process: ExporterProcess, attack: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """Run ``attack`` while polling /-/healthy; worst latency, attack time, RSS growth."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def poll() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            while not stop.is_set():
                started = time.monotonic()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(process.base + "/-/healthy") as response:
                        await response.read()
                latencies.append(time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

    before = process.rss_bytes()
    poller = asyncio.create_task(poll())
    started = time.monotonic()
    outcome = await attack()
    took = time.monotonic() - started
    stop.set()
    await poller
    return {
        "healthy_worst_ms": round(max(latencies) * 1000, 1),
        "attack_s": round(took, 2),
        "rss_growth_mib": round((process.rss_bytes() - before) / 2**20, 1),
        "outcome": outcome,
    }


async def scrape(process: ExporterProcess) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session,
        session.get(
            process.base + "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}
        ) as response,
    ):
        body = await response.text()
    return next(
        (line for line in body.splitlines() if line.startswith("runbook_exporter_check_success")),
        "no check_success",
    )


async def redis_attack(
    code: Path, reply: Callable[[asyncio.StreamWriter], Awaitable[None]]
) -> dict[str, Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            command = (await read_command(reader))[0].upper()
            if command == "HELLO":  # what a Redis 7 answers, for clients that ask
                writer.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")
            elif command == "CLIENT":
                writer.write(b"+OK\r\n")
            elif command == "PING":
                writer.write(b"+PONG\r\n")
            else:
                await reply(writer)
            await writer.drain()

    servers = LoopbackServers()
    port = await servers.start(handle)
    process = start_exporter(
        code,
        f"checks:\n  - {{name: r, kind: redis, url: 'redis://127.0.0.1:{port}/0', timeout: 5s}}\n",
    )
    try:
        await process.ready()
        result = await under_attack(process, lambda: scrape(process))
        await asyncio.sleep(2)
        result["rss_after_2s_mib"] = round(process.rss_bytes() / 2**20, 1)
        result["sigterm_s"] = stop_seconds(process)
        return result
    finally:
        kill(process)
        await servers.close()


async def endless_bulk(writer: asyncio.StreamWriter) -> None:
    writer.write(b"$4611686018427387904\r\n")
    chunk = b"x" * (1 << 20)
    while True:
        writer.write(chunk)
        await writer.drain()


async def huge_info(writer: asyncio.StreamWriter) -> None:
    line = b"used_memory:1\r\n"
    body = line * (200 * 2**20 // len(line))
    writer.write(b"$%d\r\n" % len(body))
    for start in range(0, len(body), 1 << 20):
        writer.write(body[start : start + (1 << 20)])
        await writer.drain()
    writer.write(b"\r\n")


async def json_key_attack(code: Path, key_size: int) -> dict[str, Any]:
    from aiohttp import web

    body = json.dumps({"status": "ok", "components": {"k" * key_size: {"state": "x"}}})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    process = start_exporter(
        code,
        f"checks:\n  - {{name: a, kind: http, url: 'http://127.0.0.1:{port}/health',"
        " status_path: status, components: {path: components}}\n",
    )
    try:
        await process.ready()
        result = await under_attack(process, lambda: scrape(process))
        result["sigterm_s"] = stop_seconds(process)
        return result
    finally:
        kill(process)
        await runner.cleanup()


async def alias_bomb_reload(code: Path) -> dict[str, Any]:
    levels = 9
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    lines.append(f"checks:\n  - {{name: x, kind: tcp, address: 'h:1', labels: *a{levels - 1}}}")
    process = start_exporter(code, "checks:\n  - {name: t, kind: tcp, address: '127.0.0.1:1'}\n")
    try:
        await process.ready()
        process.config.write_text("\n".join(lines) + "\n")

        async def reload() -> str:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.post(process.base + "/-/reload") as response,
            ):
                status = response.status
            async with (
                aiohttp.ClientSession() as session,
                session.get(process.base + "/metrics") as response,
            ):
                body = await response.text()
            flag = next(
                line
                for line in body.splitlines()
                if line.startswith("runbook_exporter_config_last_reload_successful")
            )
            return f"{status} {flag}"

        try:
            return await asyncio.wait_for(under_attack(process, reload), 40)
        except TimeoutError:
            return {
                "outcome": "no answer within 40 s",
                "rss_mib": round(process.rss_bytes() / 2**20),
            }
    finally:
        kill(process)


async def idle_flood(code: Path) -> dict[str, Any]:
    process = start_exporter(
        code, "checks:\n  - {name: t, kind: tcp, address: '127.0.0.1:1'}\n", fd_limit=64
    )
    flood = []
    try:
        await process.ready()
        flood = process.idle_flood(80)
        await asyncio.sleep(10)
        return {
            "healthy_after_10s": await process.answers("/-/healthy", timeout=3),
            "log_lines_10s": len(process.log().splitlines()),
        }
    finally:
        for sock in flood:
            sock.close()
        kill(process)


def redact_time(code: Path) -> dict[str, Any]:
    script = (
        "import time; from exporter.redact import REDACTOR; t = time.process_time(); "
        "REDACTOR.redact('a' * 80_000); print(time.process_time() - t)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=code,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(code)},
        check=True,
    )
    return {"redact_80k_alnum_s": round(float(run.stdout), 3)}


async def main(code: Path) -> dict[str, Any]:
    return {
        "redactor": redact_time(code),
        "http_json_key_40k": await json_key_attack(code, 40_000),
        "http_json_key_150k": await json_key_attack(code, 150_000),
        "redis_endless_bulk": await redis_attack(code, endless_bulk),
        "redis_info_200mb": await redis_attack(code, huge_info),
        "reload_alias_bomb": await alias_bomb_reload(code),
        "idle_socket_flood_64fd": await idle_flood(code),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.code.resolve())), indent=2))
