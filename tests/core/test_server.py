"""The HTTP server in-process on a real loopback socket: /metrics, reload, status, secrets."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import logs
from exporter.config import load_file
from exporter.families import OWN_FAMILIES
from exporter.server import RunningExporter, scrape_budget
from tests.core.conftest import Behaviour
from tests.support import serving

SECRET = "pa55-w0rd-never-shown"

GOOD = f"""
checks:
  - name: cache
    kind: test
    url: "redis://:${{REDIS_PASSWORD}}@127.0.0.1:6379/0"
    mode: fail
    message: "NOAUTH for redis://:{SECRET}@127.0.0.1:6379 password {SECRET}"
  - {{name: fine, kind: test, labels: {{team: ops}}}}
"""


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> AsyncIterator[tuple[str, Path, RunningExporter]]:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    path = tmp_path / "config.yml"
    path.write_text(GOOD)
    exporter = RunningExporter(load_file(path), lambda: load_file(path))
    async with serving(exporter) as base:
        yield base, path, exporter


async def get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers=headers) as resp,
    ):
        body = await resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return resp.status, body.decode(), dict(resp.headers)


async def post(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url) as resp:
        return resp.status, await resp.text()


async def test_metrics_has_uniform_series_for_every_check(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, _, _ = served
    status, body, headers = await get(f"{base}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'runbook_exporter_check_success{check="cache",kind="test"} 0.0' in body
    assert 'runbook_exporter_check_success{check="fine",kind="test",team="ops"} 1.0' in body
    assert 'runbook_exporter_check_duration_seconds{check="fine",kind="test",team="ops"}' in body
    assert 'runbook_exporter_build_info{version="' in body
    assert "runbook_exporter_config_last_reload_successful 1.0" in body
    assert "runbook_exporter_config_last_reload_success_timestamp_seconds " in body
    assert "process_resident_memory_bytes " in body
    assert 'test_probe_value{check="fine",team="ops"}' in body


async def test_own_series_are_exposed_as_families_py_defines_them(
    served: tuple[str, Path, RunningExporter],
) -> None:
    """docs/metrics.md is rendered from OWN_FAMILIES: the exposition must match it."""
    base, _, _ = served
    _, body, _ = await get(f"{base}/metrics")
    exposed = {family.name: family for family in text_string_to_metric_families(body)}
    for own in OWN_FAMILIES:
        family = exposed[own.name]
        assert (family.type, family.documentation) == (own.type, own.help)
        assert len(family.samples) == 1
        assert tuple(family.samples[0].labels) == own.labels


async def test_openmetrics_and_gzip_by_request_headers(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, _, _ = served
    status, body, headers = await get(
        f"{base}/metrics",
        Accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        **{"Accept-Encoding": "gzip"},
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Content-Encoding"] == "gzip"
    assert body.endswith("# EOF\n")


async def test_fifty_concurrent_scrapes_all_succeed(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, _, _ = served
    replies = await asyncio.gather(*(get(f"{base}/metrics") for _ in range(50)))
    assert {status for status, _, _ in replies} == {200}
    assert all('check_success{check="fine",kind="test",team="ops"} 1.0' in b for _, b, _ in replies)


@pytest.mark.parametrize(
    ("header", "budget"),
    [
        (None, 9.5),
        ("10", 9.5),
        ("0", 9.5),
        ("-3", 9.5),
        ("garbage", 9.5),
        ("nan", 9.5),
        ("inf", 9.5),
        ("2.5", 2.0),
        ("0.4", 0.2),
    ],
)
def test_scrape_budget_from_timeout_header(header: str | None, budget: float) -> None:
    assert scrape_budget(header, 0.5, 10.0) == pytest.approx(budget)


async def test_hanging_check_bounded_by_scrape_timeout_header(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, path, _ = served
    path.write_text("checks:\n  - {name: stuck, kind: test, mode: hang, timeout: 1h}\n")
    assert (await post(f"{base}/-/reload"))[0] == 200
    status, body, _ = await get(f"{base}/metrics", **{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert status == 200
    assert 'runbook_exporter_check_success{check="stuck",kind="test"} 0.0' in body
    _, page, _ = await get(f"{base}/")
    assert "deadline" in page or "timed out" in page


async def test_valid_reload_replaces_checks(served: tuple[str, Path, RunningExporter]) -> None:
    base, path, exporter = served
    path.write_text("checks:\n  - {name: only, kind: test}\n")
    assert await post(f"{base}/-/reload") == (200, "Reloaded.\n")
    _, body, _ = await get(f"{base}/metrics")
    assert 'check_success{check="only",kind="test"} 1.0' in body
    assert 'check="fine"' not in body
    assert [s.name for s in exporter.runner.specs] == ["only"]


async def test_invalid_reload_is_refused_and_old_config_keeps_serving(
    served: tuple[str, Path, RunningExporter],
    log_stream: io.StringIO,
) -> None:
    base, path, _ = served
    path.write_text("checks:\n  - {name: x, kind: test, timeout: soon}\n")
    status, text = await post(f"{base}/-/reload")
    assert status == 400
    assert 'checks[0].timeout: expected a duration such as 5s, got "soon"' in text
    _, body, _ = await get(f"{base}/metrics")
    assert "runbook_exporter_config_last_reload_successful 0.0" in body
    assert 'check_success{check="fine",kind="test",team="ops"} 1.0' in body
    _, page, _ = await get(f"{base}/")
    assert "last reload FAILED" in page
    assert "reload refused" in log_stream.getvalue()


async def test_status_page_lists_checks_and_links(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, _, _ = served
    await get(f"{base}/metrics")
    status, page, _ = await get(f"{base}/")
    assert status == 200
    assert '<a href="/metrics">' in page
    assert '<a href="/config">' in page
    assert "<td>cache</td><td>test</td><td>FAILED</td>" in page
    assert "<td>fine</td><td>test</td><td>ok</td>" in page


async def test_health_and_readiness(served: tuple[str, Path, RunningExporter]) -> None:
    base, _, exporter = served
    assert (await get(f"{base}/-/healthy"))[0] == 200
    assert (await get(f"{base}/-/ready"))[0] == 200
    exporter.ready = False
    assert (await get(f"{base}/-/ready"))[0] == 503


async def test_no_secret_in_metrics_config_status_or_logs(
    served: tuple[str, Path, RunningExporter],
    log_stream: io.StringIO,
) -> None:
    base, _, _ = served
    seen = []
    for path in ("/metrics", "/", "/config"):
        status, body, _ = await get(f"{base}{path}")
        assert status == 200
        seen.append(body)
    assert "<secret>" in seen[2]  # /config shows the URL with its password masked
    assert "NOAUTH" in seen[1]  # the status page shows the (redacted) reason
    everything = "\n".join([*seen, log_stream.getvalue()])
    assert "check failed" in log_stream.getvalue()
    assert SECRET not in everything


async def test_reused_results_render_the_same_series_in_both_formats(
    served: tuple[str, Path, RunningExporter],
    test_kind: Behaviour,
) -> None:
    base, path, _ = served
    path.write_text("checks:\n  - {name: cached, kind: test, min_interval: 1h}\n")
    assert (await post(f"{base}/-/reload"))[0] == 200
    bodies = [(await get(f"{base}/metrics"))[1] for _ in range(3)]
    series = [b[: b.index("# HELP runbook_exporter_build_info")] for b in bodies]
    assert series[0] == series[1] == series[2]
    assert test_kind.started == 1
    _, om, _ = await get(f"{base}/metrics", Accept="application/openmetrics-text")
    assert om.count("# EOF") == 1
    assert om.endswith("# EOF\n")
    assert 'test_probe_value{check="cached"} 1.0' in om
    assert "runbook_exporter_build_info" in om


def test_json_log_lines_are_parseable_and_redacted() -> None:
    stream = io.StringIO()
    logs.setup("info", "json", stream)
    try:
        logs.event(
            logging.WARNING,
            "check failed",
            check="db",
            reason=f"auth failed for postgresql://app:{SECRET}@127.0.0.1/db",
        )
        logs.event(logging.DEBUG, "not shown at info")
    finally:
        logs.LOGGER.handlers.clear()
        logs.LOGGER.propagate = True
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert (record["level"], record["msg"], record["check"]) == ("warn", "check failed", "db")
    assert record["reason"] == "auth failed for postgresql://app:<secret>@127.0.0.1/db"


async def test_gzip_body_is_one_complete_member_on_cached_and_fresh_scrapes(
    served: tuple[str, Path, RunningExporter],
) -> None:
    base, path, _ = served
    path.write_text("checks:\n  - {name: cached, kind: test, min_interval: 1h}\n")
    assert (await post(f"{base}/-/reload"))[0] == 200
    for accept in ("text/plain", "application/openmetrics-text"):
        for _ in range(2):  # the first encodes the checks' part, the second reuses it
            async with (
                aiohttp.ClientSession(auto_decompress=False) as session,
                session.get(
                    f"{base}/metrics", headers={"Accept-Encoding": "gzip", "Accept": accept}
                ) as resp,
            ):
                raw = await resp.read()
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # exactly one gzip member
            text = inflater.decompress(raw).decode()
            assert inflater.eof
            assert inflater.unused_data == b""
            assert 'test_probe_value{check="cached"} 1.0' in text
            assert "runbook_exporter_build_info" in text
            assert text.endswith("# EOF\n") == (accept != "text/plain")


async def test_a_cached_state_is_served_as_valid_gzip_equal_to_the_plain_text(
    tmp_path: Path,
) -> None:
    """Scrapes of a wholly cached state reuse the encoded and compressed checks' part; the
    oracles are Python's gzip (CRC and length checked) and prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    path = tmp_path / "cached.yml"
    path.write_text(
        "checks:\n"
        + "".join(f"  - {{name: c{i}, kind: test, min_interval: 1h}}\n" for i in range(50))
    )
    exporter = RunningExporter(load_file(path), lambda: load_file(path))
    await exporter.start()
    try:
        bodies = [
            gzip.decompress((await exporter.scrape("10", None, gzip=True))[0]) for _ in range(3)
        ]
        plain = (await exporter.scrape("10", None))[0]
    finally:
        await exporter.stop()

    def checks_part(body: bytes) -> list[tuple[str, dict[str, str], float]]:
        """The checks' series (the exporter's own families are fresh on every scrape)."""
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(body.decode())
            if family.name.startswith(("runbook_exporter_check_", "test_"))
            for sample in family.samples
        ]

    expected = checks_part(plain)
    assert sum(1 for name, _, _ in expected if name == "runbook_exporter_check_success") == 50
    assert all(checks_part(body) == expected for body in bodies)
