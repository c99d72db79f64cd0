"""The HTTP side: /metrics, health, reload, status page and effective config."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter import __version__
from exporter.alert_links import AlertLink, alerts_by_check
from exporter.config import Config, spec_as_dict
from exporter.exposition import Renderer
from exporter.families import BUILD_INFO, CONFIG_RELOAD_SUCCESS_TIME, CONFIG_RELOAD_SUCCESSFUL
from exporter.fields import ConfigError
from exporter.logs import event
from exporter.probing import ProbePool, probe_response
from exporter.process import process_samples
from exporter.redact import REDACTOR
from exporter.runner import DEFAULT_TIMEOUT_OFFSET, Runner
from exporter.samples import Sample
from exporter.summary import debug_text, key_values

DEFAULT_SCRAPE_TIMEOUT = 10.0  # Prometheus' own default scrape_timeout

ConfigLoader = Callable[[], Config]


@dataclass
class ReloadState:
    """What the reload metrics and the status page say about the configuration."""

    source: str
    successful: bool = True
    success_timestamp: float = field(default_factory=time.time)
    last_error: str | None = None


def scrape_budget(header: str | None, offset: float, default: float) -> float:
    """Seconds a scrape may take: Prometheus' timeout header minus ``offset``.

    A missing, unparsable, zero or negative header falls back to ``default``; an offset
    larger than the timeout leaves half the timeout rather than nothing.
    """
    try:
        timeout = float(header) if header is not None else default
    except ValueError:
        timeout = default
    if not timeout > 0 or timeout != timeout or timeout == float("inf"):
        timeout = default
    return timeout - offset if timeout > offset else timeout / 2


class RunningExporter:
    """The running exporter: a runner plus the config that feeds it, and its reloads."""

    def __init__(
        self,
        config: Config,
        loader: ConfigLoader,
        *,
        runner: Runner | None = None,
        timeout_offset: float = DEFAULT_TIMEOUT_OFFSET,
        default_scrape_timeout: float = DEFAULT_SCRAPE_TIMEOUT,
        prober: ProbePool | None = None,
    ) -> None:
        self.config = config
        self.loader = loader
        self.runner = runner or Runner()
        self.prober = prober or ProbePool()
        self.timeout_offset = timeout_offset
        self.default_scrape_timeout = default_scrape_timeout
        self.reload_state = ReloadState(source=config.source)
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self._renderer = Renderer()

    async def start(self) -> None:
        await self.runner.apply(self.config)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.runner.close()
        await self.prober.close()

    async def reload(self) -> bool:
        """Load the config again; keep the old one when the new one is invalid.

        Any failure, not only an invalid file, keeps the old configuration and shows as
        ``config_last_reload_successful 0`` and on the status page: a reload that
        answered 500 while the metric said 1 was a silent failure.
        """
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(self.loader)
                await self.runner.apply(config)
            except ConfigError as exc:
                return self._refused(exc.problems)  # ConfigError redacts its problems
            except Exception as exc:
                event(logging.DEBUG, "reload raised", exc_info=True)
                return self._refused([REDACTOR.reason(f"unexpected {type(exc).__name__}: {exc}")])
            self.config = config
            self.reload_state = ReloadState(source=config.source)
            event(
                logging.INFO,
                "configuration reloaded",
                source=config.source,
                checks=len(config.checks),
            )
            return True

    def _refused(self, problems: list[str]) -> bool:
        self.reload_state.successful = False
        self.reload_state.last_error = "\n".join(problems)
        event(
            logging.ERROR,
            "reload refused, keeping the previous configuration",
            source=self.reload_state.source,
            problems=problems,
        )
        return False

    def own_samples(self) -> list[Sample]:
        """The exporter's own series: build info, reload state, process metrics."""
        return [
            Sample(BUILD_INFO, (("version", __version__),), 1.0),
            Sample(CONFIG_RELOAD_SUCCESSFUL, (), 1.0 if self.reload_state.successful else 0.0),
            Sample(CONFIG_RELOAD_SUCCESS_TIME, (), self.reload_state.success_timestamp),
            *process_samples(),
        ]

    async def scrape(
        self, timeout_header: str | None, accept: str | None, *, gzip: bool = False
    ) -> tuple[bytes, str]:
        """One scrape's body (gzip-compressed when asked) and content type."""
        budget = scrape_budget(timeout_header, self.timeout_offset, self.default_scrape_timeout)
        results = await self.runner.scrape(budget)
        return self._renderer.render(results, self.own_samples(), accept, gzip=gzip)

    async def debug_check(self, request: web.Request) -> web.Response:
        """``/debug?check=NAME``: the last run of one check, what was asked and returned."""
        name = request.query.get("check", "")
        for spec, result in self.runner.last_results():
            if spec.name == name:
                text = debug_text(
                    f"Check {spec.name} ({spec.kind}), last run",
                    spec_as_dict(spec),
                    success=None if result is None else result.success,
                    duration=None if result is None else result.duration,
                    error=None if result is None else result.error,
                    samples=() if result is None else result.samples,
                    finished_at=None if result is None else result.finished_at,
                )
                return web.Response(text=text)
        return web.Response(status=404, text=f"no check named {name[:100]!r}\n")

    async def probe(self, request: web.Request) -> web.Response:
        """``/probe``: one module against one target, within the scrape timeout."""
        budget = scrape_budget(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            self.timeout_offset,
            self.default_scrape_timeout,
        )
        return await probe_response(
            self.prober, self.config, request.query, budget, request.headers.get("Accept")
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Content types a browser may send cross-site without asking first (a CORS "simple"
# request): a form or a fetch() with a text/plain body.
_BROWSER_BODY_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def cross_site_refusal(request: web.Request) -> str | None:
    """Why a lifecycle request (``/-/reload``) looks like it came from a web page, or None.

    Reloads come from curl, config management and SIGHUP, none of which sends ``Origin``
    or ``Sec-Fetch-Site``; a browser sends them with every POST, even to its own origin,
    which also covers DNS rebinding (where the page's origin and the Host agree). A form
    or text body is refused as well, for old browsers that send neither header.
    """
    if "Origin" in request.headers:
        return "requests from web pages (an Origin header) are refused"
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site != "none":
        return f"requests from web pages (Sec-Fetch-Site: {fetch_site}) are refused"
    if request.content_type in _BROWSER_BODY_TYPES and request.can_read_body:
        return f"a {request.content_type} body is refused (send no body)"
    return None


def make_app(  # noqa: C901 - registers every route and middleware of the server in one place
    exporter: RunningExporter, middlewares: Sequence[Middleware] = (), *, lifecycle: bool = True
) -> web.Application:
    """The aiohttp application; ``middlewares`` come from the web config (auth, headers);
    ``lifecycle`` False answers ``/-/reload`` with 403 (``--no-web.enable-lifecycle``)."""
    app = web.Application(middlewares=list(middlewares))

    async def metrics(request: web.Request) -> web.Response:
        gzip = "gzip" in request.headers.get("Accept-Encoding", "")
        body, content_type = await exporter.scrape(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            request.headers.get("Accept"),
            gzip=gzip,
        )
        headers = {"Content-Type": content_type}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        if exporter.ready:
            return web.Response(text="Ready.\n")
        return web.Response(text="Not ready.\n", status=503)

    async def reload(request: web.Request) -> web.Response:
        if not lifecycle:
            return web.Response(text="Lifecycle API is not enabled.\n", status=403)
        refusal = cross_site_refusal(request)
        if refusal is not None:
            return web.Response(text=f"Reload refused: {refusal}.\n", status=403)
        if await exporter.reload():
            return web.Response(text="Reloaded.\n")
        return web.Response(
            text=f"Reload refused, previous configuration kept:\n"
            f"{exporter.reload_state.last_error}\n",
            status=400,
        )

    async def config(_: web.Request) -> web.Response:
        body = json.dumps(exporter.config.redacted(), indent=2, sort_keys=False)
        return web.Response(text=body + "\n", content_type="application/json")

    async def status(_: web.Request) -> web.Response:
        # The alert links read the profile once per config: off the event loop.
        alerts = await asyncio.to_thread(alerts_by_check, exporter.config)
        return web.Response(text=render_status(exporter, alerts), content_type="text/html")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", exporter.probe)
    app.router.add_get("/debug", exporter.debug_check)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    app.router.add_get("/config", config)
    app.router.add_get("/", status)
    return app


def render_status(exporter: RunningExporter, alerts: Mapping[str, Sequence[AlertLink]]) -> str:
    """The HTML status page: one row per check, plus the reload state."""
    esc = html.escape
    rows = []
    for spec, result in exporter.runner.last_results():
        fed = "<br>".join(
            f"<a href='{esc(url)}'>{esc(name)}</a> ({esc(severity)})"
            for name, severity, url in alerts.get(spec.name, ())
        )
        values = ""
        if result is None:
            state, duration, when, error = "not run yet", "", "", ""
        else:
            state = "ok" if result.success else "FAILED"
            duration = f"{result.duration * 1000:.1f} ms"
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.finished_at))
            error = result.error or ""
            values = "<br>".join(esc(v) for v in key_values(result.samples))
        debug = f"/debug?check={urllib.parse.quote(spec.name)}"
        rows.append(
            f"<tr class='{'ok' if state == 'ok' else 'bad'}'><td>{esc(spec.name)}</td>"
            f"<td>{esc(spec.kind)}</td><td>{esc(state)}</td><td>{esc(duration)}</td>"
            f"<td>{esc(when)}</td><td class='values'>{values}</td><td>{esc(error)}</td>"
            f"<td class='alerts'>{fed}</td>"
            f"<td><a href='{esc(debug)}'>debug</a></td></tr>"
        )
    reload = exporter.reload_state
    reload_line = (
        "last reload succeeded"
        if reload.successful
        else f"last reload FAILED, previous configuration kept: {reload.last_error}"
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>runbook-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
tr.bad td{{color:#a00}}pre{{white-space:pre-wrap}}</style></head>
<body><h1>runbook-exporter {esc(__version__)}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/config">Configuration</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
<p>Configuration: {esc(exporter.config.source)} ({len(exporter.config.checks)} checks);
<span class="{"ok" if reload.successful else "bad"}">{esc(reload_line)}</span></p>
<table><tr><th>Check</th><th>Kind</th><th>Last result</th><th>Duration</th>
<th>Last run</th><th>Key values</th><th>Last error</th><th>Alerts it feeds</th><th></th></tr>
{"".join(rows)}
</table></body></html>
"""
