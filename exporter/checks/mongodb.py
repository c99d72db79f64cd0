"""``mongodb``: ping latency, serverStatus connections, newest value of a field (freshness).

Uses PyMongo's native asyncio API (``pymongo.AsyncMongoClient``). Motor, the former
async driver, is deprecated since May 2025 and past end of life. One client per check,
created on the first run and kept: it monitors the servers and reconnects by itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from exporter.alerting import (
    POOL_PANEL,
    QUERY_FAILING,
    QUERY_SUCCESS_PANEL,
    down,
    pool_near_max,
    stale,
)
from exporter.checks._jsonpath import ROOT, JsonPath, PathError
from exporter.checks._queries import (
    DB_PING_SECONDS,
    QUERY_SECONDS,
    QUERY_SUCCESS,
    QueryFailed,
    QueryLog,
)
from exporter.checks._timestamps import to_unix_seconds
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind, driver_timeout
from exporter.families import DB_POOL_CONNECTIONS, DB_POOL_MAX_CONNECTIONS, FRESHNESS
from exporter.fields import Reader, describe, is_mapping
from exporter.redact import REDACTOR
from exporter.samples import Family, Sink

if TYPE_CHECKING:  # pymongo is imported where a check of this kind uses it
    from pymongo import AsyncMongoClient

CONNECTIONS = Family(
    "mongodb_connections",
    "gauge",
    "serverStatus connections: current, available, active.",
    ("state",),
)
VERSION_INFO = Family(
    "mongodb_server_version_info",
    "gauge",
    "Always 1; the version label is the server's.",
    ("version",),
)

SCHEMES = ("mongodb://", "mongodb+srv://")
# PyMongo gives up server selection only at its next half-second heartbeat step (1.6 s
# configured -> 2.0 s seen), so selection gets that much less, and a short check timeout
# still ends with the driver's reason ("connection refused") rather than the runner's.
SELECTION_STEP_MS = 500
_CONFIGURED_TIMEOUTS = re.compile(r" \(configured timeouts: [^)]*\)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
# mongodb://user:password@host1,host2/db?options: several hosts, so not urlsplit-able
_URL = re.compile(
    r"^mongodb(?:\+srv)?://(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?"
    r"(?P<hosts>[^/?]+)(?:/(?P<db>[^?]*))?(?:\?.*)?$"
)


@dataclass(frozen=True)
class Freshness:
    name: str
    database: str
    collection: str
    field: str
    filter: tuple[tuple[str, object], ...]
    # The field as a path into the returned document: the http kind's dotted paths, so a
    # list index (``readings.0.at``) works and a wrong type says where it stops.
    path: JsonPath = JsonPath(ROOT, ())  # noqa: RUF009 - frozen, so one shared default is safe


@dataclass(frozen=True)
class MongoOptions:
    url: str
    freshness: tuple[Freshness, ...]


def _parse_url(reader: Reader) -> tuple[str, str]:
    from pymongo.errors import PyMongoError
    from pymongo.uri_parser import parse_uri

    url = reader.str("url")
    if not url:
        return "", ""
    match = _URL.match(url)
    if match is None:
        shown = describe(REDACTOR.redact(url))
        if not url.startswith(SCHEMES):
            reader.error(
                "url", f"expected a URL starting with mongodb:// or mongodb+srv://, got {shown}"
            )
        else:
            reader.error("url", f"invalid MongoDB URL: {shown}")
        return url, ""
    if match["pw"]:
        REDACTOR.register(match["pw"])
        REDACTOR.register(unquote(match["pw"]))  # the form the driver sends and may quote
    if url.startswith("mongodb://"):  # +srv would need DNS at load time: checked when used
        try:
            parse_uri(url, warn=False)
        except (PyMongoError, ValueError, TypeError) as exc:
            reader.error("url", f"invalid MongoDB URL: {REDACTOR.redact(str(exc))}")
    return url, match["db"] or ""


def parse(reader: Reader) -> MongoOptions:
    url, default_db = _parse_url(reader)
    lookups: list[Freshness] = []
    seen: dict[str, str] = {}
    for item in reader.mappings("freshness"):
        name = item.unique_name("name", seen, _NAME)
        database = item.str("database", default_db or None)
        if not database and not item.has("database"):
            item.error("database", "required when the url names no database")
        collection = item.str("collection")
        field = item.str("field")
        path = JsonPath(ROOT, ())
        if field:
            try:
                path = JsonPath.parse(field)
            except ValueError as exc:
                item.error("field", str(exc))
        raw_filter = item.raw("filter", {})
        if not is_mapping(raw_filter):
            item.error(
                "filter", f"expected a mapping such as {{source: gps}}, got {describe(raw_filter)}"
            )
            raw_filter = {}
        item.done()
        lookups.append(
            Freshness(name, database or "", collection, field, tuple(raw_filter.items()), path)
        )
    return MongoOptions(url=url, freshness=tuple(lookups))


def _reason(exc: BaseException) -> str:
    from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

    if isinstance(exc, OperationFailure):
        details = exc.details or {}
        message = str(details.get("errmsg") or (exc.args[0] if exc.args else ""))
        code = details.get("codeName")
        return f"{message} ({code})" if code else message
    text = str(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        # Drop the long topology description; the first part names host and error.
        text = "no server reachable: " + text.split(", Timeout:")[0]
    text = _CONFIGURED_TIMEOUTS.sub("", text)  # our own settings, not the cause
    return " ".join(text.split()) or type(exc).__name__


def _timestamp(value: Any) -> float:
    from bson import Decimal128, ObjectId, Timestamp

    if isinstance(value, ObjectId):
        return value.generation_time.timestamp()
    if isinstance(value, Timestamp):
        return float(value.time)
    if isinstance(value, Decimal128):
        return to_unix_seconds(value.to_decimal())
    return to_unix_seconds(value)


def _projected(path: JsonPath) -> str:
    """The part of a field path a find projection can return: up to its first list index.

    A projection reads the ``1`` of ``readings.1.at`` as a field name, not a position (the
    sort reads it as a position), so the whole list is returned and the path indexes it.
    """
    head: list[str] = []
    for part in path.parts:
        if part.isdigit():
            break
        head.append(part)
    return ".".join(head) or path.text


class MongoProbe(BaseProbe[MongoOptions]):
    def __init__(self, spec: CheckSpec[MongoOptions]) -> None:
        super().__init__(spec)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._query_log = QueryLog(spec.name, spec.kind)

    def _connect(self) -> AsyncMongoClient[dict[str, Any]]:
        from pymongo import AsyncMongoClient

        if self._client is None:
            budget_ms = int(driver_timeout(self.spec.timeout) * 1000)
            operation_ms = max(100, budget_ms - SELECTION_STEP_MS)
            self._client = AsyncMongoClient(
                self.options.url,
                appname="runbook-exporter",
                tz_aware=True,
                maxPoolSize=2,
                minPoolSize=0,
                # timeoutMS also bounds server selection (serverSelectionTimeoutMS is
                # then ignored), so both leave room for the heartbeat step.
                serverSelectionTimeoutMS=operation_ms,
                connectTimeoutMS=budget_ms,
                timeoutMS=operation_ms,  # client-side operation timeout, sent as maxTimeMS
            )
        return self._client

    async def collect(self, out: Sink) -> None:
        from pymongo.errors import PyMongoError

        try:
            client = self._connect()
        except (PyMongoError, ValueError, TypeError) as exc:
            raise CheckFailed(f"client: {_reason(exc)}") from None
        try:
            started = time.perf_counter()
            await client.admin.command("ping")
            ping = time.perf_counter() - started
            status = await client.admin.command(
                {"serverStatus": 1, "repl": 0, "metrics": 0, "locks": 0}
            )
        except PyMongoError as exc:
            raise CheckFailed(_reason(exc)) from None
        out.add(DB_PING_SECONDS, ping)
        out.add(VERSION_INFO, 1, version=str(status.get("version", "")))
        connections = status.get("connections")
        if not isinstance(connections, Mapping) or "current" not in connections:
            raise CheckFailed("serverStatus has no connections section")
        current = int(connections["current"])
        available = int(connections.get("available", 0))
        out.add(CONNECTIONS, current, state="current")
        out.add(CONNECTIONS, available, state="available")
        out.add(DB_POOL_MAX_CONNECTIONS, current + available)
        if "active" in connections:  # since MongoDB 4.0.7
            active = int(connections["active"])
            out.add(CONNECTIONS, active, state="active")
            out.add(DB_POOL_CONNECTIONS, active, state="active")
            out.add(DB_POOL_CONNECTIONS, current - active, state="idle")
        else:
            out.add(DB_POOL_CONNECTIONS, current, state="idle")
        failures: dict[str, str] = {}
        for lookup in self.options.freshness:
            started = time.perf_counter()
            try:
                out.add(FRESHNESS, await self._newest(client, lookup), item=lookup.name)
                ok = True
            except QueryFailed as exc:
                failures[lookup.name] = str(exc)
                ok = False
            out.add(QUERY_SECONDS, time.perf_counter() - started, query=lookup.name)
            out.add(QUERY_SUCCESS, 1.0 if ok else 0.0, query=lookup.name)
        self._query_log.report(failures)

    async def _newest(self, client: AsyncMongoClient[dict[str, Any]], lookup: Freshness) -> float:
        from pymongo.errors import OperationFailure, PyMongoError

        shown = _projected(lookup.path)
        projection = {shown: 1} if shown == "_id" else {shown: 1, "_id": 0}
        collection = client[lookup.database][lookup.collection]
        try:
            doc = await collection.find_one(
                dict(lookup.filter), projection=projection, sort=[(lookup.field, -1)]
            )
        except OperationFailure as exc:
            raise QueryFailed(_reason(exc)) from None
        except PyMongoError as exc:  # the server went away: the whole check fails
            raise CheckFailed(_reason(exc)) from None
        nowhere = f"no document in {lookup.database}.{lookup.collection} has {lookup.field}"
        if doc is None:
            raise QueryFailed(nowhere)
        try:
            value = lookup.path.find(doc)
        except PathError as exc:
            # Sorted newest first, a document without the field comes last: the first one
            # lacking it means none has it. A field under a value of the wrong type says so.
            raise QueryFailed(nowhere if exc.missing else str(exc)) from None
        if value is None:
            raise QueryFailed(nowhere)
        try:
            return _timestamp(value)
        except ValueError as exc:
            raise QueryFailed(f"{lookup.field}: {exc}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


KIND = Kind(
    name="mongodb",
    summary="MongoDB ping, serverStatus connections, freshness of a collection field.",
    parse=parse,
    probe=MongoProbe,
    families=(
        DB_POOL_CONNECTIONS,
        DB_POOL_MAX_CONNECTIONS,
        CONNECTIONS,
        DB_PING_SECONDS,
        VERSION_INFO,
        FRESHNESS,
        QUERY_SUCCESS,
        QUERY_SECONDS,
    ),
    target="url",
    alerts=(
        down(
            "MongoDB",
            60.0,
            ("mongosh --eval 'db.runCommand({ping: 1})'; check the server and its log.",),
        ),
        pool_near_max("MongoDB"),
        QUERY_FAILING,
        stale("lookup", 3600.0, from_queries=True),
    ),
    panels=(
        POOL_PANEL,
        QUERY_SUCCESS_PANEL,
    ),
)
