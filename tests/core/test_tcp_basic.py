"""The tcp kind through the runner: real listening and closed loopback ports."""

import asyncio

from tests.support import free_port, run_check, value


async def test_listening_port_succeeds_with_connect_time() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run_check({"name": "t", "kind": "tcp", "address": f"127.0.0.1:{port}"})
    assert result.success, result.error
    assert value(result, "tcp_connect_duration_seconds") > 0


async def test_closed_port_fails_with_reason() -> None:
    port = free_port()
    result = await run_check({"name": "t", "kind": "tcp", "address": f"127.0.0.1:{port}"})
    assert not result.success
    assert f"connect to 127.0.0.1:{port}" in (result.error or "")
