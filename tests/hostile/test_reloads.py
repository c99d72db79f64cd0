"""Reloads that fail in any way keep the old configuration and say so: the reload
metric drops to 0 and the status page shows why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.config import Config, load_data, load_file
from exporter.server import RunningExporter, make_app
from tests.hostile.conftest import StartExporter
from tests.hostile.test_bad_configs import billion_laughs
from tests.web.conftest import Serve

GOOD = "checks:\n  - {name: self, kind: tcp, address: '127.0.0.1:1'}\n"
RELOAD_OK = "runbook_exporter_config_last_reload_successful"


async def test_alias_bomb_reload_is_refused_quickly_and_reported(
    exporter_process: StartExporter,
) -> None:
    exporter = await exporter_process(GOOD)
    before = exporter.rss_bytes()
    exporter.config.write_text(billion_laughs())
    status, text = await exporter.post("/-/reload")
    assert status == 400
    assert "more than 200000 values here (an alias counts all it repeats)" in text
    # Before: the serving process grew ~36 MB/s without end.
    assert exporter.rss_bytes() - before < 64 * 1024 * 1024
    _, metrics = await exporter.get("/metrics")
    assert f"{RELOAD_OK} 0.0" in metrics
    assert 'check_success{check="self",kind="tcp"}' in metrics  # the old config serves
    _, page = await exporter.get("/")
    assert "last reload FAILED" in page
    exporter.config.write_text(GOOD)
    status, _ = await exporter.post("/-/reload")
    assert status == 200
    _, metrics = await exporter.get("/metrics")
    assert f"{RELOAD_OK} 1.0" in metrics


async def test_reload_that_raises_unexpectedly_is_a_failed_reload(tmp_path: Path) -> None:
    """Whatever breaks inside a reload (here: the loader itself) must not read as a
    successful one; before, POST /-/reload answered 500 and the metric stayed 1."""
    config = load_data({"checks": []}, "<test>", {})

    def broken_loader() -> Config:
        raise RecursionError("maximum recursion depth exceeded")

    exporter = RunningExporter(config, broken_loader)
    await exporter.start()
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    try:
        client_url = str(server.make_url("/-/reload"))
        async with aiohttp.ClientSession() as session:
            async with session.post(client_url) as response:
                assert response.status == 400
                assert "unexpected RecursionError" in await response.text()
            async with session.get(str(server.make_url("/metrics"))) as response:
                assert f"{RELOAD_OK} 0.0" in await response.text()
            async with session.get(str(server.make_url("/"))) as response:
                assert "last reload FAILED" in await response.text()
    finally:
        await server.close()
        await exporter.stop()


async def test_scrapes_racing_reloads_never_report_a_false_zero(
    serve: Serve, tmp_path: Path
) -> None:
    """Before: ~1,300 check_success 0 per check over 500 reloads, nothing logged."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/slow", slow)
    base = await serve(app)
    path = tmp_path / "config.yml"

    def write(timeout: str) -> None:
        path.write_text(
            f"checks:\n  - {{name: svc, kind: http, url: '{base}/slow', timeout: {timeout}}}\n"
            f"  - {{name: steady, kind: http, url: '{base}/slow'}}\n"
        )

    write("5s")
    exporter = RunningExporter(load_file(path), lambda: load_file(path))
    await exporter.start()
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    zeros: list[str] = []
    scrapes = 0
    try:
        async with aiohttp.ClientSession() as session:

            async def scrape_forever(stop: asyncio.Event) -> None:
                nonlocal scrapes
                while not stop.is_set():
                    async with session.get(str(server.make_url("/metrics"))) as response:
                        body = await response.text()
                    scrapes += 1
                    zeros.extend(
                        line
                        for line in body.splitlines()
                        if line.startswith("runbook_exporter_check_success")
                        and line.endswith(" 0.0")
                    )

            stop = asyncio.Event()
            scrapers = [asyncio.create_task(scrape_forever(stop)) for _ in range(4)]
            for i in range(40):
                write("4s" if i % 2 else "5s")
                assert await exporter.reload()
                await asyncio.sleep(0.03)
            stop.set()
            await asyncio.gather(*scrapers)
    finally:
        await server.close()
        await exporter.stop()
    assert scrapes > 20
    assert zeros == []
