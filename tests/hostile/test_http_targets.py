"""The ``http`` kind against hostile health endpoints: huge JSON keys, redirects that
try to collect credentials, numbers Python refuses, timestamps from the future (and one
from a database, since that refusal is the runner's)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from aiohttp import web

from exporter.redact import MAX_REASON
from tests.hostile.conftest import StartExporter, watching_health
from tests.support import run_check, value, values
from tests.web.conftest import Serve


def json_app(document: object) -> web.Application:
    body = json.dumps(document)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    return app


async def test_huge_json_key_in_a_reason_keeps_deadline_and_health(
    serve: Serve, exporter_process: StartExporter
) -> None:
    """Before: a 40 KB key made scrapes take 6.2 s (deadline 4.5 s) and blocked
    /-/healthy 6.1 s; 150 KB froze the process for 60 s and SIGTERM was ignored."""
    key = "k" * 150_000
    base = await serve(json_app({"status": "ok", "components": {key: {"state": "x"}}}))
    exporter = await exporter_process(
        "checks:\n"
        f"  - {{name: api, kind: http, url: '{base}/health', status_path: status,"
        " components: {path: components, status_field: status}}\n"
    )
    async with watching_health(exporter) as health:
        for _ in range(3):
            took, body = await exporter.scrape(5)
            assert took < 5 * 1.5
    assert 'check_success{check="api",kind="http"} 0.0' in body
    assert len(body) < 20_000  # the key is not a label value
    status, page = await exporter.get("/")
    assert status == 200
    assert "name has 150000 characters, more than 256; not exported" in page
    assert len(page) < 20_000
    assert health.worst < 1.0, f"/-/healthy took {health.worst:.3f}s"
    started = time.monotonic()
    assert exporter.stop() == 0
    assert time.monotonic() - started < 15


async def test_credentials_do_not_follow_a_redirect_to_another_origin(serve: Serve) -> None:
    received: dict[str, dict[str, str]] = {}

    async def collect(request: web.Request) -> web.Response:
        received[request.path] = dict(request.headers)
        return web.json_response({"status": "ok"})

    other = web.Application()
    other.router.add_get("/landing", collect)
    other_base = await serve(other)

    async def redirect_away(request: web.Request) -> web.Response:
        received[request.path] = dict(request.headers)
        raise web.HTTPFound(f"{other_base}/landing")

    async def redirect_home(request: web.Request) -> web.Response:
        received[request.path] = dict(request.headers)
        raise web.HTTPFound("/home")

    home = web.Application()
    home.router.add_get("/away", redirect_away)
    home.router.add_get("/bounce", redirect_home)
    home.router.add_get("/home", collect)
    base = await serve(home)
    headers = {
        "X-Api-Key": "api-key-1234",
        "X-Auth-Token": "auth-token-5678",
        "X-Trace": "public-value",
    }
    away = await run_check(
        {
            "name": "away",
            "kind": "http",
            "url": f"{base}/away",
            "headers": headers,
            "bearer_token": "bearer-9999",
        }
    )
    assert away.success, away.error
    assert received["/away"]["X-Api-Key"] == "api-key-1234"
    landed = received["/landing"]
    for name in ("X-Api-Key", "X-Auth-Token", "Authorization"):
        assert name not in landed, f"{name} followed the redirect to another origin"
    assert landed["X-Trace"] == "public-value"
    bounced = await run_check(
        {"name": "bounce", "kind": "http", "url": f"{base}/bounce", "headers": headers}
    )
    assert bounced.success, bounced.error
    assert received["/home"]["X-Api-Key"] == "api-key-1234"


async def test_oversized_json_number_is_a_clear_reason_and_up_zero(serve: Serve) -> None:
    base = await serve(json_app({}))
    app = web.Application()

    async def health(_: web.Request) -> web.Response:
        return web.Response(
            text='{"status": "ok", "n": ' + "9" * 5000 + "}", content_type="application/json"
        )

    app.router.add_get("/health", health)
    base = await serve(app)
    result = await run_check(
        {"name": "api", "kind": "http", "url": f"{base}/health", "status_path": "status"}
    )
    assert result.error == "body is not usable JSON: a number has more than 4300 digits"
    assert value(result, "http_probe_up") == 0


async def test_timestamps_from_the_future_fail_the_item_instead_of_looking_fresh(
    serve: Serve,
) -> None:
    now = time.time()
    base = await serve(
        json_app(
            {
                "fine": now - 60,
                "ahead_a_little": now + 60,
                "epoch_1e30": 1e30,
                "year_9999": "9999-12-31T23:59:59Z",
            }
        )
    )
    freshness = [{"path": p} for p in ("fine", "ahead_a_little", "epoch_1e30", "year_9999")]
    result = await run_check(
        {"name": "api", "kind": "http", "url": f"{base}/health", "freshness": freshness}
    )
    assert not result.success
    exported = values(result, "freshness_timestamp_seconds")
    assert set(exported) == {(("item", "fine"),), (("item", "ahead_a_little"),)}
    reason = result.error or ""
    assert reason.startswith('freshness_timestamp_seconds{item="epoch_1e30"} is ')
    assert "more than max_future_skew 5m ahead of this host's clock (and 1 more)" in reason
    assert len(reason) <= MAX_REASON
    strict = await run_check(
        {
            "name": "api",
            "kind": "http",
            "url": f"{base}/health",
            "freshness": [{"path": "ahead_a_little"}],
            "max_future_skew": "10s",
        }
    )
    assert not strict.success
    assert values(strict, "freshness_timestamp_seconds") == {}
    assert "max_future_skew 10s" in (strict.error or "")


async def test_a_future_time_from_a_database_fails_too(tmp_path: Path) -> None:
    """The refusal is the runner's, for every family declared a past time: here a real
    SQLite file whose newest row is dated 9999-12-31."""
    path = tmp_path / "engine.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (at TEXT)")
        db.execute("INSERT INTO events VALUES ('9999-12-31T23:59:59Z')")
    result = await run_check(
        {
            "name": "engine-db",
            "kind": "sqlite",
            "path": str(path),
            "queries": [
                {"name": "newest", "type": "freshness", "sql": "SELECT max(at) FROM events"}
            ],
        }
    )
    assert not result.success
    assert values(result, "freshness_timestamp_seconds") == {}
    assert (result.error or "").startswith(
        'freshness_timestamp_seconds{item="newest"} is 9999-12-31T23:59:59Z, more than '
        "max_future_skew 5m ahead"
    )


async def test_probe_endpoint_refuses_future_times_as_the_runner_does(
    serve: Serve, exporter_process: StartExporter
) -> None:
    base = await serve(json_app({"at": "9999-12-31T23:59:59Z"}))
    exporter = await exporter_process(
        "checks: []\n"
        "modules:\n"
        "  health:\n"
        "    kind: http\n"
        "    freshness: [{path: at}]\n"
        "    allowed_targets: ['http://127\\.0\\.0\\.1:\\d+/health']\n"
    )
    status, body = await exporter.get(f"/probe?module=health&target={base}/health")
    assert status == 200, body
    assert "probe_success 0.0" in body
    assert "freshness_timestamp_seconds{" not in body
    status, debug = await exporter.get(f"/probe?module=health&target={base}/health&debug=true")
    assert "more than max_future_skew 5m ahead of this host's clock" in debug
