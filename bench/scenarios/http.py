"""HTTP health: N /health endpoints with JSON bodies, ours vs blackbox's http prober."""

from __future__ import annotations

from bench.harness import Context, fetch, samples_of, series_count, targets
from bench.report import Section, cpu_ms, mib, ms, ratio
from bench.scenarios.common import (
    check_successes,
    client_note,
    versus_blackbox,
    with_blackbox,
)

TITLE = "HTTP health"
WHAT = (
    "N aiohttp servers on loopback answering `GET /health` with a JSON document (overall "
    "status, three components, a timestamp). This exporter: one scrape of N `http` checks "
    "reading the status, every component and the timestamp (`status_path`, `components`, "
    "`freshness`). blackbox_exporter: N `/probe?module=http_2xx&target=…` requests at "
    "once; it reports the status code, timings and sizes, and can only match the body "
    "against a regular expression (pass/fail): it cannot export per-component status or a "
    "timestamp from the body (that takes json_exporter as a second exporter)."
)


def run(ctx: Context) -> Section:
    sizes = [10] if ctx.quick else [100]
    section = Section("http", TITLE, WHAT, header=[
        "endpoints", "ours wall", "blackbox wall", "wall ratio", "ours CPU", "blackbox CPU",
        "CPU ratio", "ours RSS", "blackbox RSS", "series: ours / blackbox",
    ])  # fmt: skip
    prober = {"prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}}
    for size in sizes:
        ctx.log(f"  http: {size} endpoints")
        with targets(ctx.workdir, "http", size) as ports:
            config = {"checks": [
                {"name": f"svc-{p}", "kind": "http", "url": f"http://127.0.0.1:{p}/health",
                 "timeout": "5s", "status_path": "status", "components": "components",
                 "freshness": [{"item": "last_export", "path": "last_export"}]}
                for p in ports
            ]}  # fmt: skip
            with with_blackbox(ctx, config, "http_2xx", prober) as (exporter, blackbox):
                body = fetch(f"{exporter.base}/metrics")
                ok, total = check_successes(body)
                components = [v for _, v in samples_of(body, "http_component_up")]
                if ok != size or total != size or components != [1.0] * 3 * size:
                    up = components.count(1.0)
                    raise RuntimeError(f"ours: {ok}/{total} checks, {up} components up")
                ours_series = series_count(body)
                urls = [f"{blackbox.base}/probe?module=http_2xx&target=127.0.0.1:{p}/health"
                        for p in ports]  # fmt: skip
                probe_series = series_count(fetch(urls[0]))
                mine, theirs = versus_blackbox(ctx, exporter, blackbox, urls)
        section.notes.append(client_note(mine, theirs, size))
        section.rows.append([
            str(size), ms(mine.wall), ms(theirs.wall), ratio(theirs.wall, mine.wall),
            cpu_ms(mine.cpu), cpu_ms(theirs.cpu), ratio(theirs.cpu, mine.cpu),
            mib(mine.rss), mib(theirs.rss), f"{ours_series:,} / {probe_series * size:,}",
        ])  # fmt: skip
    section.notes.append(
        "Both open a fresh connection per probe. Series counts include each exporter's own "
        "metrics (ours: process and build info once per scrape; blackbox: probe timings per "
        "request)."
    )
    return section
