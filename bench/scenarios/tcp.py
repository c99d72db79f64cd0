"""TCP reachability: N listening ports, one scrape of ours vs N blackbox /probe requests."""

from __future__ import annotations

from bench.harness import Context, fetch, targets
from bench.report import Section, Target, cpu_ms, mib, ms, ratio
from bench.scenarios.common import (
    check_successes,
    client_note,
    versus_blackbox,
    with_blackbox,
)

TITLE = "TCP reachability"
WHAT = (
    "N loopback ports that accept and close (in a helper process). This exporter: one "
    "scrape of N `tcp` checks (the runner bounds them to 64 at a time). blackbox_exporter: "
    "N `/probe?module=tcp_connect&target=…` requests sent at once, as Prometheus with one "
    "job per target would. Wall is the whole batch; CPU is the exporter process only "
    "(the bench's HTTP client and Prometheus' ingestion of N scrapes are not counted)."
)
GOAL_WALL = 1.5


def run(ctx: Context) -> Section:
    sizes = [20] if ctx.quick else [100, 1000]
    section = Section(
        "tcp",
        TITLE,
        WHAT,
        header=[
            "ports",
            "ours wall",
            "blackbox wall",
            "wall ratio",
            "ours CPU",
            "blackbox CPU",
            "CPU ratio",
            "ours RSS",
            "blackbox RSS",
        ],
    )
    prober = {"prober": "tcp", "timeout": "5s"}
    for size in sizes:
        ctx.log(f"  tcp: {size} ports")
        with targets(ctx.workdir, "tcp", size) as ports:
            config = {
                "checks": [
                    {
                        "name": f"port-{p}",
                        "kind": "tcp",
                        "address": f"127.0.0.1:{p}",
                        "timeout": "5s",
                    }
                    for p in ports
                ]
            }
            with with_blackbox(ctx, config, "tcp_connect", prober) as (exporter, blackbox):
                ok, total = check_successes(fetch(f"{exporter.base}/metrics"))
                if ok != size or total != size:
                    raise RuntimeError(f"ours: {ok}/{total} tcp checks succeeded, want {size}")
                urls = [
                    f"{blackbox.base}/probe?module=tcp_connect&target=127.0.0.1:{p}" for p in ports
                ]
                mine, theirs = versus_blackbox(ctx, exporter, blackbox, urls)
        section.notes.append(client_note(mine, theirs, size))
        section.rows.append(
            [
                str(size),
                ms(mine.wall),
                ms(theirs.wall),
                ratio(theirs.wall, mine.wall),
                cpu_ms(mine.cpu),
                cpu_ms(theirs.cpu),
                ratio(theirs.cpu, mine.cpu),
                mib(mine.rss),
                mib(theirs.rss),
            ]
        )
        if size == max(sizes):
            section.targets.append(
                Target(
                    f"{size} targets in one scrape under {GOAL_WALL} s",
                    f"{mine.wall:.3f} s",
                    mine.wall < GOAL_WALL,
                )
            )
            section.targets.append(
                Target(
                    f"less total CPU than blackbox for {size} targets",
                    f"ours {cpu_ms(mine.cpu)} vs blackbox {cpu_ms(theirs.cpu)} "
                    f"({ratio(theirs.cpu, mine.cpu)})",
                    mine.cpu < theirs.cpu,
                )
            )
    section.notes.append(
        "CPU comes from /proc/PID/stat at 10 ms resolution (USER_HZ=100): small values are "
        "coarse; the per-run numbers are medians."
    )
    return section
