"""Smoke test of bench/: the smallest configuration of every scenario runs end to end
against the real peers (Debian's redis/blackbox/postgres exporters) and renders a report
with the expected rows. No timing assertions: numbers belong in bench/results/latest.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import require_binary

REPO = Path(__file__).resolve().parents[2]
BINARIES = {
    "redis-server": "redis-server",
    "initdb": "postgresql",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
}


def test_quick_bench_renders_every_scenario(tmp_path: Path) -> None:
    for name, package in BINARIES.items():
        require_binary(name, package)
    out = tmp_path / "report.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = out.read_text()
    assert "_Skipped" not in report, report
    assert f"{os.cpu_count()} cores" in report
    lines = report.splitlines()

    def rows(start: str) -> list[str]:
        return [line for line in lines if line.startswith(start)]

    # BullMQ: 10 queues of 40-odd keys each, both exporters and both baselines.
    for exporter in (
        "runbook-exporter",
        "runbook-exporter, discovery SCAN every scrape",
        "redis_exporter --check-keys",
        "redis_exporter without key checks",
    ):
        assert len(rows(f"| 10 (409 keys) | {exporter} |")) == 1, exporter
    assert len(rows("| 10 | ")) == 2  # the BullMQ ratio row and the 10 HTTP endpoints
    assert len(rows("| 20 | ")) == 1  # 20 TCP ports
    assert len(rows("| runbook-exporter | ")) == 1  # Postgres
    assert len(rows("| postgres_exporter (defaults) | ")) == 1
    assert len(rows("| 1,011 | gzip | ")) == 1  # /metrics under load: 337 checks x 3 + own
    assert len(rows("| 1,011 | identity | ")) == 1
    assert len(rows("| 1,011 | gzip, bare aiohttp | ")) == 1  # the reference for scrape CPU
    assert "CPU per gzip scrape: exporter" in report
    # Footprint: both measures, each beside the eager import of every kind.
    assert len(rows("| RSS serving tcp+http+disk+file | ")) == 1
    assert len(rows("| `check` of one tcp check")) == 1
    # Every target of the issue has a row in the summary table.
    for target in ("fewer Redis round trips", "less wall time than redis_exporter",
                   "collection of 10 queues", "targets in one scrape", "less total CPU",
                   "p99 under 25 ms", "RSS flat", "RSS of a serving exporter",
                   "at most half the eager wall time"):  # fmt: skip
        assert len([line for line in rows("| ") if target in line]) == 1, target
    # The direct BullMQ writer was cross-checked against the real package.
    assert "Cross-check (10 queues)" in report
    # TCP and HTTP say how much of their wall times is the bench's own HTTP client.
    assert "for blackbox's 20 probes" in report
    assert "for blackbox's 10 probes" in report
