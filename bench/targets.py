"""Helper process: many loopback targets, so their CPU is not the bench's or the exporters'.

``python -m bench.targets tcp N``: N listening ports that accept and close.
``python -m bench.targets http N``: N aiohttp servers answering ``GET /health`` with JSON.
Prints the JSON list of ports on one line, serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web


def health_body() -> dict[str, object]:
    """A typical NestJS-terminus-style health document."""
    now = time.time()
    return {
        "status": "ok",
        "info": {"database": {"status": "up"}, "redis": {"status": "up"}},
        "components": {
            "database": {"status": "ok", "latency_ms": 3},
            "redis": {"status": "ok", "latency_ms": 1},
            "queue": {"status": "ok", "waiting": 12},
        },
        "last_export": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "timestamp": now,
    }


async def tcp(count: int) -> list[asyncio.Server]:
    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return [await asyncio.start_server(accept, "127.0.0.1", 0, backlog=1024) for _ in range(count)]


async def http(count: int) -> list[web.AppRunner]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response(health_body())

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for _ in range(count):
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    return [runner]


def ports_of(servers: list[asyncio.Server]) -> list[int]:
    return [int(sock.getsockname()[1]) for server in servers for sock in server.sockets]


async def main(kind: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    if kind == "tcp":
        servers = await tcp(count)
        ports = ports_of(servers)
    else:
        (runner,) = await http(count)
        ports = [int(addr[1]) for addr in runner.addresses]
    print(json.dumps(ports), flush=True)
    # Serve until the bench closes our stdin (or terminates us).
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
