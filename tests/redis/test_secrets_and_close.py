"""Review checks for the redis and bullmq kinds against a real redis-server: failure reasons
carry no secret (``<secret>`` in a reason would mean the kind leaked one and the runner
masked it), and close() after a failed and after a successful run leaves no client
connection (counted with CLIENT LIST)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.leaks import ODD_PASSWORD, assert_clean
from tests.redis.test_bullmq_faults import make_queue
from tests.servers import RedisServer
from tests.support import free_port, run_checks, running, wait_until

KINDS = ("redis", "bullmq")


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_password_in_url_or_option_is_not_in_the_reason(
    kind: str, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory(password=ODD_PASSWORD)
    where = f"127.0.0.1:{server.port}"
    in_url = {"name": "r", "kind": kind, "url": f"redis://:${{PW}}@{where}/0"}
    (good,) = await run_checks([in_url], env={"PW": quote(ODD_PASSWORD, safe="")})
    assert good.success, good.error

    wrong = ODD_PASSWORD.upper()
    (bad,) = await run_checks([in_url], env={"PW": quote(wrong, safe="")})
    reason = assert_clean(bad, wrong, ODD_PASSWORD)
    assert reason.startswith(f"redis {where}: authentication failed (")

    as_option = {"name": "r", "kind": kind, "url": f"redis://{where}/0", "password": "${PW}"}
    (bad,) = await run_checks([as_option], env={"PW": wrong})
    assert assert_clean(bad, wrong, ODD_PASSWORD).startswith(
        f"redis {where}: authentication failed ("
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_unreachable_reason_has_no_password(kind: str) -> None:
    port = free_port()
    check = {"name": "r", "kind": kind, "url": f"redis://monitor:${{PW}}@127.0.0.1:{port}/0"}
    (result,) = await run_checks([check], env={"PW": "Unreachable-Pw-7"})
    reason = assert_clean(result, "Unreachable-Pw-7")
    assert reason == f"redis 127.0.0.1:{port}: connection refused"


def exporter_clients(server: RedisServer) -> int:
    """Client connections besides the one asking."""
    with server.client() as client:
        return len(client.client_list()) - 1


async def test_close_after_success_and_failure_leaves_no_connection(
    redis_server: RedisServer,
) -> None:
    make_queue(redis_server, "ingest", waiting=2)
    with redis_server.client() as client:
        client.set("bull:broken:wait", "not a list")  # a listed queue that cannot be read
        client.acl_setuser(
            "pingonly", enabled=True, passwords=["+pingonly-pw"], commands=["+ping", "+auth"]
        )
    url = redis_server.url
    checks: list[dict[str, Any]] = [
        {"name": "r-ok", "kind": "redis", "url": url},
        {"name": "q-ok", "kind": "bullmq", "url": url},
        # Connected, then failed: INFO refused by ACL / a key of the wrong type.
        {
            "name": "r-bad",
            "kind": "redis",
            "url": url,
            "username": "pingonly",
            "password": "pingonly-pw",
        },
        {"name": "q-bad", "kind": "bullmq", "url": url, "queues": ["broken"]},
    ]
    async with running(checks) as runner:
        results = {r.name: r for r in await runner.scrape(30)}
        assert results["r-ok"].success, results["r-ok"].error
        assert results["q-ok"].success, results["q-ok"].error
        assert "permission denied" in (results["r-bad"].error or "")
        assert "WRONGTYPE" in (results["q-bad"].error or "")
        assert exporter_clients(redis_server) >= 4  # kept open between scrapes
    wait_until(lambda: exporter_clients(redis_server) == 0, 30, "exporter clients gone")
