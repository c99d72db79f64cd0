"""Footprint: memory of a serving exporter and start-up cost of `check`, lazy vs eager kinds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.harness import Context, fetch, median, started, targets
from bench.report import Section, Target, mib, ms
from tests.support import free_port

TITLE = "Footprint"
WHAT = (
    "What a process pays for the kinds it does not use. **RSS** of a serving exporter with "
    "one check each of `tcp`, `http`, `disk` and `file` (after 5 scrapes), and the wall time "
    "of `runbook-exporter check` of one `tcp` check (a new process each run: interpreter "
    "start, imports, one check, exit). Each is measured twice in the same run, interleaved: "
    "as shipped (a kind's module and client library are imported when a check of that kind "
    "is configured), and **eager**, the same command with every kind and the web server "
    "imported first, which is how the exporter started before the kinds loaded lazily."
)
GOAL_RSS = 40 * 1024 * 1024
GOAL_CHECK_RATIO = 0.5

# Imports everything the exporter used to import at start, then runs the command as usual.
EAGER = (
    "import sys\n"
    "from exporter.checks import KINDS\n"
    "for name in KINDS: KINDS[name]\n"
    "import exporter.server, exporter.webconfig\n"
    "for module in ('psycopg',):\n"
    "    try: __import__(module)\n"
    "    except ImportError: pass\n"
    "from exporter.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def command(eager: bool) -> list[str]:
    return [sys.executable, "-c", EAGER] if eager else [sys.executable, "-m", "exporter"]


def run(ctx: Context) -> Section:
    repeat = 3 if ctx.quick else 11
    section = Section("footprint", TITLE, WHAT, header=[
        "measure", "as shipped", "eager (every kind imported)", "shipped / eager",
    ])  # fmt: skip
    with targets(ctx.workdir, "tcp", 1) as (port,), targets(ctx.workdir, "http", 1) as (web,):
        serving = _config(ctx.workdir, port, web)
        rss = {eager: _serving_rss(ctx.workdir, serving, eager) for eager in (False, True)}
        one = ctx.workdir / "one-tcp.yml"
        one.write_text(yaml.safe_dump(
            {"checks": [{"name": "t", "kind": "tcp", "address": f"127.0.0.1:{port}"}]}
        ))  # fmt: skip
        walls: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeat):  # interleaved, so other load weighs on both alike
            for eager in (False, True):
                walls[eager].append(_check_wall(one, eager))
    check = {eager: median(values) for eager, values in walls.items()}
    ratio = check[False] / check[True]
    section.rows += [
        ["RSS serving tcp+http+disk+file", mib(rss[False]), mib(rss[True]),
         f"{rss[False] / rss[True]:.2f}"],
        [f"`check` of one tcp check (median of {repeat})", ms(check[False]), ms(check[True]),
         f"{ratio:.2f}"],
    ]  # fmt: skip
    ctx.log(f"  footprint: rss {mib(rss[False])} (eager {mib(rss[True])}), "
            f"check {ms(check[False])} (eager {ms(check[True])})")  # fmt: skip
    section.targets += [
        Target("RSS of a serving exporter with only tcp/http/disk/file checks ≤ 40 MiB",
               f"{mib(rss[False])} (eager {mib(rss[True])})", rss[False] <= GOAL_RSS),
        Target("`check` of one tcp check at most half the eager wall time",
               f"{ms(check[False])} vs {ms(check[True])} ({ratio:.2f}×)",
               ratio <= GOAL_CHECK_RATIO),
    ]  # fmt: skip
    return section


def _config(workdir: Path, port: int, web: int) -> dict[str, Any]:
    (workdir / "footprint-file").write_text("x")
    return {"checks": [
        {"name": "tcp", "kind": "tcp", "address": f"127.0.0.1:{port}"},
        {"name": "http", "kind": "http", "url": f"http://127.0.0.1:{web}/health"},
        {"name": "disk", "kind": "disk", "path": str(workdir)},
        {"name": "file", "kind": "file", "path": str(workdir / "footprint-file")},
    ]}  # fmt: skip


def _serving_rss(workdir: Path, config: dict[str, Any], eager: bool) -> int:
    tag = "eager" if eager else "shipped"
    path = workdir / f"footprint-{tag}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    listen = free_port()
    argv = [*command(eager), "--config.file", str(path),
            "--web.listen-address", f"127.0.0.1:{listen}", "--log.level", "error"]  # fmt: skip
    base = f"http://127.0.0.1:{listen}"
    with started(f"footprint-{tag}", argv, workdir, listen,
                 lambda: fetch(f"{base}/-/ready")) as service:  # fmt: skip
        for _ in range(5):
            body = fetch(f"{base}/metrics")
            if b'runbook_exporter_check_success{check="http",kind="http"} 1.0' not in body:
                raise RuntimeError(f"footprint ({tag}): the http check did not succeed")
        return service.rss()


def _check_wall(config: Path, eager: bool) -> float:
    began = time.perf_counter()
    done = subprocess.run([*command(eager), "check", "--config.file", str(config)],
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"check exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return wall
