"""BullMQ at scale: this exporter's bullmq check vs redis_exporter --check-keys, same keys."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.bullmq_data import Plan, add_waiting, is_paused, queue_names, write_queues
from bench.harness import (
    REPO,
    Context,
    Unavailable,
    fetch,
    median,
    ours,
    peer,
    redis_server,
    samples_of,
)
from bench.node_bullmq import NodePeer, Timing, timed
from bench.report import Section, Target, cpu_ms, mib, ms, ratio, table
from bench.scenarios.common import Subject, Summary, measure_many, scrape
from tests.servers import RedisServer

TITLE = "BullMQ at scale"
WHAT = (
    "N queues (every tenth paused) with jobs in every state, written into one Redis in "
    "BullMQ 5's layout (bench/bullmq_data.py). This exporter: one `bullmq` check "
    "discovering every queue under `bull`, with change tracking (the default: the data does "
    "not change, so after the first scrapes no queue is read) and without it "
    "(`track_changes: false`: every queue read on every scrape, which the ratios and "
    "targets below use). redis_exporter: `--check-keys` with the eight "
    "state keys as patterns (`bull:*:wait,bull:*:paused,…`), which is how it is set up to "
    "watch BullMQ queues; its row without `--check-keys` shows its fixed cost per scrape. "
    "Per scrape: exporter wall time and CPU, Redis CPU, Redis commands (`INFO` "
    "total_commands_processed delta) and round trips (`total_reads_processed` delta: one "
    "read event per request or pipeline), exporter RSS after the runs."
)
PREFIX = "bull"
STATE_KEYS = ("wait", "paused", "active", "delayed", "prioritized", "waiting-children",
              "completed", "failed")  # fmt: skip
CHECK = "queues"
GOAL_WALL_RATIO = 5.0
GOAL_TRIP_RATIO = 10.0
GOAL_COLLECT = 0.100
GOAL_NODE_RATIO = 0.5  # our collection / Node BullMQ's getJobCounts() over all queues
GOAL_NODE_TRIPS = 10
# The queues of the issue's side-by-side measurement: 3 waiting, 1 delayed, 1 prioritized.
ISSUE_PLAN = Plan(waiting=3, active=0, delayed=1, prioritized=1, waiting_children=0,
                  completed=0, failed=0)  # fmt: skip
ISSUE_PREFIX = "issue"
CHANGED_SHARE = 10  # one queue in this many changes between two scrapes (the middle case)
DRIVER = REPO / "tests" / "redis" / "bullmq_driver.py"
SIDE_VENVS = {"bullmq 2.26 (v5 layout)": ".cache/bullmq-v5", "bullmq 3.x": ".cache/bullmq-v6"}
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def run(ctx: Context) -> Section:
    sizes = [10] if ctx.quick else [10, 100, 1000]
    plan = Plan()
    section = Section("bullmq", TITLE, WHAT, header=[
        "queues", "exporter", "wall / scrape", "CPU / scrape", "Redis CPU / scrape",
        "Redis commands / scrape", "round trips / scrape", "RSS",
    ])  # fmt: skip
    ratios: list[list[str]] = []
    with redis_server(ctx.workdir) as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        try:
            section.notes.append(cross_check(ctx, client, server, plan))
            for size in sizes:
                ctx.log(f"  bullmq: {size} queues")
                client.flushall()
                write_queues(client, PREFIX, queue_names(size), plan)
                keys = int(client.dbsize())
                results, mixes = compare(ctx, client, server, size, plan)
                tracked, default, mine, theirs, base = (
                    results[k] for k in ("ours", "ours-scan", "ours-full", "redis", "redis-base")
                )
                for label, summary in (
                    ("runbook-exporter", tracked),
                    ("runbook-exporter, discovery SCAN every scrape", default),
                    ("runbook-exporter, every queue read (`track_changes: false`)", mine),
                    ("redis_exporter --check-keys", theirs),
                    ("redis_exporter without key checks", base),
                ):
                    section.rows.append([
                        f"{size} ({keys:,} keys)", label, ms(summary.wall), cpu_ms(summary.cpu),
                        cpu_ms(summary.server_cpu), f"{summary.commands:,.0f}",
                        f"{summary.reads:,.0f}", mib(summary.rss),
                    ])  # fmt: skip
                collect = median(_durations(mine.outputs))
                ratios.append([
                    str(size), ratio(theirs.wall, mine.wall), ratio(theirs.cpu, mine.cpu),
                    ratio(theirs.server_cpu, mine.server_cpu),
                    ratio(theirs.commands, mine.commands), ratio(theirs.reads, mine.reads),
                    ms(collect), f"{_per(mine.wall, size)} / {_per(theirs.wall, size)}",
                ])  # fmt: skip
                if size == max(sizes):
                    wall_ratio = theirs.wall / mine.wall
                    trip_ratio = theirs.reads / mine.reads
                    section.targets += [
                        Target(f"≥{GOAL_WALL_RATIO:.0f}× less wall time than redis_exporter, "
                               f"{size} queues", f"{wall_ratio:.1f}×",
                               wall_ratio >= GOAL_WALL_RATIO),
                        Target(f"≥{GOAL_TRIP_RATIO:.0f}× fewer Redis round trips, {size} queues",
                               f"{trip_ratio:.0f}× ({theirs.reads:,.0f} vs {mine.reads:,.0f})",
                               trip_ratio >= GOAL_TRIP_RATIO),
                        Target(f"collection of {size} queues under {GOAL_COLLECT * 1000:.0f} ms",
                               f"{ms(collect)} (check duration; scrape {ms(mine.wall)})",
                               collect < GOAL_COLLECT),
                    ]  # fmt: skip
                    section.notes.append(
                        f"Commands of one scrape at {size} queues (INFO commandstats delta): "
                        + "; ".join(f"**{label}**: {mix}" for label, mix in mixes.items())
                    )
                    versus_node(ctx, client, server, size, plan, section)
                    versus_node_changes(ctx, client, server, size, section)
        finally:
            client.close()
    section.extra.append("Ratios (redis_exporter --check-keys ÷ runbook-exporter):\n\n" + table(
        ["queues", "wall", "exporter CPU", "Redis CPU", "commands", "round trips",
         "our check duration (collection)", "wall per queue: ours / redis_exporter"], ratios,
    ))  # fmt: skip
    section.notes.append(
        "The bullmq check caches queue discovery for `discovery_interval` (60 s default), "
        "so most scrapes send no SCAN; the second row forces a SCAN every scrape. "
        "redis_exporter SCANs every pattern and sends TYPE plus a length command per "
        "matching key on every scrape. Its own per-scrape cost (INFO, CONFIG, SLOWLOG, "
        "LATENCY...) is the last row of each size."
    )
    return section


def versus_node(
    ctx: Context, client: redis.Redis, server: RedisServer, size: int, plan: Plan, section: Section
) -> None:
    """Node BullMQ's getJobCounts() and exportPrometheusMetrics() over the same queues,
    interleaved with scrapes of this exporter (collection = the check's own duration), once
    per read route: the read-only script (the default on Redis >= 7) and the pipelined reads
    (its fallback, forced with ``server_script: false``)."""
    names = queue_names(size)
    try:
        node = NodePeer(server.url, PREFIX, names)
    except Unavailable as exc:
        section.notes.append(f"Node BullMQ peer skipped: {exc}")
        return
    stats = _server_stats(client, server)
    routes = {"script": True, "pipelined": False}
    mine: dict[str, list[Timing]] = {route: [] for route in routes}
    counts: list[Timing] = []
    exports: list[Timing] = []
    try:
        with contextlib.ExitStack() as stack:
            urls = {}
            for route, script in routes.items():
                check = {"name": CHECK, "kind": "bullmq", "url": server.url,
                         "max_queues": max(size, 1000), "server_script": script}  # fmt: skip
                exporter = stack.enter_context(
                    ours(ctx.workdir, {"checks": [check]}, tag=f"ours-vs-node-{route}")
                )
                urls[route] = f"{exporter.base}/metrics"
                verify_ours(fetch(urls[route]), size, plan)
            verify_node(node.run("counts")["counts"], names, plan)
            node.run("export")
            for _ in range(ctx.repeat):
                for route, url in urls.items():
                    mine[route].append(timed(stats, _collection_ms(url)))
                counts.append(timed(stats, lambda: float(node.run("counts")["ms"])))
                exports.append(timed(stats, lambda: float(node.run("export")["ms"])))
    finally:
        node.close()
    counts_ms = median([t.ms for t in counts])
    export_ms = median([t.ms for t in exports])
    rows = [
        ("runbook-exporter bullmq check, read-only script (collection: counts, workers, "
         "stalled, schedulers, timings, counters) with change tracking (the default): no "
         "queue changed and no lock can expire before the next scrape (the data's locks "
         "last an hour), so no queue is read", mine["script"]),
        ("runbook-exporter bullmq check, pipelined reads (`server_script: false`, the "
         "fallback)", mine["pipelined"]),
        (f"Node BullMQ {node.version}: getJobCounts() over all queues (Promise.all)", counts),
        (f"Node BullMQ {node.version}: exportPrometheusMetrics() over all queues", exports),
    ]  # fmt: skip
    section.extra.append(_versus_table(
        f"Side by side, {size} queues, one run, interleaved ({ctx.repeat} rounds, medians)",
        rows, counts_ms,
    ))  # fmt: skip
    ours_ms = median([t.ms for t in mine["script"]])
    ratio_counts = ours_ms / counts_ms
    trips = median([t.reads for t in mine["script"]])
    section.targets += [
        Target(f"collection ≤ {GOAL_NODE_RATIO}× Node BullMQ getJobCounts() over {size} queues "
               "with jobs in every state, none changed since the last scrape",
               f"{ratio_counts:.2f}× ({ours_ms:,.1f} ms vs {counts_ms:,.1f} ms; pipelined "
               f"reads {median([t.ms for t in mine['pipelined']]) / counts_ms:.2f}×; "
               f"exportPrometheusMetrics() {export_ms:,.1f} ms, {ours_ms / export_ms:.2f}×)",
               ratio_counts <= GOAL_NODE_RATIO),
        # Redis counts socket reads, several per large pipelined write (~16 KiB each), so
        # read events overstate round trips; bench/bullmq_scale.py counts the check's own.
        Target(f"≤ {GOAL_NODE_TRIPS} Redis round trips per scrape, {size} queues",
               f"{trips:,.0f} Redis read events (an upper bound; Node BullMQ "
               f"{median([t.reads for t in counts]):,.0f}); the check's own round trips are "
               "bench/bullmq_scale.py's last column", None),
    ]  # fmt: skip


def versus_node_changes(
    ctx: Context, client: redis.Redis, server: RedisServer, size: int, section: Section
) -> None:
    """The issue's queues (3 waiting, 1 delayed, 1 prioritized each, no active job) under
    their own prefix, interleaved per round: this exporter with change tracking (the
    default) when no queue changed since its last scrape, when one in CHANGED_SHARE got a
    new job and when every queue did; without tracking; Node BullMQ's getJobCounts()."""
    names = queue_names(size)
    write_queues(client, ISSUE_PREFIX, names, ISSUE_PLAN)
    try:
        node = NodePeer(server.url, ISSUE_PREFIX, names)
    except Unavailable as exc:
        section.notes.append(f"Node BullMQ peer skipped: {exc}")
        return
    stats = _server_stats(client, server)
    cases = ("none changed", f"{size // CHANGED_SHARE} changed", "all changed", "untracked")
    mine: dict[str, list[Timing]] = {case: [] for case in cases}
    counts: list[Timing] = []
    try:
        with contextlib.ExitStack() as stack:
            urls = {}
            for tag, tracking in (("tracked", True), ("untracked", False)):
                check = {"name": CHECK, "kind": "bullmq", "url": server.url,
                         "prefix": [ISSUE_PREFIX], "max_queues": max(size, 1000),
                         "track_changes": tracking}  # fmt: skip
                exporter = stack.enter_context(
                    ours(ctx.workdir, {"checks": [check]}, tag=f"ours-issue-{tag}")
                )
                urls[tag] = f"{exporter.base}/metrics"
                verify_ours(fetch(urls[tag]), size, ISSUE_PLAN)
            verify_node(node.run("counts")["counts"], names, ISSUE_PLAN)
            fetch(urls["tracked"])  # settle: the first scrapes positioned the streams
            for round_ in range(ctx.repeat):
                mine["none changed"].append(timed(stats, _collection_ms(urls["tracked"])))
                add_waiting(client, ISSUE_PREFIX, names[::CHANGED_SHARE], f"a{round_}")
                mine[cases[1]].append(timed(stats, _collection_ms(urls["tracked"])))
                add_waiting(client, ISSUE_PREFIX, names, f"b{round_}")
                mine["all changed"].append(timed(stats, _collection_ms(urls["tracked"])))
                fetch(urls["tracked"])  # the new events read: quiet again
                mine["untracked"].append(timed(stats, _collection_ms(urls["untracked"])))
                counts.append(timed(stats, lambda: float(node.run("counts")["ms"])))
    finally:
        node.close()
    counts_ms = median([t.ms for t in counts])
    labels = {
        "none changed": "change tracking (the default), no queue changed since the last scrape",
        cases[1]: f"change tracking, {size // CHANGED_SHARE} of {size} queues got a job since "
        "the last scrape",
        "all changed": f"change tracking, all {size} queues got a job since the last scrape",
        "untracked": "every queue read (`track_changes: false`)",
    }
    rows = [(f"runbook-exporter bullmq check, {labels[case]}", mine[case]) for case in cases]
    rows.append((f"Node BullMQ {node.version}: getJobCounts() over all queues (Promise.all)",
                 counts))  # fmt: skip
    section.extra.append(_versus_table(
        f"Side by side on the issue's queues ({size} queues, 3 waiting, 1 delayed, 1 "
        f"prioritized each, every tenth paused), one run, interleaved ({ctx.repeat} rounds, "
        "medians)", rows, counts_ms,
    ))  # fmt: skip
    for case in cases[:3]:
        ours_ms = median([t.ms for t in mine[case]])
        section.targets.append(Target(
            f"collection ≤ {GOAL_NODE_RATIO}× Node BullMQ getJobCounts(), the issue's "
            f"{size} queues, {case} since the last scrape",
            f"{ours_ms / counts_ms:.2f}× ({ours_ms:,.1f} ms vs {counts_ms:,.1f} ms)",
            ours_ms / counts_ms <= GOAL_NODE_RATIO,
        ))  # fmt: skip


def _versus_table(title: str, rows: list[tuple[str, list[Timing]]], counts_ms: float) -> str:
    """Readers side by side: medians, and the ratio to Node's getJobCounts()."""
    return f"{title}:\n\n" + table(
        ["reader", "wall (ours: check duration)", "÷ Node getJobCounts()",
         "Redis commands", "Redis CPU", "Redis read events"],
        [[label, f"{median([t.ms for t in runs]):,.1f} ms",
          f"{median([t.ms for t in runs]) / counts_ms:.2f}×",
          f"{median([t.commands for t in runs]):,.0f}",
          f"{median([t.server_cpu_ms for t in runs]):,.1f} ms",
          f"{median([t.reads for t in runs]):,.0f}"] for label, runs in rows],
    )  # fmt: skip


def _collection_ms(url: str) -> Callable[[], float]:
    """A scrape of ``url``, answering the bullmq check's own duration (ms)."""
    return lambda: 1000 * median(_durations([fetch(url)]))


def compare(ctx: Context, client: redis.Redis, server: RedisServer, size: int, plan: Plan
            ) -> tuple[dict[str, Summary], dict[str, str]]:  # fmt: skip
    """Start the four exporters, check what they report, then time them interleaved."""
    subjects: dict[str, Subject] = {}
    patterns = ",".join(f"{PREFIX}:*:{key}" for key in STATE_KEYS)
    address = f"--redis.addr=redis://127.0.0.1:{server.port}"
    with contextlib.ExitStack() as stack:
        for tag, interval, tracking in (("ours", None, True), ("ours-scan", "0s", True),
                                        ("ours-full", None, False)):  # fmt: skip
            check: dict[str, object] = {"name": CHECK, "kind": "bullmq", "url": server.url,
                                        "max_queues": max(size, 1000),
                                        "track_changes": tracking}  # fmt: skip
            if interval is not None:
                check["discovery_interval"] = interval
            exporter = stack.enter_context(ours(ctx.workdir, {"checks": [check]}, tag=tag))
            url = f"{exporter.base}/metrics"
            verify_ours(fetch(url), size, plan)
            subjects[tag] = (exporter, scrape(url))
        for tag, args in (("redis", [address, f"--check-keys={patterns}"]),
                          ("redis-base", [address])):  # fmt: skip
            exporter = stack.enter_context(peer(
                "prometheus-redis-exporter", "prometheus-redis-exporter", args, ctx.workdir
            ))  # fmt: skip
            url = f"{exporter.base}/metrics"
            if tag == "redis":
                verify_redis_exporter(fetch(url), size)
            subjects[tag] = (exporter, scrape(url))
        results = measure_many(subjects, ctx.repeat, server=_server_stats(client, server))
        mixes = {
            "runbook-exporter, every queue read": command_mix(client, subjects["ours-full"][1]),
            "redis_exporter --check-keys": command_mix(client, subjects["redis"][1]),
        }
    return results, mixes


def _server_stats(
    client: redis.Redis, server: RedisServer
) -> Callable[[], tuple[float, float, float]]:
    def read() -> tuple[float, float, float]:
        stats = client.info("all")
        cpu = float(stats["used_cpu_sys"]) + float(stats["used_cpu_user"])
        # Deltas include this INFO of the "before" reading: one command, one read.
        return cpu, stats["total_commands_processed"] - 1, stats["total_reads_processed"] - 1

    return read


def verify_ours(body: bytes, size: int, plan: Plan) -> None:
    """Every queue reported, with exactly the counts written (getJobCounts' numbers)."""
    want = {(name, state): count for i, name in enumerate(queue_names(size))
            for state, count in plan.counts(is_paused(i)).items()}  # fmt: skip
    got = {}
    for labels, value in samples_of(body, "bullmq_queue_jobs"):
        found = dict(_LABEL.findall(labels))
        got[(found["queue"], found["state"])] = int(value)
    if got != want:
        wrong = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))[:5]
        raise RuntimeError(f"bullmq check counts differ from the data written: {wrong} "
                           f"({len(got)} samples, want {len(want)})")  # fmt: skip


def verify_node(counts: dict[str, dict[str, int]], names: list[str], plan: Plan) -> None:
    """Node BullMQ's getJobCounts() per queue equals the counts written (but "paused",
    which getJobCounts() leaves out where the v6 layout has no such list)."""
    for i, name in enumerate(names):
        want = plan.counts(is_paused(i))
        if any(counts[name].get(state, 0) != n for state, n in want.items() if state != "paused"):
            raise RuntimeError(f"Node BullMQ counts {name} as {counts[name]}")


def verify_redis_exporter(body: bytes, size: int) -> None:
    # Each queue has 7 non-empty state keys (wait or paused, not both); empty ones don't exist.
    found = len(samples_of(body, "redis_key_size"))
    if found != 7 * size:
        raise RuntimeError(f"redis_exporter reported {found} key sizes, want {7 * size}")


def command_mix(client: redis.Redis, action: Callable[[], object]) -> str:
    """The commands one scrape sends, most frequent first (INFO commandstats delta)."""
    before = _commandstats(client)
    action()
    after = _commandstats(client)
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta["info"] = delta.get("info", 0) - 1  # the "before" reading
    mix = sorted(((n, c) for n, c in delta.items() if c > 0), key=lambda nc: -nc[1])
    return ", ".join(f"{name.upper()} {count:,}" for name, count in mix[:8])


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()}


def cross_check(ctx: Context, client: redis.Redis, server: RedisServer, plan: Plan) -> str:
    """Small run: the real bullmq package must count the direct writer's data as planned,
    and the writer's key layout must match what the real package writes."""
    client.flushall()
    names = queue_names(10)
    write_queues(client, PREFIX, names, plan)
    probe = [names[0], names[9]]  # one running, one paused queue
    venvs = _side_venvs(ctx)
    if not venvs:
        return ("Cross-check against the real bullmq package skipped: no side venv "
                "(scripts/test-setup.d/bullmq.sh creates them).")  # fmt: skip
    checked = []
    for label, python in venvs.items():
        counts = _real(python, "counts", server.url, PREFIX, *probe)["counts"]
        for index, name in ((0, names[0]), (9, names[9])):
            want = plan.counts(is_paused(index))
            got = {state: counts[name][state] for state in want}
            if got != want or counts[name]["is_paused"] != is_paused(index):
                raise RuntimeError(f"{label} counts {name} as {counts[name]}, written {want}")
        checked.append(label)
    # Layout: the real package writes a reference queue in db 1; compare key shapes.
    reference = server.url.removesuffix("/0") + "/1"
    python = next(iter(venvs.values()))
    _real(python, "make", reference, PREFIX, "reference", plan.as_json(False))
    with redis.Redis(port=server.port, db=1, decode_responses=True) as reference_db:
        real = _shape(reference_db, "reference")
    mine = _shape(client, names[0])
    if real != mine:
        raise RuntimeError(f"layout differs from real bullmq: only real {sorted(real - mine)}, "
                           f"only written {sorted(mine - real)}")  # fmt: skip
    client.flushall()
    return (f"Cross-check (10 queues): {' and '.join(checked)} `getJobCounts()` return "
            f"exactly the written counts for a running and a paused queue, and the "
            f"written keys have the same names and types as a queue the real package "
            f"filled with the same plan ({len(real)} key shapes). The bench also checks "
            f"every count the bullmq check reports at every size before timing it.")  # fmt: skip


def _side_venvs(ctx: Context) -> dict[str, Path]:
    found = {label: REPO / path / "bin" / "python" for label, path in SIDE_VENVS.items()}
    if not all(p.exists() for p in found.values()):
        setup = REPO / "scripts" / "test-setup.d" / "bullmq.sh"
        if setup.exists():
            ctx.log("  bullmq: creating the side venvs with the real bullmq package")
            subprocess.run(["bash", str(setup)], check=False, timeout=600)
    return {label: p for label, p in found.items() if p.exists()}


def _real(python: Path, *args: str) -> dict[str, Any]:
    """Run the real package's driver, shared with the tests (tests/redis/bullmq_driver.py)."""
    run = subprocess.run([str(python), str(DRIVER), *args],
                         check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def _shape(client: redis.Redis, queue: str) -> set[tuple[str, str]]:
    """(key suffix with job ids replaced by <id>, type) of one queue's keys."""
    head = f"{PREFIX}:{queue}:"
    shapes = set()
    for key in client.scan_iter(match=f"{head}*", count=1000):
        suffix = re.sub(r"^(\d+|[0-9a-f]{32}|parent-\d+)(?=$|:)", "<id>", key[len(head) :])
        shapes.add((suffix, str(client.type(key))))
    return shapes


def _per(seconds: float, queues: int) -> str:
    return f"{seconds / queues * 1e6:,.0f} µs"


def _durations(bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        for labels, value in samples_of(body, "runbook_exporter_check_duration_seconds"):
            if f'check="{CHECK}"' in labels:
                out.append(value)
    return out
