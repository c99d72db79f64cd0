"""Command line: serve (default), validate, check, bundle."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.config import Config, load_default, load_file
from exporter.exposition import Renderer
from exporter.fields import ConfigError, parse_duration
from exporter.logs import LEVELS, event, setup
from exporter.probing import DEFAULT_IDLE_SECONDS, DEFAULT_MAX_POOLED
from exporter.runner import DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_OFFSET, CheckResult, Runner

if TYPE_CHECKING:  # the web server is imported by `serve` only: validate/check stay small
    from aiohttp import web

    from exporter.webconfig import WebConfig

DEFAULT_LISTEN = ":9711"
# Idle keep-alive connections and ones that never finish a request are closed after this:
# Prometheus reconnects at its next scrape, an idle-socket flood cannot hold every fd.
DEFAULT_IDLE_TIMEOUT = 60.0
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """``:9711`` (all interfaces), ``127.0.0.1:9711`` or ``[::1]:9711``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f'expected [host]:port such as :9711, got "{text}"')
    return (host.strip("[]") or None), int(port)


def _duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f'expected a duration such as 500ms, got "{text}"')
    return seconds


def _config_flag(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Subcommands suppress the default so a flag given before the command survives.
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        default=None if top else argparse.SUPPRESS,
        help="YAML configuration (default: the embedded default config)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook-exporter",
        description="Prometheus exporter for the checks operations runbooks write down.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _config_flag(parser, top=True)
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help="address to listen on (default %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="exporter-toolkit web config: TLS and basic auth",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="lifecycle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer POST /-/reload (--no-web.enable-lifecycle: 403; SIGHUP still reloads)",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=_duration,
        default=DEFAULT_IDLE_TIMEOUT,
        help="close a connection that sends no complete request for this long (default 1m)",
    )
    parser.add_argument(
        "--web.scrape-timeout-offset",
        dest="timeout_offset",
        type=_duration,
        default=DEFAULT_TIMEOUT_OFFSET,
        help="subtracted from Prometheus' scrape timeout (default 500ms)",
    )
    parser.add_argument(
        "--checks.max-concurrency",
        dest="max_concurrency",
        type=int,
        default=DEFAULT_MAX_CONCURRENCY,
        help="checks running at once across all scrapes (default %(default)s)",
    )
    parser.add_argument(
        "--probe.max-pooled",
        dest="probe_max_pooled",
        type=int,
        default=DEFAULT_MAX_POOLED,
        help="/probe targets whose connections are kept open at most (default %(default)s)",
    )
    parser.add_argument(
        "--probe.idle-timeout",
        dest="probe_idle_timeout",
        type=_duration,
        default=DEFAULT_IDLE_SECONDS,
        help="close a /probe target's connections after this long unused (default 5m)",
    )
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info")
    parser.add_argument(
        "--log.format", dest="log_format", choices=("logfmt", "json"), default="logfmt"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    validate = commands.add_parser("validate", help="validate a config and exit")
    _config_flag(validate)
    check = commands.add_parser("check", help="run every check once and print the result")
    _config_flag(check)
    check.add_argument("--format", choices=("text", "openmetrics", "table"), default="text")
    commands.add_parser(
        "schema", help="print the JSON Schema of the configuration (docs/config.schema.json)"
    )
    _add_bundle(commands)
    return parser


def _add_bundle(commands: Any) -> None:
    try:
        bundle_cli = importlib.import_module("exporter.bundle.cli")
    except ImportError:  # the bundle generator is not part of this build
        return
    bundle_cli.add_parser(commands)


def _load(config_file: str | None, listen: str = DEFAULT_LISTEN) -> Config:
    if config_file:
        return load_file(config_file)
    _, port = parse_listen_address(listen)
    return load_default(port)


def _load_or_report(args: argparse.Namespace) -> Config | None:
    """The config, or None after printing every problem (already redacted)."""
    try:
        return _load(args.config_file)
    except ConfigError as exc:
        print("invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_report(args)
    if config is None:
        return EXIT_FAILED
    kinds: dict[str, int] = {}
    for spec in config.checks:
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    modules = f", {len(config.modules)} /probe modules" if config.modules else ""
    print(f"{config.source}: valid, {len(config.checks)} checks ({summary or 'none'}){modules}")
    return EXIT_OK


async def run_once(config: Config, budget: float | None = None) -> list[CheckResult]:
    """Run every check once on a fresh runner (by default, each within its own timeout)."""
    runner = Runner()
    await runner.apply(config)
    try:
        if budget is None:
            budget = max((spec.timeout for spec in config.checks), default=1.0) + 1.0
        return await runner.scrape(budget)
    finally:
        await runner.close()


def cmd_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args)
    if config is None:
        return EXIT_INVALID
    results = asyncio.run(run_once(config))
    if args.format == "table":
        print(format_table(results))
    else:
        accept = "application/openmetrics-text" if args.format == "openmetrics" else None
        sys.stdout.write(Renderer().render(results, (), accept)[0].decode())
    return EXIT_OK if all(r.success for r in results) else EXIT_FAILED


def format_table(results: Sequence[CheckResult]) -> str:
    """One row per check: result, duration, its main values, and why it failed."""
    from exporter.summary import key_values

    rows = [("CHECK", "KIND", "RESULT", "DURATION", "VALUES", "ERROR")]
    for r in results:
        rows.append(
            (
                r.name,
                r.kind,
                "ok" if r.success else "FAIL",
                f"{r.duration * 1000:.1f}ms",
                " ".join(key_values(r.samples, limit=4)) or "-",
                r.error or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        for row in rows
    ).rstrip()


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one, as Go programs do at start.

    The soft limit is often 1024: about a thousand idle sockets would then leave no file
    descriptor for a scrape or a check.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def shed_idle_connections(server: web.Server | None) -> int:
    """Close every connection of ``server`` with no request in progress; how many.

    aiohttp does not say publicly whether a connection is busy: a handler without the
    flag counts as busy and is kept.
    """
    closed = 0
    for handler in server.connections if server is not None else []:
        if getattr(handler, "_request_in_progress", True) is False:
            handler.force_close()
            closed += 1
    return closed


class AcceptFailureLog:
    """The event loop's exception handler for ``accept()`` failures (descriptors run out).

    asyncio reports every failed ``accept()`` with a traceback: 66,000 lines in 5 s under
    a 64-fd limit. Here one warning per interval with a count says the same; and each
    failure closes the connections that wait without a request in progress (``shed``),
    so that an idle-socket flood cannot keep /metrics unreachable until the idle timeout.
    Every other report goes to asyncio's default handler.
    """

    INTERVAL = 10.0

    def __init__(self, shed: Callable[[], int] | None = None) -> None:
        self._last = -self.INTERVAL
        self._suppressed = 0
        self.shed = shed

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system"):
            loop.default_exception_handler(context)
            return
        if self.shed is not None:
            self.shed()
        now = loop.time()
        if now - self._last < self.INTERVAL:
            self._suppressed += 1
            return
        error = context.get("exception")
        event(
            logging.WARNING,
            "cannot accept connections",
            err=getattr(error, "strerror", None) or str(error),
            repeated=self._suppressed,
        )
        self._last, self._suppressed = now, 0


def _release_startup_memory() -> None:
    """Give the heap that start-up freed (imports, YAML parsing) back to the system.

    glibc keeps freed heap pages mapped; malloc_trim returns the whole free pages among
    them: about 1.4 MiB of a ~42 MiB serving exporter (bench: footprint). Elsewhere (musl,
    macOS) there is no such call and nothing is done.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def serve(args: argparse.Namespace, config: Config, web_config: WebConfig) -> int:
    from aiohttp import web

    from exporter.probing import ProbePool
    from exporter.server import RunningExporter, make_app

    host, port = parse_listen_address(args.listen)
    raise_fd_limit()
    accept_failures = AcceptFailureLog()
    asyncio.get_running_loop().set_exception_handler(accept_failures.handle)
    exporter = RunningExporter(
        config,
        lambda: _load(args.config_file, args.listen),
        runner=Runner(max_concurrency=args.max_concurrency),
        timeout_offset=args.timeout_offset,
        prober=ProbePool(max_entries=args.probe_max_pooled, idle_seconds=args.probe_idle_timeout),
    )
    await exporter.start()
    # Everything loaded so far lives until exit; freezing it keeps the collector from
    # re-walking it on every scrape (about 40% of the CPU of a 1,000-queue bullmq scrape).
    gc.collect()
    gc.freeze()
    _release_startup_memory()
    runner = web.AppRunner(
        make_app(exporter, web_config.middlewares(), lifecycle=args.lifecycle),
        access_log=None,
        handle_signals=False,
        # aiohttp closes a connection that has no complete request after this long, from
        # its first byte on: idle keep-alives and slow senders alike.
        keepalive_timeout=args.idle_timeout,
    )
    await runner.setup()
    accept_failures.shed = lambda: shed_idle_connections(runner.server)
    site = web.TCPSite(runner, host, port, ssl_context=web_config.ssl_context())
    try:
        await site.start()
    except OSError as exc:
        event(logging.ERROR, "cannot listen", address=args.listen, err=exc.strerror or str(exc))
        await runner.cleanup()
        await exporter.stop()
        return EXIT_FAILED
    event(
        logging.INFO,
        "listening",
        address=args.listen,
        tls=web_config.tls is not None,
        config=config.source,
        checks=len(config.checks),
        modules=len(config.modules),
        version=__version__,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    event(logging.INFO, "shutting down")
    await runner.cleanup()
    for task in reloads:
        task.cancel()
    await exporter.stop()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from exporter.webconfig import NO_WEB_CONFIG, load_web_config

    try:
        config = _load(args.config_file, args.listen)
        web_config = load_web_config(args.web_config) if args.web_config else NO_WEB_CONFIG
    except ValueError as exc:
        event(logging.ERROR, "invalid flag", err=str(exc))
        return EXIT_INVALID
    except ConfigError as exc:
        event(logging.ERROR, "invalid configuration", problems=exc.problems)
        return EXIT_FAILED
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args, config, web_config))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup(args.log_level, args.log_format)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "schema":
        sys.stdout.write(importlib.import_module("exporter.schema").render())
        return EXIT_OK
    if args.command == "bundle":
        return int(importlib.import_module("exporter.bundle.cli").run(args))
    return cmd_serve(args)
