"""The status page as a person sees it: Debian's chromium renders it headless (scripts
run), the rendered DOM is checked for the key values and the debug links, and a screenshot
is kept as a test artefact in .cache/artefacts/status-page.png (ignored by git)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from exporter.config import load_data
from exporter.server import RunningExporter, make_app
from tests.support import require_binary

ARTEFACTS = Path(__file__).resolve().parents[2] / ".cache" / "artefacts"


@pytest.fixture
async def status_url(tmp_path: Path) -> AsyncIterator[str]:
    data = {
        "checks": [
            {"name": "workdir-disk", "kind": "disk", "path": str(tmp_path)},
            {"name": "gone", "kind": "file", "path": str(tmp_path / "missing.json")},
        ]
    }
    exporter = RunningExporter(load_data(data, "t"), lambda: load_data(data, "t"))
    await exporter.start()
    await exporter.scrape(None, None)  # one run, so the page has values and a failure
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()
    await exporter.stop()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("chromium", "chromium")
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_status_page_in_headless_chromium(status_url: str) -> None:
    done = await asyncio.to_thread(chromium, "--dump-dom", status_url)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<td>workdir-disk</td><td>disk</td><td>ok</td>" in dom
    assert "disk_" in dom.split("workdir-disk", 1)[1].split("</tr>", 1)[0]  # its key values
    assert "<td>gone</td><td>file</td><td>FAILED</td>" in dom
    assert 'href="/debug?check=gone"' in dom
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    done = await asyncio.to_thread(
        chromium, f"--screenshot={shot}", "--window-size=1280,600", status_url
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
