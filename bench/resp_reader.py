"""The bullmq kind's reply reader on synthetic replies: hiredis (current) vs the previous
hand-written parser (loaded from git at PREVIOUS), and the hostile cases.

    .venv/bin/python -m bench.resp_reader [--no-previous]

Replies are fed to an asyncio.StreamReader in 64 KiB pieces with a loop turn between
them, as a socket would deliver them; times are the best of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from exporter.checks import _redis_conn as current

REPO = Path(__file__).resolve().parents[1]
PREVIOUS = "49d0320"  # main before the hiredis reader: the quadratic re-parse


def previous() -> ModuleType:
    source = subprocess.run(["git", "show", f"{PREVIOUS}:exporter/checks/_redis_conn.py"],
                            cwd=REPO, check=True, capture_output=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "previous_redis_conn.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("previous_redis_conn", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def xrange_reply(entries: int) -> bytes:
    """One XRANGE reply shaped like BullMQ's events (event, jobId, returnvalue)."""
    parts = [b"*%d\r\n" % entries]
    for i in range(entries):
        job = str(i).encode()
        parts.append(
            b"*2\r\n$15\r\n1700000000000-%d\r\n*6\r\n$5\r\nevent\r\n$9\r\ncompleted\r\n"
            b'$5\r\njobId\r\n$%d\r\n%s\r\n$11\r\nreturnvalue\r\n$11\r\n{"ok":true}\r\n'
            % (i % 10, len(job), job)
        )
    return b"".join(parts)


def counts_reply(commands: int) -> tuple[bytes, int]:
    """MULTI, ``commands`` QUEUED, EXEC with ``commands`` integers: 2 + commands replies."""
    body = b"+OK\r\n" + b"+QUEUED\r\n" * commands + b"*%d\r\n" % commands + b":3\r\n" * commands
    return body, commands + 2


async def timed(module: Any, data: bytes, count: int) -> float:
    reader = asyncio.StreamReader(limit=1 << 17)

    async def feed() -> None:
        for start in range(0, len(data), 1 << 16):
            reader.feed_data(data[start : start + (1 << 16)])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeding = asyncio.create_task(feed())
    started = time.perf_counter()
    await module.read_replies(reader, count)
    took = time.perf_counter() - started
    await feeding
    return took


async def main(with_previous: bool) -> None:
    old = previous() if with_previous else None
    cases: list[tuple[str, bytes, int, bool]] = [
        ("15,000 count replies", *counts_reply(14_998), True),
        ("XRANGE 10,000 entries", xrange_reply(10_000), 1, True),
        ("XRANGE 40,000 entries", xrange_reply(40_000), 1, True),
        ("XRANGE 80,000 entries", xrange_reply(80_000), 1, False),  # previous: minutes
    ]
    print("| reply | size | previous parser | hiredis reader |")
    print("|---|---|---|---|")
    for name, data, count, try_old in cases:
        new = min([await timed(current, data, count) for _ in range(3)])
        before = "not run"
        if old is not None and try_old:
            before = f"{min([await timed(old, data, count) for _ in range(3)]) * 1000:,.1f} ms"
        print(f"| {name} | {len(data) / 1e6:.2f} MB | {before} | {new * 1000:,.1f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-previous", action="store_true")
    asyncio.run(main(not parser.parse_args().no_previous))
