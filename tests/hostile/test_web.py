"""The exporter's own HTTP side under attack: idle-socket floods, slow senders, and
reloads requested by web pages (cross-site requests, DNS rebinding)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.hostile.conftest import StartExporter
from tests.support import async_wait_until

CONFIG = "checks:\n  - {name: self, kind: tcp, address: '127.0.0.1:1', timeout: 1s}\n"


async def test_idle_socket_flood_is_shed_without_a_log_flood(
    exporter_process: StartExporter,
) -> None:
    """Before: ~1,020 idle sockets under a 1024-fd limit made /metrics unreachable and
    wrote 457 k log lines in 10 s (here: 66 k lines in 5 s under a 64-fd limit)."""
    # The default idle timeout (1m) is longer than the test: idle connections are shed
    # when accept() fails, not when they time out.
    exporter = await exporter_process(CONFIG, fd_limit=64)
    flood = exporter.idle_flood(80)
    try:
        await asyncio.sleep(0.5)  # the flood holds every descriptor for a while

        async def healthy() -> bool:
            return await exporter.answers("/-/healthy", timeout=1.0)

        await async_wait_until(healthy, 30, "/-/healthy answers again")
        _, body = await exporter.scrape(5)
        assert "runbook_exporter_check_success" in body
    finally:
        for sock in flood:
            sock.close()
    lines = exporter.log().splitlines()
    assert len(lines) < 20, lines[:30]
    assert any("cannot accept connections" in line for line in lines)


async def test_slow_sender_is_disconnected_after_the_idle_timeout(
    exporter_process: StartExporter,
) -> None:
    exporter = await exporter_process(CONFIG, "--web.idle-timeout=1s")
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed = False
    try:
        while time.monotonic() - started < 20:
            writer.write(b"X-Slow: a\r\n")  # never the blank line that ends the headers
            try:
                await writer.drain()
                data = await asyncio.wait_for(reader.read(100), 0.3)
            except (ConnectionError, TimeoutError) as exc:
                if isinstance(exc, ConnectionError):
                    closed = True
                    break
                continue
            if data == b"":
                closed = True
                break
    finally:
        writer.close()
    assert closed
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("headers", "data"),
    [
        ({"Origin": "http://evil.example"}, None),
        ({"Origin": "http://127.0.0.1:9711"}, None),  # DNS rebinding: the page's origin
        ({"Sec-Fetch-Site": "cross-site"}, None),
        ({"Content-Type": "text/plain"}, b"x"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1"),
        ({"Content-Type": "multipart/form-data; boundary=b"}, b"--b--\r\n"),
    ],
    ids=["origin", "rebinding", "sec-fetch-site", "text", "form", "multipart"],
)
async def test_reload_requested_by_a_web_page_is_refused(
    exporter_process: StartExporter, headers: dict[str, str], data: bytes | None
) -> None:
    exporter = await exporter_process(CONFIG)
    exporter.config.write_text("checks: []\n")
    status, text = await exporter.post("/-/reload", headers=headers, data=data)
    assert status == 403, text
    assert text.startswith("Reload refused: ")
    _, page = await exporter.get("/")
    assert "(1 checks)" in page  # not reloaded
    status, _ = await exporter.post("/-/reload")
    assert status == 200
    _, page = await exporter.get("/")
    assert "(0 checks)" in page


async def test_lifecycle_can_be_disabled(exporter_process: StartExporter) -> None:
    exporter = await exporter_process(CONFIG, "--no-web.enable-lifecycle")
    status, text = await exporter.post("/-/reload")
    assert (status, text) == (403, "Lifecycle API is not enabled.\n")
