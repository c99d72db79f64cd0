"""The http kind against real aiohttp servers on loopback serving the runbooks' documents.

Shapes come from the runbooks: the surveillance tracker's ``/health`` (``status`` and
``components`` including ``components.ingestion.lastIngestedAt``), its ``/api/sources``
list (``id``, ``lastIngestedAt``, ``totalRecords``) and ``/api/dataset/latest``
(``generatedAt``); smart-city's ``/health``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from exporter.config import load_data
from tests.leaks import polled
from tests.support import (
    async_wait_until,
    config_problems,
    free_port,
    run_check,
    run_checks,
    running,
    value,
    values,
)
from tests.web.conftest import Listener, LoopbackCA, Serve


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


INGESTED = "2026-11-22T19:00:00"
HEALTH_OK = {
    "status": "ok",
    "timestamp": "2026-11-22T20:00:00.000Z",
    "components": {
        "database": {"status": "ok", "path": "/var/lib/aintivirus-engine/data/engine.sqlite"},
        "redis": {"status": "ok"},
        "ingestion": {"status": "ok", "lastIngestedAt": f"{INGESTED}.000Z"},
    },
}
HEALTH_REDIS_DOWN = {
    "status": "error",
    "components": {
        "database": {"status": "ok"},
        "redis": {"status": "error", "message": "connect ECONNREFUSED 127.0.0.1:6379"},
        "ingestion": {"status": "ok", "lastIngestedAt": f"{INGESTED}.000Z"},
    },
}
SOURCES = [
    {
        "id": "redlightcameralist",
        "lastIngestedAt": "2026-11-22T19:05:00.000Z",
        "totalRecords": 1523,
    },
    {
        "id": "atlas-of-surveillance",
        "lastIngestedAt": "2026-11-22T19:10:00+01:00",
        "totalRecords": 8871,
    },
    {"id": "overpass-alpr", "lastIngestedAt": "2026-11-22T02:00:00Z", "totalRecords": 40213},
]


def json_app(routes: dict[str, Any], status: int = 200) -> web.Application:
    """An app serving each path's object as JSON (strings and bytes as they are)."""
    app = web.Application()
    for path, document in routes.items():

        async def handler(_: web.Request, document: Any = document) -> web.Response:
            if isinstance(document, bytes):
                return web.Response(body=document, status=status)
            if isinstance(document, str):
                return web.Response(text=document, status=status)
            return web.json_response(document, status=status)

        app.router.add_get(path, handler)
    return app


HEALTH_CHECK = {
    "name": "engine",
    "kind": "http",
    "status_path": "status",
    "components": "components",
    "freshness": [{"item": "ingestion", "path": "components.ingestion.lastIngestedAt"}],
}


async def test_healthy_document_reports_status_components_and_freshness(serve: Serve) -> None:
    base = await serve(json_app({"/health": HEALTH_OK}))
    result = await run_check({**HEALTH_CHECK, "url": f"{base}/health"})
    assert result.success, result.error
    assert value(result, "http_probe_up") == 1
    assert value(result, "http_probe_status_code") == 200
    assert value(result, "http_probe_response_size_bytes") == len(json.dumps(HEALTH_OK))
    assert value(result, "http_probe_duration_seconds") > 0
    assert values(result, "http_component_up") == {
        (("component", "database"),): 1,
        (("component", "redis"),): 1,
        (("component", "ingestion"),): 1,
    }
    assert value(result, "freshness_timestamp_seconds", item="ingestion") == ts(INGESTED)
    assert values(result, "http_probe_tls_cert_expiry_timestamp_seconds") == {}


async def test_redis_component_error_is_reported_apart_from_service_down(serve: Serve) -> None:
    """status "error" is the document's verdict: up 0, the check itself worked."""
    base = await serve(json_app({"/health": HEALTH_REDIS_DOWN}))
    result = await run_check({**HEALTH_CHECK, "url": f"{base}/health"})
    assert result.success, result.error
    assert value(result, "http_probe_up") == 0
    assert value(result, "http_component_up", component="redis") == 0
    assert value(result, "http_component_up", component="database") == 1
    # The ingestion timestamp is exported although the status is bad.
    assert value(result, "freshness_timestamp_seconds", item="ingestion") == ts(INGESTED)


async def test_unhealthy_status_code_still_exports_what_the_body_says(serve: Serve) -> None:
    """NestJS terminus answers 503 with the details: the components are still read."""
    base = await serve(json_app({"/health": HEALTH_REDIS_DOWN}, status=503))
    result = await run_check(
        {"name": "e", "kind": "http", "url": f"{base}/health", "components": "components"}
    )
    assert not result.success
    assert result.error == "status 503, expected 2xx"
    assert value(result, "http_probe_status_code") == 503
    assert value(result, "http_probe_up") == 0
    assert value(result, "http_component_up", component="redis") == 0


async def test_component_down_alone_does_not_fail_the_check(serve: Serve) -> None:
    """Without status_path, up means the status code; components page on their own."""
    base = await serve(json_app({"/health": HEALTH_REDIS_DOWN}))
    result = await run_check(
        {"name": "e", "kind": "http", "url": f"{base}/health", "components": "components"}
    )
    assert result.success, result.error
    assert value(result, "http_probe_up") == 1
    assert value(result, "http_component_up", component="redis") == 0


async def test_components_as_a_list_with_configured_fields(serve: Serve) -> None:
    document = {
        "status": "UP",
        "checks": [
            {"service": "mongodb", "state": {"health": "healthy"}},
            {"service": "face-encoder", "state": {"health": "degraded"}},
            {"service": "rag-engine", "state": {"health": "HEALTHY"}},
        ],
    }
    base = await serve(json_app({"/health": document}))
    result = await run_check(
        {
            "name": "faces",
            "kind": "http",
            "url": f"{base}/health",
            "status_path": "status",
            "status_ok": ["up"],
            "components": {
                "path": "checks",
                "name_field": "service",
                "status_field": "state.health",
                "ok": ["healthy"],
            },
        }
    )
    assert result.success, result.error
    assert value(result, "http_probe_up") == 1  # "UP" is "up": compared without case
    assert values(result, "http_component_up") == {
        (("component", "mongodb"),): 1,
        (("component", "face-encoder"),): 0,
        (("component", "rag-engine"),): 1,
    }


async def test_components_whose_value_is_the_status(serve: Serve) -> None:
    base = await serve(json_app({"/health": {"components": {"redis": "up", "db": False}}}))
    result = await run_check(
        {"name": "e", "kind": "http", "url": f"{base}/health", "components": "components"}
    )
    assert result.success, result.error
    assert value(result, "http_component_up", component="redis") == 1
    assert value(result, "http_component_up", component="db") == 0


async def test_sources_list_gives_one_freshness_and_value_per_source(serve: Serve) -> None:
    base = await serve(json_app({"/api/sources": SOURCES}))
    result = await run_check(
        {
            "name": "sources",
            "kind": "http",
            "url": f"{base}/api/sources",
            "freshness": [{"each": ".", "item_field": "id", "path": "lastIngestedAt"}],
            "values": [{"each": ".", "item_field": "id", "path": "totalRecords"}],
        }
    )
    assert result.success, result.error
    assert values(result, "freshness_timestamp_seconds") == {
        (("item", "redlightcameralist"),): ts("2026-11-22T19:05:00"),
        (("item", "atlas-of-surveillance"),): ts("2026-11-22T18:10:00"),
        (("item", "overpass-alpr"),): ts("2026-11-22T02:00:00"),
    }
    assert values(result, "http_json_value") == {
        (("item", "redlightcameralist"), ("field", "totalRecords")): 1523,
        (("item", "atlas-of-surveillance"), ("field", "totalRecords")): 8871,
        (("item", "overpass-alpr"), ("field", "totalRecords")): 40213,
    }


async def test_timestamps_in_every_supported_form(serve: Serve) -> None:
    when = ts("2026-11-22T20:15:30")
    document = {
        "iso_zulu": "2026-11-22T20:15:30Z",
        "iso_offset": "2026-11-22T22:15:30.000+02:00",
        "iso_naive": "2026-11-22T20:15:30",
        "epoch_s": int(when),
        "epoch_s_fraction": when + 0.25,
        "epoch_ms": int(when * 1000),
        "epoch_ms_text": str(int(when * 1000)),
        "nested": {"generatedAt": "2026-11-22 20:15:30+00:00"},
    }
    names = [k for k in document if k != "nested"]
    base = await serve(json_app({"/api/dataset/latest": document}))
    result = await run_check(
        {
            "name": "dataset",
            "kind": "http",
            "url": f"{base}/api/dataset/latest",
            "freshness": [{"path": n, "item": n} for n in names] + [{"path": "nested.generatedAt"}],
        }
    )
    assert result.success, result.error
    got = values(result, "freshness_timestamp_seconds")
    assert got == {
        **{(("item", n),): when for n in names if n != "epoch_s_fraction"},
        (("item", "epoch_s_fraction"),): when + 0.25,
        (("item", "nested.generatedAt"),): when,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "<html><body>502 Bad Gateway</body></html>",
            "body is not valid JSON: Expecting value at line 1 column 1",
        ),
        (
            '{"status": "ok", "components": {"redis": {"sta',
            "body is not valid JSON: Unterminated string starting at line 1 column 43",
        ),
        ('{"status": "ok"', "body is not valid JSON: Expecting ',' delimiter at line 1 column 16"),
        ("", "body is empty, expected JSON"),
        (b'{"status": "\xff"}', "body is not valid JSON: not UTF-8 text"),
        ("[" * 200_000, "body is not usable JSON: nested too deeply"),
    ],
    ids=["html", "truncated-string", "truncated-object", "empty", "binary", "deep"],
)
async def test_bodies_that_are_not_json_fail_with_a_reason(
    serve: Serve, body: str | bytes, reason: str
) -> None:
    base = await serve(json_app({"/health": body}))
    result = await run_check({**HEALTH_CHECK, "url": f"{base}/health"})
    assert not result.success
    assert result.error == reason
    assert value(result, "http_probe_up") == 0
    assert value(result, "http_probe_status_code") == 200
    assert values(result, "http_component_up") == {}


def ingested(last: object) -> dict[str, Any]:
    return {"status": "ok", "components": {"ingestion": {"status": "ok", "lastIngestedAt": last}}}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            {"status": "ok", "components": {"redis": {"status": "ok"}}},
            'components.ingestion.lastIngestedAt: no key "ingestion" in components',
        ),
        (
            {"status": "ok", "components": []},
            "components.ingestion.lastIngestedAt: components is a list, not an object",
        ),
        (
            ingested({"at": 1}),
            "components.ingestion.lastIngestedAt: expected a timestamp, got an object",
        ),
        (
            ingested("yesterday"),
            "components.ingestion.lastIngestedAt: expected an ISO 8601 time or epoch seconds, "
            'got "yesterday"',
        ),
        (ingested(None), "components.ingestion.lastIngestedAt: expected a timestamp, got null"),
        (
            {"components": {}},
            'status: no key "status" in the document; '
            'components.ingestion.lastIngestedAt: no key "ingestion" in components',
        ),
        (
            {
                "status": {"code": "ok"},
                "components": {"ingestion": {"status": "ok", "lastIngestedAt": 1}},
            },
            "status is an object, expected a status such as ok",
        ),
        (
            "just a string",
            "status: the document is a string, not an object; "
            "components: the document is a string, not an object; "
            "components.ingestion.lastIngestedAt: the document is a string, not an object",
        ),
    ],
    ids=["missing", "list", "object", "text", "null", "no-status", "status-type", "scalar"],
)
async def test_missing_paths_and_wrong_types_name_the_path(
    serve: Serve, document: Any, reason: str
) -> None:
    base = await serve(json_app({"/health": json.dumps(document)}))
    result = await run_check({**HEALTH_CHECK, "url": f"{base}/health"})
    assert not result.success
    assert result.error == reason


async def test_wrong_value_types_per_element_keep_the_good_elements(serve: Serve) -> None:
    sources = [
        {"id": "a", "lastIngestedAt": "2026-11-22T19:00:00Z", "totalRecords": "17"},
        {"id": "b", "totalRecords": "many"},
        {"name": "c", "lastIngestedAt": 0, "totalRecords": True},
    ]
    base = await serve(json_app({"/api/sources": sources}))
    result = await run_check(
        {
            "name": "s",
            "kind": "http",
            "url": f"{base}/api/sources",
            "freshness": [{"each": ".", "item_field": "id", "path": "lastIngestedAt"}],
            "values": [
                {"each": ".", "item_field": "id", "path": "totalRecords", "field": "records"}
            ],
        }
    )
    assert not result.success
    assert result.error == (
        '[1].lastIngestedAt: no key "lastIngestedAt" in [1]; '
        '[2].id: no key "id" in [2]; '
        '[1].totalRecords: expected a number, got a string "many" (and 1 more)'
    )
    assert values(result, "freshness_timestamp_seconds") == {
        (("item", "a"),): ts("2026-11-22T19:00:00")
    }
    assert values(result, "http_json_value") == {(("item", "a"), ("field", "records")): 17}


async def test_optional_entries_skip_missing_and_null_but_not_wrong_types(
    serve: Serve,
) -> None:
    """Before the first ingest run there is no ingestion component yet, or it is null."""
    document = {
        "status": "ok",
        "components": {"redis": {"status": "ok"}, "ingestion": None},
        "sources": [{"id": "a", "lastIngestedAt": None}, {"id": "b", "lastIngestedAt": 1}],
        "generatedAt": True,
    }
    base = await serve(json_app({"/health": document}))
    check = {
        "name": "e",
        "kind": "http",
        "url": f"{base}/health",
        "freshness": [
            {"item": "ingestion", "path": "components.ingestion.lastIngestedAt", "optional": True},
            {"item": "export", "path": "exports.latest", "optional": True},
            {"each": "sources", "item_field": "id", "path": "lastIngestedAt", "optional": True},
            {"each": "connectors", "path": "lastRun", "optional": True},
        ],
    }
    result = await run_check(check)
    assert result.success, result.error
    assert values(result, "freshness_timestamp_seconds") == {(("item", "b"),): 1}
    wrong_type = await run_check(
        {
            **check,
            "freshness": [
                {"path": "generatedAt", "optional": True},
                {"path": "status.at", "optional": True},
            ],
        }
    )
    assert wrong_type.error == (
        "generatedAt: expected a timestamp, got true; status.at: status is a string, not an object"
    )


async def test_max_items_bounds_the_labels(serve: Serve) -> None:
    sources = [{"id": f"s{i}", "totalRecords": i} for i in range(5)]
    base = await serve(json_app({"/api/sources": {"sources": sources}}))
    result = await run_check(
        {
            "name": "s",
            "kind": "http",
            "url": f"{base}/api/sources",
            "max_items": 3,
            "values": [{"each": "sources", "item_field": "id", "path": "totalRecords"}],
        }
    )
    assert not result.success
    assert result.error == (
        "sources has 5 elements, more than max_items 3; only the first 3 are exported"
    )
    assert len(values(result, "http_json_value")) == 3


async def test_each_over_an_object_names_items_by_key(serve: Serve) -> None:
    document = {"connectors": {"overpass-alpr": {"lastRun": 1763776800000}}}
    base = await serve(json_app({"/x": document}))
    result = await run_check(
        {
            "name": "s",
            "kind": "http",
            "url": f"{base}/x",
            "freshness": [{"each": "connectors", "path": "lastRun"}],
        }
    )
    assert result.success, result.error
    assert value(result, "freshness_timestamp_seconds", item="overpass-alpr") == 1763776800


async def test_duplicate_items_are_reported_not_exported_twice(serve: Serve) -> None:
    sources = [{"id": "a", "t": 1700000000}, {"id": "a", "t": 1700000500}]
    base = await serve(json_app({"/s": sources}))
    result = await run_check(
        {
            "name": "s",
            "kind": "http",
            "url": f"{base}/s",
            "freshness": [{"each": ".", "item_field": "id", "path": "t"}],
        }
    )
    assert result.error == '[1].t: freshness item "a" already exported'
    assert values(result, "freshness_timestamp_seconds") == {(("item", "a"),): 1700000000}


async def test_plain_endpoint_without_json_options_is_not_parsed(serve: Serve) -> None:
    base = await serve(json_app({"/": "<html>dashboard</html>"}))
    result = await run_check({"name": "dash", "kind": "http", "url": f"{base}/"})
    assert result.success, result.error
    assert value(result, "http_probe_up") == 1
    assert value(result, "http_probe_response_size_bytes") == len("<html>dashboard</html>")


async def test_valid_status_codes_are_configurable(serve: Serve) -> None:
    base = await serve(json_app({"/": "gone"}, status=410))
    ok = await run_check(
        {"name": "a", "kind": "http", "url": f"{base}/", "valid_status_codes": [200, 410]}
    )
    assert ok.success, ok.error
    bad = await run_check(
        {"name": "a", "kind": "http", "url": f"{base}/", "valid_status_codes": ["2xx", 301]}
    )
    assert bad.error == "status 410, expected 2xx or 301"


async def test_body_over_the_limit_fails_with_a_reason(serve: Serve) -> None:
    big = {"status": "ok", "padding": "x" * (2 * 1024 * 1024)}

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)  # no Content-Length: the limit applies while reading
        for _ in range(40):
            await response.write(b" " * 4096)
        await response.write_eof()
        return response

    app = json_app({"/health": big})
    app.router.add_get("/stream", chunked)
    base = await serve(app)
    declared = await run_check({**HEALTH_CHECK, "url": f"{base}/health"})
    assert declared.error == (
        f"body larger than body_size_limit of 1 MiB (Content-Length {len(json.dumps(big))})"
    )
    assert value(declared, "http_probe_up") == 0
    assert value(declared, "http_probe_status_code") == 200
    streamed = await run_check(
        {"name": "s", "kind": "http", "url": f"{base}/stream", "body_size_limit": "64KiB"}
    )
    assert streamed.error == "body larger than body_size_limit of 64 KiB"
    raised = await run_check(
        {
            "name": "s",
            "kind": "http",
            "url": f"{base}/health",
            "body_size_limit": "4MiB",
            "status_path": "status",
        }
    )
    assert raised.success, raised.error


async def test_slow_response_is_cut_by_the_timeout(serve: Serve, release: asyncio.Event) -> None:
    async def slow_headers(_: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(HEALTH_OK)

    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"status": ')
        await release.wait()
        return response

    app = web.Application()
    app.router.add_get("/health", slow_headers)
    app.router.add_get("/body", slow_body)
    base = await serve(app)
    results = await run_checks(
        [
            {**HEALTH_CHECK, "url": f"{base}/health", "timeout": "1s"},
            {"name": "body", "kind": "http", "url": f"{base}/body", "timeout": "1s"},
        ]
    )
    headers, body = results
    assert headers.error == "no complete response within 0.9s"
    assert value(headers, "http_probe_up") == 0
    assert body.error == "no complete body (status 200) within 0.9s"
    assert value(body, "http_probe_status_code") == 200
    assert all(r.duration < 15 for r in results)  # bounded by the timeout, not the server


async def test_connection_refused_fails_with_reason() -> None:
    port = free_port()
    result = await run_check({"name": "e", "kind": "http", "url": f"http://127.0.0.1:{port}/"})
    assert result.error == f"connect to 127.0.0.1:{port}: connection refused"
    assert value(result, "http_probe_up") == 0


async def test_redirects_followed_or_reported(serve: Serve) -> None:
    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = json_app({"/health": HEALTH_OK})
    app.router.add_get("/old", moved)
    app.router.add_get("/loop", loop)
    base = await serve(app)
    followed, kept, looped = await run_checks(
        [
            {**HEALTH_CHECK, "name": "a", "url": f"{base}/old"},
            {"name": "b", "kind": "http", "url": f"{base}/old", "follow_redirects": False},
            {"name": "c", "kind": "http", "url": f"{base}/loop", "max_redirects": 3},
        ]
    )
    assert followed.success, followed.error
    assert value(followed, "http_probe_status_code") == 200
    assert kept.error == "status 302, expected 2xx"
    assert value(kept, "http_probe_status_code") == 302
    assert looped.error == "too many redirects"


async def test_method_headers_and_body_are_sent(serve: Serve) -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("X-Probe", ""), await request.read()))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_route("*", "/graphql", record)
    base = await serve(app)
    result = await run_check(
        {
            "name": "g",
            "kind": "http",
            "url": f"{base}/graphql",
            "method": "POST",
            "headers": {"X-Probe": "runbook"},
            "body": '{"query": "{ health }"}',
            "status_path": "status",
        }
    )
    assert result.success, result.error
    assert seen == [("POST", "runbook", b'{"query": "{ health }"}')]
    head = await run_check(
        {"name": "h", "kind": "http", "url": f"{base}/graphql", "method": "HEAD"}
    )
    assert head.success, head.error
    assert seen[-1][0] == "HEAD"


def auth_app(expected: str) -> web.Application:
    async def protected(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", protected)
    return app


async def test_basic_auth_password_from_env_stays_secret(serve: Serve) -> None:
    password = "s3cret-Engine-pw"
    expected = "Basic " + base64.b64encode(f"monitor:{password}".encode()).decode()
    base = await serve(auth_app(expected))
    check = {
        "name": "e",
        "kind": "http",
        "url": f"{base}/health",
        "status_path": "status",
        "basic_auth": {"username": "monitor", "password": "${ENGINE_HEALTH_PW}"},
    }
    (good,) = await run_checks([check], env={"ENGINE_HEALTH_PW": password})
    assert good.success, good.error
    (bad,) = await run_checks([check], env={"ENGINE_HEALTH_PW": "wrong-password"})
    assert bad.error == 'status 401, expected 2xx; status: no key "status" in the document'
    config = load_data({"checks": [check]}, "<test>", {"ENGINE_HEALTH_PW": password})
    assert password not in json.dumps(config.redacted())


async def test_bearer_token_from_env(serve: Serve) -> None:
    token = "tok-0123456789abcdef"
    base = await serve(auth_app(f"Bearer {token}"))
    check = {
        "name": "e",
        "kind": "http",
        "url": f"{base}/health",
        "bearer_token": "${ENGINE_TOKEN}",
    }
    (good,) = await run_checks([check], env={"ENGINE_TOKEN": token})
    assert good.success, good.error
    config = load_data({"checks": [check]}, "<test>", {"ENGINE_TOKEN": token})
    assert token not in json.dumps(config.redacted())


async def test_tls_with_test_ca_reports_certificate_expiry(
    serve: Serve, test_ca: LoopbackCA
) -> None:
    context, not_after = test_ca.server_context()
    base = await serve(json_app({"/health": HEALTH_OK}), ssl_context=context)
    trusted, untrusted, insecure = await run_checks(
        [
            {
                **HEALTH_CHECK,
                "name": "a",
                "url": f"{base}/health",
                "tls": {"ca_file": str(test_ca.ca_file)},
            },
            {**HEALTH_CHECK, "name": "b", "url": f"{base}/health"},
            {**HEALTH_CHECK, "name": "c", "url": f"{base}/health", "tls": {"insecure": True}},
        ]
    )
    assert trusted.success, trusted.error
    assert value(trusted, "http_probe_tls_cert_expiry_timestamp_seconds") == not_after
    assert untrusted.error == (
        "TLS: certificate verify failed: unable to get local issuer certificate"
    )
    assert value(untrusted, "http_probe_up") == 0
    assert insecure.success, insecure.error
    assert value(insecure, "http_probe_tls_cert_expiry_timestamp_seconds") == not_after


async def test_expired_certificate_fails_but_shows_its_date_when_insecure(
    serve: Serve, test_ca: LoopbackCA
) -> None:
    context, not_after = test_ca.server_context(expired=True)
    base = await serve(json_app({"/health": HEALTH_OK}), ssl_context=context)
    verified, insecure = await run_checks(
        [
            {
                "name": "a",
                "kind": "http",
                "url": f"{base}/health",
                "tls": {"ca_file": str(test_ca.ca_file)},
            },
            {"name": "b", "kind": "http", "url": f"{base}/health", "tls": {"insecure": True}},
        ]
    )
    assert verified.error == "TLS: certificate verify failed: certificate has expired"
    assert insecure.success, insecure.error
    expiry = value(insecure, "http_probe_tls_cert_expiry_timestamp_seconds")
    assert expiry == not_after
    assert expiry < datetime.now(UTC).timestamp()


async def test_server_name_verifies_another_name(serve: Serve, test_ca: LoopbackCA) -> None:
    context, _ = test_ca.server_context()
    base = await serve(json_app({"/health": HEALTH_OK}), ssl_context=context)
    named, wrong = await run_checks(
        [
            {
                "name": "a",
                "kind": "http",
                "url": f"{base}/health",
                "tls": {"ca_file": str(test_ca.ca_file), "server_name": "localhost"},
            },
            {
                "name": "b",
                "kind": "http",
                "url": f"{base}/health",
                "tls": {"ca_file": str(test_ca.ca_file), "server_name": "api.example.com"},
            },
        ]
    )
    assert named.success, named.error
    assert wrong.error is not None
    assert wrong.error.startswith("TLS: certificate verify failed: Hostname mismatch")


async def test_one_probe_serves_many_scrapes_and_survives_a_server_restart(
    serve: Serve,
) -> None:
    port = free_port()
    check = {**HEALTH_CHECK, "url": f"http://127.0.0.1:{port}/health"}
    async with running([check]) as runner:
        (down,) = await runner.scrape(10)
        assert down.error is not None
        assert down.error.startswith(f"connect to 127.0.0.1:{port}")
        await serve(json_app({"/health": HEALTH_OK}), port=port)
        for _ in range(3):
            (up,) = await runner.scrape(10)
            assert up.success, up.error


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].url: required but missing"]),
        (
            {"url": "ftp://x/"},
            ['checks[0].url: expected a URL starting with http:// or https://, got "ftp://x/"'],
        ),
        (
            {"url": "http://x/", "method": "DELETE"},
            ['checks[0].method: expected one of GET, HEAD, POST, OPTIONS, got "DELETE"'],
        ),
        (
            {"url": "http://x/", "valid_status_codes": [200, "3xy", 700]},
            [
                'checks[0].valid_status_codes: expected status codes such as 200 or 2xx, got "3xy"',
                "checks[0].valid_status_codes: expected status codes such as 200 or 2xx, got 700",
            ],
        ),
        (
            {"url": "http://x/", "body_size_limit": "lots"},
            ['checks[0].body_size_limit: expected a size such as 1MiB or 65536, got "lots"'],
        ),
        (
            {"url": "http://x/", "tls": {"ca_file": "/nonexistent/ca.pem", "verify": False}},
            [
                "checks[0].tls.ca_file: cannot read /nonexistent/ca.pem: No such file or directory",
                "checks[0].tls.verify: unknown key "
                "(known keys here: ca_file, insecure, server_name)",
            ],
        ),
        (
            {
                "url": "http://x/",
                "basic_auth": {"username": "u", "password": "p"},
                "bearer_token": "t",
            },
            ["checks[0].bearer_token: set either basic_auth or bearer_token, not both"],
        ),
        (
            {"url": "http://u:pw@x/", "basic_auth": {"username": "u"}},
            ["checks[0].basic_auth: the url already holds credentials (user:password@)"],
        ),
        (
            {"url": "http://x/", "status_path": "a..b"},
            [
                'checks[0].status_path: empty segment in path "a..b" (use "." for the whole '
                "document)"
            ],
        ),
        (
            {"url": "http://x/", "components": {"status_field": "s"}},
            ["checks[0].components.path: required but missing"],
        ),
        (
            {"url": "http://x/", "components": ["redis"]},
            ["checks[0].components: expected a mapping, got a list"],
        ),
        (
            {
                "url": "http://x/",
                "freshness": [{"item": "a"}, {"path": "t", "each": "s", "item": "x"}, "t"],
            },
            [
                'checks[0].freshness[2]: expected a mapping, got "t"',
                "checks[0].freshness[0].path: required but missing",
                "checks[0].freshness[1].item: set item for one path, or each (with item_field) "
                "for one per element",
            ],
        ),
        (
            {"url": "http://x/", "values": [{"path": "n", "item_field": "id", "unit": "s"}]},
            [
                "checks[0].values[0].unit: unknown key (known keys here: each, field, item, "
                "item_field, optional, path)",
                "checks[0].values[0].item_field: only used with each (one item per element)",
            ],
        ),
        (
            {"url": "http://x/", "status_ok": [], "max_items": 0},
            [
                "checks[0].status_ok: expected at least one value",
                "checks[0].max_items: must be at least 1, got 0",
            ],
        ),
        (
            {"url": "http://x/", "headers": {"X-A": 1}},
            ["checks[0].headers.X-A: expected a string, got 1"],
        ),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "e", "kind": "http", **options}) == problems


async def test_http_password_in_url_is_not_in_the_reason() -> None:
    port = free_port()
    (result,) = await run_checks(
        [{"name": "e", "kind": "http", "url": f"http://monitor:${{PW}}@127.0.0.1:{port}/health"}],
        env={"PW": "Url-Pa55word"},
    )
    assert result.error == f"connect to 127.0.0.1:{port}: connection refused"


async def test_http_close_after_success_and_failure_leaves_no_connection(
    http_listener: Listener,
) -> None:
    good = {"name": "ok", "kind": "http", "url": f"http://127.0.0.1:{http_listener.port}/"}
    bad = {
        "name": "bad",
        "kind": "http",
        "url": f"http://127.0.0.1:{http_listener.port}/",
        "valid_status_codes": [204],
    }
    async with running([good, bad]) as runner:
        ok, failed = await runner.scrape(30.0)
        assert ok.success, ok.error
        assert failed.error == "status 200, expected 204"
        assert http_listener.accepted == 2
    await async_wait_until(polled(lambda: http_listener.open == 0), what="http connections closed")
