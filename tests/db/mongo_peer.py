"""A MongoDB wire-protocol peer for tests: no MongoDB server package exists on our registries.

It speaks OP_MSG (and the legacy OP_QUERY/OP_REPLY pair that pymongo before 4.14 used
for the first ``hello``) with BSON from pymongo's own ``bson`` package, and answers the
commands a monitoring client sends: hello/isMaster, ping, buildInfo, serverStatus, find
(equality and ``$exists`` filters, one sort key, limit, projection) and endSessions.
Tests drive the real ``pymongo.AsyncMongoClient`` against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import bson
from bson.int64 import Int64

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
CHECKSUM_PRESENT = 1
MORE_TO_COME = 1 << 1
HEADER = struct.Struct("<iiii")
VERSION = "7.0.14"
MAX_INCOMING = 1000


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit():  # a position, as mongod reads it
            value = value[int(part)] if int(part) < len(value) else None
        elif not isinstance(value, Mapping) or part not in value:
            return None
        else:
            value = value[part]
    return value


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for path, wanted in query.items():
        found = _get(doc, path)
        if isinstance(wanted, Mapping) and "$exists" in wanted:
            if (found is not None) != bool(wanted["$exists"]):
                return False
        elif found != wanted:
            return False
    return True


def _sort_key(value: Any) -> tuple[int, Any]:
    # BSON order, as far as the tests need it: null/missing < numbers < strings < dates
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, datetime):
        return (3, value if value.tzinfo else value.replace(tzinfo=UTC))
    return (4, str(value))


class MongoPeer:
    """An asyncio TCP server on 127.0.0.1 answering like a standalone ``mongod``."""

    def __init__(self) -> None:
        self.collections: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.failures: dict[str, dict[str, Any]] = {}  # command -> error reply
        self.stalled: set[str] = set()  # commands that never get an answer
        self.commands: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._active = 0
        self._request_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)

    @property
    def current_connections(self) -> int:
        return len(self._writers)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every client connection, like a killed mongod."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()  # handlers stalled on purpose wait for nothing else
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection_id = next(self._connection_ids)
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                length, request_id, _, opcode = HEADER.unpack(header)
                body = await reader.readexactly(length - HEADER.size)
                if opcode == OP_MSG:
                    flags, command = self._parse_msg(body)
                    reply = await self._answer(command, connection_id)
                    if not flags & MORE_TO_COME:
                        writer.write(self._msg(request_id, reply))
                elif opcode == OP_QUERY:
                    command = self._parse_query(body)
                    reply = await self._answer(command, connection_id)
                    writer.write(self._reply(request_id, reply))
                else:
                    break  # an opcode no supported driver sends: hang up like mongod
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends this handler; returning quietly keeps asyncio from logging it
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _parse_msg(body: bytes) -> tuple[int, dict[str, Any]]:
        (flags,) = struct.unpack_from("<I", body)
        end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
        pos = 4
        command: dict[str, Any] = {}
        sequences: dict[str, list[dict[str, Any]]] = {}
        while pos < end:
            kind = body[pos]
            pos += 1
            (size,) = struct.unpack_from("<i", body, pos)
            if kind == 0:
                command = bson.decode(body[pos : pos + size])
            else:  # kind 1: a document sequence, named by a C string
                name_end = body.index(b"\0", pos + 4)
                name = body[pos + 4 : name_end].decode()
                sequences[name] = bson.decode_all(body[name_end + 1 : pos + size])
            pos += size
        command.update(sequences)
        return flags, command

    @staticmethod
    def _parse_query(body: bytes) -> dict[str, Any]:
        name_end = body.index(b"\0", 4)
        pos = name_end + 1 + 8  # numberToSkip, numberToReturn
        (size,) = struct.unpack_from("<i", body, pos)
        return bson.decode(body[pos : pos + size])

    def _msg(self, response_to: int, doc: Mapping[str, Any]) -> bytes:
        payload = struct.pack("<I", 0) + b"\0" + bson.encode(doc)
        return (
            HEADER.pack(HEADER.size + len(payload), next(self._request_ids), response_to, OP_MSG)
            + payload
        )

    def _reply(self, response_to: int, doc: Mapping[str, Any]) -> bytes:
        payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(doc)
        return (
            HEADER.pack(HEADER.size + len(payload), next(self._request_ids), response_to, OP_REPLY)
            + payload
        )

    async def _answer(self, command: dict[str, Any], connection_id: int) -> dict[str, Any]:
        name = next(iter(command), "")
        self.commands.append(name)
        self._active += 1
        try:
            if name in self.stalled:
                await asyncio.Event().wait()  # until the client gives up and hangs up
            if name in self.failures:
                return self.failures[name]
            return self._run(name, command, connection_id)
        finally:
            self._active -= 1

    def _run(self, name: str, command: dict[str, Any], connection_id: int) -> dict[str, Any]:
        lowered = name.lower()
        if lowered in ("hello", "ismaster"):
            return {
                "helloOk": True,
                "ismaster": True,
                "isWritablePrimary": True,
                "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": datetime.now(UTC),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": connection_id,
                "minWireVersion": 0,
                "maxWireVersion": 21,
                "readOnly": False,
                "ok": 1.0,
            }
        if lowered in ("ping", "endsessions"):
            return {"ok": 1.0}
        if lowered == "buildinfo":
            return {"version": VERSION, "versionArray": [7, 0, 14, 0], "ok": 1.0}
        if lowered == "serverstatus":
            current = self.current_connections
            return {
                "host": "peer",
                "version": VERSION,
                "process": "mongod",
                "uptime": 1.0,
                "connections": {
                    "current": current,
                    "available": MAX_INCOMING - current,
                    "totalCreated": Int64(current),
                    "active": self._active,
                },
                "ok": 1.0,
            }
        if lowered == "find":
            return self._find(command)
        return {
            "ok": 0.0,
            "errmsg": f"no such command: '{name}'",
            "code": 59,
            "codeName": "CommandNotFound",
        }

    def _find(self, command: dict[str, Any]) -> dict[str, Any]:
        database, collection = command["$db"], command["find"]
        docs = [
            d
            for d in self.collections.get((database, collection), [])
            if _matches(d, command.get("filter", {}))
        ]
        for key, direction in reversed(list(command.get("sort", {}).items())):

            def by_field(doc: dict[str, Any], field: str = key) -> Any:
                return _sort_key(_get(doc, field))

            docs.sort(key=by_field, reverse=direction < 0)
        limit = abs(int(command.get("limit", 0)))
        if limit:
            docs = docs[:limit]
        projection = command.get("projection")
        if projection:
            fields = [k for k, v in projection.items() if v and k != "_id"]
            docs = [
                {
                    **({"_id": d["_id"]} if projection.get("_id", 1) and "_id" in d else {}),
                    **{k.split(".")[0]: d[k.split(".")[0]] for k in fields if k.split(".")[0] in d},
                }
                for d in docs
            ]
        return {
            "cursor": {"id": Int64(0), "ns": f"{database}.{collection}", "firstBatch": docs},
            "ok": 1.0,
        }
