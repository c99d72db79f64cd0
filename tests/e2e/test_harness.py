"""The drill harness on its own: a hand-written rule and a one-receiver tree.

When a drill fails and this passes, the plumbing (exporter, Prometheus, Alertmanager,
webhook) works and the generated bundle is where to look.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import TcpServer
from tests.e2e.stack import (
    REPO,
    Stack,
    prometheus_config,
    rewrite_receivers,
    sd_files,
    write_yaml,
)
from tests.support import require_binary

RULES = """\
groups:
  - name: harness
    rules:
      - alert: HarnessPortDown
        expr: runbook_exporter_check_success{kind="tcp"} == 0
        for: 1s
        labels: {severity: critical}
        annotations: {runbook_url: "https://runbooks.example/harness#port"}
"""

ALERTMANAGER = {
    "route": {
        "receiver": "default",
        "group_by": ["alertname"],
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "1h",
        "routes": [{"receiver": "pager", "matchers": ['severity="critical"']}],
    },
    "receivers": [
        {"name": "default", "slack_configs": [{"api_url": "https://hooks.example/x"}]},
        {"name": "pager", "pagerduty_configs": [{"routing_key": "secret"}]},
    ],
}


async def test_port_down_pages_then_resolves(
    stack: Stack, tcp_server: TcpServer, tmp_path: Path
) -> None:
    rules = tmp_path / "harness.yml"
    rules.write_text(RULES)
    checks = [{"name": "gateway", "kind": "tcp", "address": tcp_server.address, "timeout": "500ms"}]
    await stack.start(checks, [rules], ALERTMANAGER)
    await stack.wait_scraped()
    assert stack.webhook.deliveries == []

    fault = time.monotonic()
    await tcp_server.stop()
    page = await stack.webhook.wait_for("HarnessPortDown", "firing", since=fault)
    assert (page.receiver, page.path_receiver) == ("pager", "pager")
    assert page.labels["check"] == "gateway"
    assert page.annotations["runbook_url"] == "https://runbooks.example/harness#port"

    fixed = time.monotonic()
    await tcp_server.start()
    resolved = await stack.webhook.wait_for("HarnessPortDown", "resolved", since=fixed)
    assert resolved.receiver == "pager"


def test_drill_prometheus_config_changes_only_intervals_and_targets() -> None:
    config, files = prometheus_config({"runbook-exporter/smart-city": ["127.0.0.1:1"]})
    assert config["global"]["scrape_interval"] == "1s"
    assert files["targets/runbook-exporter/smart-city.yml"] == [{"targets": ["127.0.0.1:1"]}]
    assert files["targets/alertmanager.yml"] == [{"targets": []}]
    assert "targets/runbook-exporter/*.yml" in sd_files(config)
    with pytest.raises(AssertionError, match="no file_sd file"):
        prometheus_config({"postgres/smart-city": ["127.0.0.1:2"]})


def test_receiver_rewrite_keeps_tree_and_names() -> None:
    drill = rewrite_receivers(ALERTMANAGER, lambda name: f"http://hook/{name}")
    assert drill["route"] == ALERTMANAGER["route"]
    assert drill["receivers"] == [
        {
            "name": "default",
            "webhook_configs": [{"url": "http://hook/default", "send_resolved": True}],
        },
        {"name": "pager", "webhook_configs": [{"url": "http://hook/pager", "send_resolved": True}]},
    ]


def test_generated_tree_survives_the_receiver_rewrite(tmp_path: Path) -> None:
    """The drills' Alertmanager config is the generated one but for the receivers'
    integrations, and Alertmanager's own checker accepts it."""
    amtool = require_binary("amtool", "prometheus-alertmanager")
    generated = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    drill = rewrite_receivers(generated, lambda name: f"http://127.0.0.1:9/alert/{name}")
    assert [r["name"] for r in drill["receivers"]] == [r["name"] for r in generated["receivers"]]
    for key in set(generated) | set(drill):
        if key not in ("receivers", "templates"):
            assert drill[key] == generated[key], key
    path = write_yaml(tmp_path / "alertmanager.yml", drill)
    result = subprocess.run(
        [amtool, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
