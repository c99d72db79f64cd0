"""The new user's path, end to end: a config with check names of this test's choosing →
``runbook-exporter bundle generate --config`` → real Prometheus and Alertmanager → a page
for a real fault, with no profile written.

The faults are real: an item that leaves a JSON list (its freshness alert would go
quiet: a guard pages), a TCP port that closes, a backup glob that stops matching, a table
that a named query reads being dropped (it must page as "query failing", never as the
database being down), and the Watchdog heartbeat reaching the dead man's switch receiver.
Timings are drilled (``--drill-factor``); thresholds stay as generated.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import ServiceApp, TcpServer, generate_for_config
from tests.e2e.stack import Stack

SLUG = "corner-shop"  # the file name of the user's config: the bundle's name


async def test_new_user_config_pages_for_real_faults(
    stack: Stack,
    tmp_path: Path,
    tcp_server: TcpServer,
    service_app: ServiceApp,
    record_timing: Any,
) -> None:
    service_app.sources = ["alpha", "beta"]
    await service_app.start()
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "shop-2026-01-01.sql.gz").write_bytes(b"x" * 4096)
    ledger = tmp_path / "ledger.sqlite"
    with sqlite3.connect(ledger) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO orders DEFAULT VALUES")
    conn.close()
    checks: list[dict[str, Any]] = [
        {"name": "till-gateway", "kind": "tcp", "address": tcp_server.address},
        {
            "name": "feeds",
            "kind": "http",
            "url": f"{service_app.url}/api/sources",
            "freshness": [{"each": ".", "item_field": "id", "path": "lastIngestedAt"}],
        },
        {"name": "nightly_dump", "kind": "file", "glob": str(dumps / "*.sql.gz")},
        {
            "name": "ledger",
            "kind": "sqlite",
            "path": str(ledger),
            "queries": [
                {"name": "open_orders", "type": "value", "sql": "SELECT count(*) AS n FROM orders"}
            ],
        },
    ]
    config = tmp_path / f"{SLUG}.yml"
    config.write_text(yaml.safe_dump({"checks": checks}, sort_keys=False))
    out = tmp_path / "bundle"
    generate_for_config(config, out)
    rules = [out / "rules" / f"{SLUG}.rules.yml", out / "rules" / "runbook-exporter.rules.yml"]
    alertmanager = yaml.safe_load((out / "alertmanager" / "alertmanager.yml").read_text())
    await stack.start(checks, rules, alertmanager)
    # The static group (rules/runbook-exporter.rules.yml) is not drilled: it evaluates every
    # 60 s, so its first evaluation after the first scrape can take that long.
    await stack.wait_scraped(timeout=150)
    await stack.wait_series('db_query_success{check="ledger",query="open_orders"} == 1')
    await stack.wait_series('freshness_timestamp_seconds{check="feeds",item="beta"}')

    # The heartbeat reaches the dead man's switch and nothing else.
    beat = await stack.webhook.wait_for("Watchdog", receiver="deadmansswitch")
    assert beat.path_receiver == "deadmansswitch"

    # 0. An item leaves the JSON list while the check succeeds: its freshness alert has
    #    no data, so the guard pages for it (and says the data is missing).
    fault = time.monotonic()
    service_app.sources.remove("beta")
    gone = await stack.webhook.wait_for("FeedsStaleNoData", since=fault, item="beta")
    assert "missing" in gone.annotations["summary"]
    assert "FeedsStale" in gone.annotations["summary"]
    record_timing("item leaves the list page", gone.received_at - fault)
    assert not stack.webhook.matching("FeedsStaleNoData", "firing", item="alpha")

    # 1. The till gateway's port closes: a critical page naming the user's check.
    fault = time.monotonic()
    await tcp_server.stop()
    down = await stack.webhook.wait_for("TillGatewayDown", since=fault, check="till-gateway")
    assert down.receiver == f"{SLUG}-critical"
    assert "till-gateway" in down.annotations["summary"]
    record_timing("tcp down page", down.received_at - fault)

    # 2. A table the named query reads is dropped: "query failing", not "database down".
    fault = time.monotonic()
    with sqlite3.connect(ledger) as conn:
        conn.execute("DROP TABLE orders")
    conn.close()
    failing = await stack.webhook.wait_for("LedgerQueryFailing", since=fault, query="open_orders")
    assert failing.receiver == f"{SLUG}-warning"
    assert "open_orders" in failing.annotations["summary"]
    record_timing("query failing page", failing.received_at - fault)
    assert not stack.webhook.matching("LedgerUnreadable", "firing")
    assert not [a for a in await stack.firing() if a["labels"]["alertname"] == "LedgerUnreadable"]

    # 3. The backup glob stops matching: the check fails and says nothing matches.
    fault = time.monotonic()
    (dumps / "shop-2026-01-01.sql.gz").unlink()
    nothing = await stack.webhook.wait_for("NightlyDumpFailing", since=fault, check="nightly_dump")
    assert "data is missing" in nothing.annotations["summary"]
    record_timing("glob stops matching page", nothing.received_at - fault)
    assert await stack.webhook.wait_for("NightlyDumpNoMatch", since=fault)
