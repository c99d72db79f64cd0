"""What a person looks at: key values on the status page and in ``check --format table``,
and the debug views of a check's last run (``/debug``) and of a probe (``debug=true``)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from exporter.config import load_data, load_file
from exporter.samples import Family, Sample
from exporter.server import RunningExporter
from exporter.summary import key_value, key_values
from tests.support import serving

SECRET = "s3cr3t-never-shown-here"
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "smart-city.rules.yml"
CONFIG = f"""
checks:
  - name: cache
    kind: test
    url: "redis://:{SECRET}@127.0.0.1:6379/0"
    mode: fail
    message: "NOAUTH for redis://:{SECRET}@127.0.0.1:6379"
  - {{name: fine, kind: test}}
"""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    exporter = RunningExporter(load_file(path), lambda: load_file(path))
    async with serving(exporter) as base:
        yield base


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def test_key_values_name_the_family_labels_and_show_ages() -> None:
    jobs = Family("bullmq_queue_jobs", "gauge", "h", ("queue", "state"))
    fresh = Family("freshness_timestamp_seconds", "gauge", "h", ("item",))
    now = time.time()
    samples = [
        Sample(
            jobs, (("check", "q"), ("team", "ops"), ("queue", "ingest"), ("state", "waiting")), 12
        ),
        Sample(fresh, (("check", "q"), ("item", "gps")), now - 90),
    ]
    assert key_value(samples[0]) == "bullmq_queue_jobs{queue=ingest,state=waiting}=12"
    assert key_value(samples[1], now=now) == "freshness_timestamp_seconds{item=gps}=1m30s ago"
    assert key_values(samples * 4, limit=3)[-1] == "(+5 more)"


async def test_status_page_shows_values_links_debug_and_refreshes(served: str) -> None:
    await get(f"{served}/metrics")
    status, page = await get(f"{served}/")
    assert status == 200
    assert '<meta http-equiv="refresh"' in page
    assert "<td class='values'>test_probe_value=" in page
    assert "<a href='/debug?check=fine'>debug</a>" in page
    assert SECRET not in page


async def test_debug_view_of_a_checks_last_run(served: str) -> None:
    status, text = await get(f"{served}/debug?check=cache")
    assert status == 200
    assert "Result: not run yet" in text
    await get(f"{served}/metrics")
    status, text = await get(f"{served}/debug?check=cache")
    assert "Result: FAILED" in text
    assert "Why it failed: NOAUTH for redis://:<secret>@127.0.0.1:6379" in text
    assert 'test_probe_value{check="cache"}' in text
    assert '"url": "redis://:<secret>@127.0.0.1:6379/0"' in text
    assert SECRET not in text
    assert (await get(f"{served}/debug?check=nope"))[0] == 404


async def test_probe_debug_view_says_what_was_asked_and_why_it_failed() -> None:
    config = load_data(
        {
            "modules": {
                "t": {"kind": "tcp", "timeout": "2s", "allowed_targets": [r"127\.0\.0\.1:\d+"]}
            }
        },
        "t",
    )
    exporter = RunningExporter(config, lambda: config)
    async with serving(exporter) as base:
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        url = f"{base}/probe?module=t&target=127.0.0.1:{port}&debug=true"
        status, text = await get(url)
    assert status == 200
    assert f"Probe of 127.0.0.1:{port} with module t" in text
    assert "Result: FAILED" in text
    assert "Why it failed: connect to 127.0.0.1:" in text
    assert "probe_success{} 0" in text


def test_check_table_shows_each_checks_main_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"checks:\n  - {{name: here, kind: disk, path: {tmp_path}}}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "check",
            "--config.file",
            str(path),
            "--format",
            "table",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["CHECK", "KIND", "RESULT", "DURATION", "VALUES", "ERROR"]
    assert row.startswith("here")
    assert "disk_" in row  # a value, not only ok/FAIL


async def test_status_page_links_the_alerts_each_check_feeds() -> None:
    """Read from the profile's bundle section by the bundle generator's own code: the link
    is the runbook_url the generated rule carries."""
    profile = ROOT / "profiles" / "smart-city.yml"
    rules = RULES.read_text()
    (api_url,) = re.findall(r"runbook_url: (\S+#smartcityapidown)\n", rules)
    exporter = RunningExporter(load_file(profile, env={}), lambda: load_file(profile, env={}))
    async with serving(exporter) as base:
        status, page = await get(f"{base}/")
    assert status == 200
    row = page.split("<td>api</td>", 1)[1].split("</tr>", 1)[0]
    assert f"<a href='{api_url}'>SmartCityApiDown</a> (critical)" in row
    assert "<td class='alerts'></td>" in page or "SmartCity" in page  # other rows render


async def test_a_config_without_bundle_has_no_alert_links(served: str) -> None:
    status, page = await get(f"{served}/")
    assert status == 200
    assert "<td class='alerts'></td>" in page
