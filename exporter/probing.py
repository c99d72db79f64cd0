"""``/probe?module=NAME&target=TARGET``: one check of a module against a target per request.

Prometheus decides what is probed (service discovery, relabelling) and shards the work
(``hashmod``); the exporter only knows the modules: check templates without their target,
each with the patterns of the targets it accepts. A refused request is the caller's
mistake: it answers 400 with a one-line reason and is logged at debug level only.

Probes that hold connections (redis, bullmq, postgres, pgbouncer, mongodb, http) are kept
per (module, target) in a bounded pool whose idle entries expire, so a stream of distinct
targets costs a bounded number of open probes, never a growing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from exporter.checks import KINDS
from exporter.checks.base import CheckFailed, CheckSpec, Kind, Probe
from exporter.config import Config, Module, spec_as_dict
from exporter.exposition import encode_samples
from exporter.fields import Problems, Reader, describe
from exporter.logs import event
from exporter.redact import REDACTOR
from exporter.samples import Family, Sample, Sink, refuse_future_times
from exporter.summary import debug_text

if TYPE_CHECKING:  # the CLI reads this module's defaults without loading the web server
    from aiohttp import web

PROBE_SUCCESS = Family(
    "probe_success",
    "gauge",
    "1 when the /probe request's check succeeded, 0 when it failed or timed out.",
)
PROBE_DURATION = Family(
    "probe_duration_seconds",
    "gauge",
    "Wall time of the /probe request's check.",
)
PROBE_FAMILIES = (PROBE_SUCCESS, PROBE_DURATION)

DEFAULT_MAX_POOLED = 1000
DEFAULT_IDLE_SECONDS = 300.0
MAX_TARGET_LENGTH = 2048
# Query parameters that carry credentials: a target is a Prometheus label, stored and shown
# in every query result, so credentials belong in the module (``password:``), not here.
_CREDENTIAL_KEYS = ("password", "passwd", "pwd", "token", "secret", "auth", "key", "sig")


class TargetRefused(Exception):
    """A ``/probe`` request the exporter will not run; the message is the one-line reason."""


def resolve(config: Config, module_name: str | None, target: str | None) -> CheckSpec[Any]:
    """The check a request asks for, or :class:`TargetRefused` saying why not."""
    if not module_name:
        raise TargetRefused("missing module parameter (/probe?module=NAME&target=TARGET)")
    module = config.module(module_name)
    if module is None:
        known = ", ".join(m.name for m in config.modules) or "none configured"
        raise TargetRefused(f"unknown module {describe(module_name)} (known: {known})")
    if not target:
        raise TargetRefused("missing target parameter (/probe?module=NAME&target=TARGET)")
    kind = KINDS[module.kind]
    assert kind.target is not None  # config refuses modules of kinds without a target
    _check_target_text(target)
    if not any(pattern.fullmatch(target) for pattern in module.allowed_targets):
        raise TargetRefused(
            f"target {describe(target)} is not allowed by module {module.name} "
            "(it matches none of its allowed_targets)"
        )
    return _spec(module, kind, target)


def _check_target_text(target: str) -> None:
    if len(target) > MAX_TARGET_LENGTH:
        raise TargetRefused(f"malformed target: longer than {MAX_TARGET_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        raise TargetRefused("malformed target: contains control characters")
    if "://" in target:
        try:
            parts = urlsplit(target)
            has_password = parts.password is not None
            query = parse_qsl(parts.query)
        except ValueError as exc:
            raise TargetRefused(f"malformed target: {exc}") from None
        credential = has_password or any(
            any(word in name.lower() for word in _CREDENTIAL_KEYS) for name, _ in query
        )
        if credential:
            raise TargetRefused(
                "target carries credentials; set them in the module instead "
                "(a target is stored and shown as a Prometheus label)"
            )


def _spec(module: Module, kind: Kind[object], target: str) -> CheckSpec[Any]:
    assert kind.target is not None
    problems = Problems()
    reader = Reader({**module.options, kind.target: target}, "", problems)
    options = kind.parse(reader)
    reader.done()
    if problems.items:
        raise TargetRefused(f"malformed target: {REDACTOR.redact(problems.items[0])}")
    return CheckSpec(
        name=module.name,
        kind=module.kind,
        timeout=module.timeout,
        min_interval=0.0,
        labels=module.labels,
        options=options,
    )


@dataclass
class ProbeOutcome:
    """What one ``/probe`` request measured."""

    success: bool
    duration: float
    error: str | None
    samples: list[Sample]

    def all_samples(self) -> list[Sample]:
        return [
            Sample(PROBE_SUCCESS, (), 1.0 if self.success else 0.0),
            Sample(PROBE_DURATION, (), self.duration),
            *self.samples,
        ]


@dataclass
class _Pooled:
    spec: CheckSpec[Any]
    probe: Probe
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    busy: int = 0
    retired: bool = False


class ProbePool:
    """Live probes per (module, target): at most ``max_entries``, closed when idle.

    An entry is reused while its spec is unchanged (a reload that edits the module builds
    a new one), moved to the young end on each use, and retired when it has been idle for
    ``idle_seconds`` or is the oldest of too many. A retired entry still in use is closed
    when its last request finishes.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_POOLED,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        kinds: Mapping[str, Kind[object]] = KINDS,
    ) -> None:
        self.max_entries = max_entries
        self.idle_seconds = idle_seconds
        self._kinds = kinds
        self._entries: OrderedDict[tuple[str, str], _Pooled] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    async def run(self, spec: CheckSpec[Any], target: str, deadline: float) -> ProbeOutcome:
        """Run ``spec`` once, within its timeout and the loop-time ``deadline``."""
        loop = asyncio.get_running_loop()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(), name="probe-pool-sweeper")
        entry = self._checkout((spec.name, target), spec, loop.time())
        started = loop.time()
        sink = Sink(spec.name, spec.labels)
        error: str | None = None
        try:
            async with asyncio.timeout_at(min(deadline, started + spec.timeout)):
                async with entry.lock:  # one collect at a time on a shared connection
                    await entry.probe.collect(sink)
        except TimeoutError:
            error = f"timed out after {loop.time() - started:.3g}s"
        except CheckFailed as exc:
            error = str(exc) or "failed"
        except Exception as exc:
            error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            self._release(entry, loop.time())
        samples, future = refuse_future_times(sink.samples, spec.max_future_skew)
        if future is not None:
            error = future if error is None else f"{error}; {future}"
        if error is not None:
            error = REDACTOR.reason(error)  # cut, then redacted, as the runner does
            # Debug only: with thousands of targets, failures are Prometheus' to count.
            event(logging.DEBUG, "probe failed", module=spec.name, target=target, reason=error)
        return ProbeOutcome(error is None, loop.time() - started, error, list(samples))

    def _checkout(self, key: tuple[str, str], spec: CheckSpec[Any], now: float) -> _Pooled:
        entry = self._entries.get(key)
        if entry is not None and entry.spec != spec:
            del self._entries[key]
            self._retire(entry)
            entry = None
        if entry is None:
            entry = _Pooled(spec, self._kinds[spec.kind].probe(spec), now)
            self._entries[key] = entry
            self._shrink()
        else:
            self._entries.move_to_end(key)
        entry.busy += 1
        entry.last_used = now
        return entry

    def _release(self, entry: _Pooled, now: float) -> None:
        entry.busy -= 1
        entry.last_used = now
        if entry.retired and entry.busy == 0:
            self._close_later(entry.probe)

    def _shrink(self) -> None:
        """Retire the least recently used idle entries beyond ``max_entries``."""
        excess = len(self._entries) - self.max_entries
        if excess <= 0:
            return
        for key in list(self._entries):
            if excess <= 0:
                break
            entry = self._entries[key]
            if entry.busy:
                continue  # bounded anyway: at most one busy entry per request in flight
            del self._entries[key]
            self._retire(entry)
            excess -= 1

    def expire(self, now: float) -> int:
        """Retire entries idle for longer than ``idle_seconds``; how many went."""
        cutoff = now - self.idle_seconds
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.busy == 0 and entry.last_used <= cutoff
        ]
        for key in stale:
            self._retire(self._entries.pop(key))
        return len(stale)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(30.0, max(0.05, self.idle_seconds / 4)))
            self.expire(loop.time())

    def _retire(self, entry: _Pooled) -> None:
        entry.retired = True
        if entry.busy == 0:
            self._close_later(entry.probe)

    def _close_later(self, probe: Probe) -> None:
        task = asyncio.get_running_loop().create_task(_close_probe(probe))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every pooled probe (shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        entries, self._entries = list(self._entries.values()), OrderedDict()
        await asyncio.gather(*(_close_probe(e.probe) for e in entries))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _close_probe(probe: Probe) -> None:
    try:
        await asyncio.wait_for(probe.close(), 5.0)
    except Exception as exc:  # a target that hangs on close must not hold the exporter
        event(logging.DEBUG, "closing probe failed", err=repr(exc))


async def probe_response(
    pool: ProbePool,
    config: Config,
    query: Mapping[str, str],
    budget: float,
    accept: str | None,
) -> web.Response:
    """The answer to one ``/probe`` request: its series, or 400 and a one-line reason."""
    from aiohttp import web

    deadline = asyncio.get_running_loop().time() + budget
    target = query.get("target")
    try:
        spec = resolve(config, query.get("module"), target)
    except TargetRefused as exc:
        reason = REDACTOR.redact(str(exc))
        event(logging.DEBUG, "probe refused", module=query.get("module"), reason=reason)
        return web.Response(status=400, text=reason + "\n")
    assert target is not None
    outcome = await pool.run(spec, target, deadline)
    if query.get("debug") == "true":  # as blackbox_exporter: what was asked, what came back
        text = debug_text(
            f"Probe of {target} with module {spec.name}",
            {"module": spec.name, "target": target, **spec_as_dict(spec)},
            success=outcome.success,
            duration=outcome.duration,
            error=outcome.error,
            samples=outcome.all_samples(),
        )
        return web.Response(text=text)
    body, content_type = encode_samples(outcome.all_samples(), accept)
    return web.Response(body=body, headers={"Content-Type": content_type})
