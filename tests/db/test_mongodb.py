"""The mongodb kind: the real pymongo AsyncMongoClient against a wire-protocol peer.

No MongoDB server is available from the registries these tests install from, so
``mongo_peer.MongoPeer`` (an asyncio server speaking OP_MSG with pymongo's ``bson``) stands
in for ``mongod``; everything on the client side is the production code path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from tests.db.conftest import query_failures
from tests.db.mongo_peer import MAX_INCOMING, VERSION, MongoPeer
from tests.support import config_problems, run_check, running, value, values

NEWEST = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)


def check(peer: MongoPeer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "faces",
        "kind": "mongodb",
        "timeout": "5s",
        "url": f"mongodb://127.0.0.1:{peer.port}/face-recognition?directConnection=true",
        **extra,
    }


async def test_ping_connections_and_version(peer: MongoPeer) -> None:
    result = await run_check(check(peer))
    assert result.success, result.error
    assert value(result, "db_ping_duration_seconds") > 0
    assert value(result, "mongodb_server_version_info", version=VERSION) == 1
    raw = {dict(k)["state"]: v for k, v in values(result, "mongodb_connections").items()}
    # the driver's monitor and its pooled connection, one of them running serverStatus
    assert raw["current"] >= 1
    assert raw["active"] == 1
    assert raw["available"] == MAX_INCOMING - raw["current"]
    assert value(result, "db_pool_max_connections") == MAX_INCOMING
    assert value(result, "db_pool_connections", state="active") == 1
    assert value(result, "db_pool_connections", state="idle") == raw["current"] - 1
    assert {"ping", "serverStatus"} <= set(peer.commands)


async def test_freshness_lookups(peer: MongoPeer) -> None:
    oid = ObjectId.from_datetime(datetime(2026, 1, 5, tzinfo=UTC))
    peer.collections[("face-recognition", "detections")] = [
        {
            "_id": ObjectId.from_datetime(datetime(2026, 1, 1, tzinfo=UTC)),
            "camera": "gate",
            "seen_at": datetime(2026, 3, 1, tzinfo=UTC),
            "meta": {"ms": 1_700_000_000_000},
        },
        {"_id": oid, "camera": "gate", "seen_at": NEWEST, "meta": {"ms": 1_772_000_000_000}},
        {
            "_id": ObjectId.from_datetime(datetime(2026, 1, 3, tzinfo=UTC)),
            "camera": "lobby",
            "seen_at": datetime(2026, 3, 3, tzinfo=UTC),
        },
    ]
    peer.collections[("audit", "events")] = [{"_id": 1, "at": "2026-02-01T10:00:00Z"}]
    result = await run_check(
        check(
            peer,
            freshness=[
                {"name": "detections", "collection": "detections", "field": "seen_at"},
                {
                    "name": "gate",
                    "collection": "detections",
                    "field": "seen_at",
                    "filter": {"camera": "gate"},
                },
                {"name": "by_id", "collection": "detections", "field": "_id"},
                {"name": "millis", "collection": "detections", "field": "meta.ms"},
                {"name": "audit", "database": "audit", "collection": "events", "field": "at"},
            ],
        )
    )
    assert result.success, result.error
    fresh = {dict(k)["item"]: v for k, v in values(result, "freshness_timestamp_seconds").items()}
    assert fresh == {
        "detections": datetime(2026, 3, 3, tzinfo=UTC).timestamp(),
        "gate": NEWEST.timestamp(),
        "by_id": oid.generation_time.timestamp(),
        "millis": 1_772_000_000.0,
        "audit": datetime(2026, 2, 1, 10, tzinfo=UTC).timestamp(),
    }
    assert set(values(result, "db_query_success").values()) == {1}


async def test_failing_lookup_fails_only_itself(
    peer: MongoPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    peer.collections[("face-recognition", "detections")] = [{"_id": 1, "label": "x"}]
    result = await run_check(
        check(
            peer,
            freshness=[
                {"name": "empty", "collection": "nothing", "field": "seen_at"},
                {"name": "text", "collection": "detections", "field": "label"},
            ],
        )
    )
    assert result.success, result.error  # the server answers: only the lookups failed
    assert query_failures(caplog) == {
        "empty": "no document in face-recognition.nothing has seen_at",
        "text": 'label: expected an ISO 8601 time or epoch seconds, got "x"',
    }
    assert value(result, "db_query_success", query="empty") == 0
    assert value(result, "db_query_success", query="text") == 0
    assert value(result, "db_pool_max_connections") == MAX_INCOMING


async def test_field_paths_are_the_http_kinds_paths(
    peer: MongoPeer, caplog: pytest.LogCaptureFixture
) -> None:
    """Reconciled with ``_jsonpath``: mongodb's own ``_field`` could not index a list and
    answered "no document has label.at" when label was a string; the shared paths index
    lists and say where a path stops."""
    caplog.set_level(logging.INFO, logger="runbook_exporter")
    first, second = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    peer.collections[("face-recognition", "sensors")] = [
        {"_id": 1, "label": "x", "readings": [{"at": first}, {"at": second}]},
    ]
    result = await run_check(
        check(
            peer,
            freshness=[
                {"name": "second", "collection": "sensors", "field": "readings.1.at"},
                {"name": "typed", "collection": "sensors", "field": "label.at"},
                {"name": "absent", "collection": "sensors", "field": "readings.5.at"},
            ],
        )
    )
    assert result.success, result.error
    assert value(result, "freshness_timestamp_seconds", item="second") == second.timestamp()
    assert query_failures(caplog) == {
        "typed": "label.at: label is a string, not an object",
        "absent": "no document in face-recognition.sensors has readings.5.at",
    }


async def test_refused_server_status_fails_with_the_server_reason(peer: MongoPeer) -> None:
    peer.failures["serverStatus"] = {
        "ok": 0.0,
        "code": 13,
        "codeName": "Unauthorized",
        "errmsg": "not authorized on admin to execute command { serverStatus: 1 }",
    }
    result = await run_check(check(peer))
    assert not result.success
    assert result.error == (
        "not authorized on admin to execute command { serverStatus: 1 } (Unauthorized)"
    )


async def test_hung_server_times_out_then_stop_and_restart_recover(peer: MongoPeer) -> None:
    async with running([check(peer, timeout="3s")]) as runner:
        (first,) = await runner.scrape(30)
        assert first.success, first.error

        peer.stalled.add("serverStatus")
        (hung,) = await runner.scrape(30)
        assert not hung.success
        assert "timed out" in (hung.error or "").lower()
        peer.stalled.clear()

        await peer.stop()
        (down,) = await runner.scrape(30)
        assert not down.success
        # refused by the pool's connect, or by server selection once the monitor saw it
        assert f"127.0.0.1:{peer.port}" in (down.error or "")

        await peer.start()  # same port
        (back,) = await runner.scrape(30)
        assert back.success, back.error


def test_password_is_not_shown_in_config_errors() -> None:
    (problem,) = config_problems(
        {"name": "m", "kind": "mongodb", "url": "mongodb://u:hunter2-xyz@h:1/db?bogus=1"}
    )
    # The words after the prefix are pymongo's and change between its releases (4.20 no
    # longer names the option); the path, the kind of failure and the redaction are ours.
    assert problem.startswith("checks[0].url: invalid MongoDB URL: ")
    assert len(problem) > len("checks[0].url: invalid MongoDB URL: ")
    assert "\n" not in problem
    assert "hunter2-xyz" not in problem


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].url: required but missing"]),
        (
            {"url": "http://u:topsecret@h/db"},
            [
                "checks[0].url: expected a URL starting with mongodb:// or mongodb+srv://, "
                'got "http://u:<secret>@h/db"'
            ],
        ),
        (
            {"url": "mongodb://h/db", "freshness": [{"name": "f", "collection": "c"}]},
            ["checks[0].freshness[0].field: required but missing"],
        ),
        (
            {
                "url": "mongodb://h/db",
                "freshness": [{"name": "f", "collection": "c", "field": "a..b"}],
            },
            [
                'checks[0].freshness[0].field: empty segment in path "a..b" '
                '(use "." for the whole document)'
            ],
        ),
        (
            {
                "url": "mongodb://h1:27017,h2:27017/?replicaSet=rs0",
                "freshness": [
                    {"name": "f", "collection": "c", "field": "t", "filter": [1]},
                    {"name": "f", "database": "d", "collection": "c", "field": "t"},
                ],
            },
            [
                "checks[0].freshness[0].database: required when the url names no database",
                "checks[0].freshness[0].filter: expected a mapping such as {source: gps}, "
                "got a list",
                'checks[0].freshness[1].name: duplicate name "f", first used at '
                "checks[0].freshness[0]",
            ],
        ),
    ],
)
def test_bad_options(options: dict[str, Any], problems: list[str]) -> None:
    assert config_problems({"name": "m", "kind": "mongodb", **options}) == problems


def test_a_url_pymongo_refuses_is_reported_at_its_path_once() -> None:
    # pymongo's own sentence follows the prefix; only the exporter's part is asserted.
    (problem,) = config_problems(
        {"name": "m", "kind": "mongodb", "url": "mongodb://h/db?tls=maybe"}
    )
    assert problem.startswith("checks[0].url: invalid MongoDB URL: ")
    assert "tls" in problem
