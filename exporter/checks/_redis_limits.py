"""Bounds on what a Redis server may send the ``redis`` kind's redis-py client.

redis-py reads whatever length a reply announces: ``$4611686018427387904`` followed by a
stream of bytes grows the exporter by gigabytes, and a huge INFO reply is parsed on the
event loop long past every timeout. The ``redis`` kind only sends PING and INFO, whose
replies are a few kilobytes, so its client uses :func:`limited_parser_class`: a RESP2
parser that refuses a reply larger than :data:`MAX_REPLY_BYTES` in total, an array of
more than :data:`MAX_REPLY_ITEMS` elements, or a line longer than the stream's line limit
(64 KiB), before reading it. The refusal is a :class:`redis.exceptions.InvalidResponse`,
after which redis-py drops the connection (its stream is mid-reply).
"""

from __future__ import annotations

import functools
from typing import Any

MAX_REPLY_BYTES = 256 * 1024
"""Bytes one reply may hold: a real INFO reply is 4-10 KiB; parsing 256 KiB of INFO
lines takes about 20 ms of event-loop time, 1 MiB about 90 ms."""
MAX_REPLY_ITEMS = 4096
"""Elements of one array reply (nested arrays count each of their elements)."""


class ReplyTooLarge(Exception):
    """Marker base for the refusal, so that :func:`reason` can word it plainly."""


@functools.cache
def limited_parser_class() -> type[Any]:
    """redis-py's RESP2 parser with :data:`MAX_REPLY_BYTES` and :data:`MAX_REPLY_ITEMS`.

    Built on first use: kinds import their client library only when a probe is made.
    """
    from redis._parsers import _AsyncRESP2Parser
    from redis.exceptions import InvalidResponse

    class Refused(InvalidResponse, ReplyTooLarge):
        pass

    class LimitedRESP2Parser(_AsyncRESP2Parser):
        _left = MAX_REPLY_BYTES
        _items_left = MAX_REPLY_ITEMS

        async def read_response(self, disable_decoding: bool = False) -> Any:
            self._left = MAX_REPLY_BYTES
            self._items_left = MAX_REPLY_ITEMS
            return await super().read_response(disable_decoding=disable_decoding)

        def _spend(self, size: int) -> None:
            self._left -= size
            if self._left < 0:
                raise Refused(
                    f"reply larger than the limit of {MAX_REPLY_BYTES // 1024} KiB; "
                    "connection dropped"
                )

        async def _read(self, length: int) -> bytes:
            self._spend(max(length, 0))
            data: bytes = await super()._read(length)
            return data

        async def _readline(self) -> bytes:
            try:
                line: bytes = await super()._readline()
            except ValueError:  # asyncio's StreamReader: the line limit was exceeded
                raise Refused("reply line longer than 64 KiB; connection dropped") from None
            self._spend(len(line) + 2)
            if line[:1] == b"*" and line[1:].isdigit():
                self._items_left -= int(line[1:])
                if self._items_left < 0:
                    raise Refused(
                        f"reply array of more than {MAX_REPLY_ITEMS} elements; connection dropped"
                    )
            return line

    return LimitedRESP2Parser


@functools.cache
def no_client_setinfo() -> dict[str, Any]:
    """Client keywords that stop redis-py sending ``CLIENT SETINFO`` on connect.

    The ``redis`` kind sends PING and INFO only (and AUTH/SELECT as the URL asks); redis-py
    6+ calls the switch ``driver_info``, 5 ``lib_name``/``lib_version`` (deprecated later).
    """
    import inspect

    from redis.asyncio.connection import AbstractConnection

    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}
