"""The real monitoring path on loopback: exporter → Prometheus → rules → Alertmanager → webhook.

Every piece is the real program (the exporter's CLI, Debian's ``prometheus`` and
``prometheus-alertmanager``) started on free 127.0.0.1 ports; only the on-call end is a
local aiohttp webhook that records what Alertmanager delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = REPO / "compose" / "prometheus.yml"

# Drill pacing: Prometheus scrapes and evaluates every second. Deadlines are generous
# because a loaded 2-core machine runs four processes plus the test here.
DRILL_INTERVAL = "1s"
START_TIMEOUT = 60.0
ALERT_TIMEOUT = 120.0


class ManagedProcess:
    """A child process whose output goes to a log file shown when a drill fails."""

    def __init__(
        self, name: str, argv: list[str], workdir: Path, env: Mapping[str, str] | None = None
    ):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.env = dict(os.environ if env is None else env)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=self.env
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def wait_http_ok(
    session: aiohttp.ClientSession,
    url: str,
    process: ManagedProcess | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll ``url`` until it answers 200; fail early (with its log) if ``process`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.running():
            raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            tail = process.log_tail() if process else ""
            raise AssertionError(f"{url} not ready after {timeout}s\n{tail}")
        await asyncio.sleep(0.05)


# --- the on-call end ------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One alert inside one webhook notification."""

    receiver: str  # the receiver name Alertmanager used (from the payload)
    path_receiver: str  # the receiver whose URL was called
    status: str  # firing | resolved (of this alert)
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    received_at: float  # time.monotonic() at arrival


@dataclass
class Webhook:
    """Records every Alertmanager webhook notification (one URL path per receiver)."""

    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def url(self, receiver: str) -> str:
        return f"http://127.0.0.1:{self.port}/alert/{receiver}"

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await request.json()
        now = time.monotonic()
        for alert in payload.get("alerts", []):
            self.deliveries.append(
                Delivery(
                    receiver=payload.get("receiver", ""),
                    path_receiver=request.match_info["receiver"],
                    status=alert.get("status", ""),
                    labels=alert.get("labels", {}),
                    annotations=alert.get("annotations", {}),
                    received_at=now,
                )
            )
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alert/{receiver}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def matching(
        self,
        alertname: str,
        status: str,
        since: float = 0.0,
        receiver: str | None = None,
        **labels: str,
    ) -> list[Delivery]:
        return [
            d
            for d in self.deliveries
            if d.labels.get("alertname") == alertname
            and d.status == status
            and d.received_at >= since
            and receiver in (None, d.receiver)
            and all(d.labels.get(k) == v for k, v in labels.items())
        ]

    async def wait_for(
        self,
        alertname: str,
        status: str = "firing",
        *,
        since: float = 0.0,
        timeout: float = ALERT_TIMEOUT,
        receiver: str | None = None,
        **labels: str,
    ) -> Delivery:
        """The first delivery of ``alertname`` in ``status`` after ``since``, polled."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(alertname, status, since, receiver, **labels)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = sorted({(d.labels.get("alertname", "?"), d.status) for d in self.deliveries})
                to = f" to {receiver}" if receiver else ""
                raise AssertionError(
                    f"no {status} {alertname}{labels or ''}{to} at the webhook after "
                    f"{timeout}s; "
                    f"deliveries so far: {seen}"
                )
            await asyncio.sleep(0.05)


# --- configuration for the drill copies of the committed files ------------------------


def prometheus_config(
    targets: Mapping[str, list[str]],
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """compose/prometheus.yml with drill intervals, plus the file_sd files to write.

    Only the global intervals change; scrape jobs, relabelling, rule files and the
    Alertmanager section are the committed ones. ``targets`` maps a file_sd file, without
    ``targets/`` and ``.yml``, to its loopback addresses: ``runbook-exporter/smart-city``
    (a job's targets in one system: the file name becomes their ``system`` label) or
    ``alertmanager``. Fixed files without an entry get an empty target list.
    """
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    drill = copy.deepcopy(config)
    drill["global"].update(
        scrape_interval=DRILL_INTERVAL,
        scrape_timeout=DRILL_INTERVAL,
        evaluation_interval=DRILL_INTERVAL,
    )
    patterns = sd_files(config)
    files: dict[str, list[dict[str, Any]]] = {
        name: [{"targets": []}] for name in patterns if "*" not in name
    }
    for key, addresses in targets.items():
        name = f"targets/{key}.yml"
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), (
            f"compose/prometheus.yml has no file_sd file for {key}"
        )
        files[name] = [{"targets": list(addresses)}]
    return drill, files


def sd_files(config: Mapping[str, Any]) -> list[str]:
    """Every file_sd file compose/prometheus.yml reads (scrape jobs and Alertmanagers)."""
    sources = [*config.get("scrape_configs", []), *config["alerting"]["alertmanagers"]]
    names: list[str] = []
    for source in sources:
        for sd in source.get("file_sd_configs", []):
            names.extend(n for n in sd["files"] if n not in names)
    return names


def rewrite_receivers(config: Mapping[str, Any], url_for: Callable[[str], str]) -> dict[str, Any]:
    """The generated Alertmanager config with every receiver delivering to ``url_for(name)``.

    The routing tree, matchers, timings and inhibit rules stay as generated; each receiver
    keeps its name and gets one webhook integration instead of its real ones (Slack,
    PagerDuty, e-mail...), so what arrives shows which receiver the tree chose.
    """
    drill = copy.deepcopy(dict(config))
    drill["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": url_for(r["name"]), "send_resolved": True}]}
        for r in config.get("receivers", [])
    ]
    # Templates referenced by the real integrations are not needed by the webhook.
    drill.pop("templates", None)
    return drill


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the stack ------------------------------------------------------------------------


@dataclass
class Stack:
    """Exporter, Prometheus and Alertmanager for one drill, plus the webhook."""

    workdir: Path
    webhook: Webhook
    session: aiohttp.ClientSession
    exporter_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    processes: list[ManagedProcess] = field(default_factory=list)
    systems: int = 1  # exporters Prometheus scrapes, one per system

    async def start(
        self,
        checks: list[dict[str, Any]],
        rule_files: Iterable[Path],
        alertmanager_config: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        system: str = "drill",
        others: Mapping[str, tuple[list[dict[str, Any]], Mapping[str, str]]] | None = None,
    ) -> None:
        """Everything, with the exporter listed as a target of ``system`` (the file_sd
        file name that becomes its ``system`` label, as in compose/prometheus.yml).
        ``others`` maps further systems to their own exporter's (checks, env): several
        systems in one Prometheus."""
        await self.webhook.start()
        await self._start_alertmanager(alertmanager_config)
        targets = {system: await self._start_exporter("exporter", checks, env, self.exporter_port)}
        for other, (other_checks, other_env) in (others or {}).items():
            port = free_port()
            targets[other] = await self._start_exporter(
                f"exporter-{other}", other_checks, other_env, port
            )
        await self._start_prometheus(rule_files, targets)

    async def _start_exporter(
        self,
        name: str,
        checks: list[dict[str, Any]],
        env: Mapping[str, str] | None,
        port: int,
    ) -> str:
        """Start one exporter; its address."""
        config = write_yaml(self.workdir / f"{name}.yml", {"checks": checks})
        process_env = {**os.environ, **(env or {})}
        exporter = ManagedProcess(
            name,
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=debug",
            ],
            self.workdir,
            process_env,
        )
        self._launch(exporter)
        await wait_http_ok(self.session, f"http://127.0.0.1:{port}/-/ready", exporter)
        return f"127.0.0.1:{port}"

    async def _start_alertmanager(self, config: Mapping[str, Any]) -> None:
        drill = rewrite_receivers(config, self.webhook.url)
        path = write_yaml(self.workdir / "alertmanager" / "alertmanager.yml", drill)
        alertmanager = ManagedProcess(
            "alertmanager",
            [
                "prometheus-alertmanager",
                f"--config.file={path}",
                f"--storage.path={self.workdir / 'alertmanager' / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",  # no HA gossip port
                "--log.level=debug",
            ],
            self.workdir,
        )
        self._launch(alertmanager)
        await wait_http_ok(self.session, f"{self.alertmanager_url}/-/ready", alertmanager)

    async def _start_prometheus(
        self, rule_files: Iterable[Path], exporters: Mapping[str, str]
    ) -> None:
        home = self.workdir / "prometheus"
        self.systems = len(exporters)
        config, sd = prometheus_config(
            {
                **{f"runbook-exporter/{s}": [address] for s, address in exporters.items()},
                "alertmanager": [f"127.0.0.1:{self.alertmanager_port}"],
                "prometheus": [f"127.0.0.1:{self.prometheus_port}"],
            }
        )
        path = write_yaml(home / "prometheus.yml", config)
        for name in sd_files(config):
            if "*" in name:  # targets/<job>/*.yml: the job's directory, empty or not
                (home / name).parent.mkdir(parents=True, exist_ok=True)
        for name, groups in sd.items():
            write_yaml(home / name, groups)
        for rule_file in rule_files:
            (home / "rules").mkdir(parents=True, exist_ok=True)
            (home / "rules" / rule_file.name).write_text(rule_file.read_text())
        prometheus = ManagedProcess(
            "prometheus",
            [
                "prometheus",
                f"--config.file={path}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                # Prometheus re-sends firing alerts at this pace; resolved ones go at once.
                "--rules.alert.resend-delay=1s",
            ],
            self.workdir,
        )
        self._launch(prometheus)
        await wait_http_ok(self.session, f"{self.prometheus_url}/-/ready", prometheus)

    def _launch(self, process: ManagedProcess) -> None:
        self.processes.append(process)
        process.start()

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with self.session.get(
            f"{self.prometheus_url}/api/v1/query", params={"query": promql}
        ) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    async def rule_groups(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.prometheus_url}/api/v1/rules") as response:
            body = await response.json()
        return list(body["data"]["groups"])

    async def wait_scraped(self, timeout: float = START_TIMEOUT) -> None:
        """Until Prometheus has scraped every exporter and then evaluated every rule
        group again: alerts from before the first scrape (ExporterDown's absent branch
        while no target was scraped yet) are settled by then."""
        deadline = time.monotonic() + timeout
        seen_up: dict[str, str] | None = None  # each group's lastEvaluation when up
        while True:
            up = len(await self.query('up{job="runbook-exporter"} == 1')) == self.systems
            groups = await self.rule_groups()
            evaluations = {g["name"]: g.get("lastEvaluation", "") for g in groups}
            if up and seen_up is None:
                seen_up = evaluations
            if (
                seen_up is not None
                and groups
                and all(e.startswith("20") and e != seen_up.get(n) for n, e in evaluations.items())
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"exporter not scraped or rules not evaluated after {timeout}s: "
                    f"up={up} groups={[g['name'] for g in groups]}\n{self.logs()}"
                )
            await asyncio.sleep(0.1)

    async def wait_series(self, promql: str, timeout: float = START_TIMEOUT) -> None:
        """Until ``promql`` returns something (e.g. a queue's counters are being read)."""
        deadline = time.monotonic() + timeout
        while not await self.query(promql):
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} empty after {timeout}s\n{self.logs()}")
            await asyncio.sleep(0.1)

    async def firing(self) -> list[dict[str, Any]]:
        """Alerts Prometheus currently holds (pending or firing)."""
        async with self.session.get(f"{self.prometheus_url}/api/v1/alerts") as response:
            body = await response.json()
        return list(body["data"]["alerts"])

    async def alertmanager_alerts(self, alertname: str) -> list[dict[str, Any]]:
        async with self.session.get(
            f"{self.alertmanager_url}/api/v2/alerts",
            params={"filter": f'alertname="{alertname}"'},
        ) as response:
            return list(await response.json())

    async def wait_inhibited(self, alertname: str, by: str, timeout: float = ALERT_TIMEOUT) -> None:
        """Until Alertmanager holds ``alertname`` suppressed by an inhibition whose
        source is a ``by`` alert (its ``inhibitedBy`` names that alert's fingerprint)."""
        deadline = time.monotonic() + timeout
        while True:
            sources = {a["fingerprint"] for a in await self.alertmanager_alerts(by)}
            targets = await self.alertmanager_alerts(alertname)
            if targets and all(
                a["status"]["state"] == "suppressed" and set(a["status"]["inhibitedBy"]) & sources
                for a in targets
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{alertname} not inhibited by {by} after {timeout}s: "
                    f"{dump([a['status'] for a in targets])}"
                )
            await asyncio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in self.processes)

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        await self.webhook.stop()


def dump(data: Any) -> str:
    return json.dumps(data, indent=1, default=str)
