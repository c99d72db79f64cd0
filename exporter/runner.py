"""Runs every check on each scrape: concurrently, single-flight, within the deadline."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.checks import KINDS
from exporter.checks.base import CheckFailed, CheckSpec, Kind, Probe
from exporter.config import Config
from exporter.logs import event
from exporter.redact import REDACTOR
from exporter.samples import Sample, Sink, refuse_future_times

DEFAULT_MAX_CONCURRENCY = 64
# Seconds subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to get the scrape
# deadline (--web.scrape-timeout-offset): time left to encode and send the answer.
DEFAULT_TIMEOUT_OFFSET = 0.5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one run of one check."""

    name: str
    kind: str
    labels: tuple[tuple[str, str], ...]  # the check's static labels
    success: bool
    duration: float
    finished_at: float  # Unix time, for the status page
    started: float  # event-loop time, for min_interval reuse
    error: str | None
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class _Snapshot:
    """The results of a scrape that reused every check's result, while all stay fresh."""

    checks: dict[str, _LiveCheck]  # the configuration they belong to (identity)
    results: list[CheckResult]
    fresh_until: float  # event-loop time at which the first of them expires


class _LiveCheck:
    def __init__(self, spec: CheckSpec[Any], probe: Probe) -> None:
        self.spec = spec
        self.probe = probe
        self.last: CheckResult | None = None
        self.inflight: asyncio.Task[CheckResult] | None = None


class Runner:
    """Owns the live probes of one configuration and runs them on demand."""

    def __init__(
        self,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        kinds: Mapping[str, Kind[object]] = KINDS,
    ) -> None:
        self._kinds = kinds
        self._checks: dict[str, _LiveCheck] = {}
        self._limit = asyncio.Semaphore(max_concurrency)
        self._snapshot: _Snapshot | None = None
        # Checks a reload replaced while they ran: closed once their run ends.
        self._retiring: dict[asyncio.Task[None], list[_LiveCheck]] = {}

    @property
    def specs(self) -> list[CheckSpec[Any]]:
        return [live.spec for live in self._checks.values()]

    def last_results(self) -> list[tuple[CheckSpec[Any], CheckResult | None]]:
        return [(live.spec, live.last) for live in self._checks.values()]

    async def apply(self, config: Config) -> None:
        """Switch to ``config``: unchanged checks keep their probe, the others are closed."""
        old = self._checks
        new: dict[str, _LiveCheck] = {}
        try:
            for spec in config.checks:
                kept = old.get(spec.name)
                if kept is not None and kept.spec == spec:
                    new[spec.name] = kept
                else:
                    new[spec.name] = _LiveCheck(spec, self._kinds[spec.kind].probe(spec))
        except BaseException:
            # A probe that cannot be made leaves the old configuration running whole.
            await self._close(
                [live for live in new.values() if old.get(live.spec.name) is not live]
            )
            raise
        self._checks = new
        retired = [live for name, live in old.items() if new.get(name) is not live]
        running = [live for live in retired if live.inflight and not live.inflight.done()]
        await self._close([live for live in retired if live not in running])
        if running:
            # A scrape that started before this reload waits for these runs: cancelling
            # them would report check_success 0 for checks that are only being replaced
            # (a false page). Each run ends within its own timeout; then it is closed.
            task = asyncio.get_running_loop().create_task(self._retire(running))
            self._retiring[task] = running

    async def _retire(self, running: list[_LiveCheck]) -> None:
        await asyncio.wait([live.inflight for live in running if live.inflight is not None])
        task = asyncio.current_task()
        if task is not None and self._retiring.pop(task, None) is not None:
            await self._close(running)

    async def close(self) -> None:
        retired, self._checks = list(self._checks.values()), {}
        for task, running in self._retiring.items():
            task.cancel()
            retired.extend(running)
        self._retiring.clear()
        await self._close(retired)

    async def _close(self, retired: list[_LiveCheck]) -> None:
        for live in retired:
            if live.inflight is not None and not live.inflight.done():
                live.inflight.cancel()
        results = await asyncio.gather(
            *(asyncio.wait_for(live.probe.close(), 5.0) for live in retired),
            return_exceptions=True,
        )
        for live, outcome in zip(retired, results, strict=True):
            if isinstance(outcome, BaseException):
                event(
                    logging.WARNING,
                    "closing check failed",
                    check=live.spec.name,
                    err=repr(outcome),  # the log formatter redacts
                )

    async def scrape(self, budget: float) -> list[CheckResult]:
        """Results for every check within ``budget`` seconds, fresh or reused.

        While every result is still within its ``min_interval``, the same list object is
        returned again (callers must not mutate it): the renderer then recognises the whole
        state by identity and serves the bytes it already encoded, so a scrape of 10,000
        cached series costs well under a millisecond before HTTP (bench: load scenario).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        checks = self._checks  # a reload during this scrape swaps the dict, never mutates it
        snapshot = self._snapshot
        if snapshot is not None and snapshot.checks is checks and started < snapshot.fresh_until:
            return snapshot.results
        deadline = started + budget
        pending: dict[str, asyncio.Task[CheckResult]] = {}
        results: dict[str, CheckResult] = {}
        for name, live in checks.items():
            last = live.last
            if last is not None and started - last.started < live.spec.min_interval:
                results[name] = last
                continue
            if live.inflight is None or live.inflight.done():
                live.inflight = loop.create_task(self._run(live, deadline), name=f"check:{name}")
            pending[name] = live.inflight
        if pending:
            await asyncio.wait(pending.values(), timeout=max(0.0, deadline - loop.time()))
        for name, task in pending.items():
            if task.done() and not task.cancelled():
                results[name] = task.result()
                continue
            if task.cancelled():
                error = "cancelled: the exporter is shutting down"
            else:
                error = f"scrape deadline of {budget:.3g}s passed before the check finished"
            results[name] = CheckResult(
                name=name,
                kind=checks[name].spec.kind,
                labels=checks[name].spec.labels,
                success=False,
                duration=loop.time() - started,
                finished_at=time.time(),
                started=started,
                error=error,
                samples=(),
            )
        ordered = [results[name] for name in checks]
        if not pending:
            # No check ran: nothing can change until the first cached result expires (a
            # result only changes through a run, and a run starts only once it expired).
            fresh_until = min(
                (r.started + checks[r.name].spec.min_interval for r in ordered),
                default=math.inf,
            )
            self._snapshot = _Snapshot(checks, ordered, fresh_until)
        return ordered

    async def _run(self, live: _LiveCheck, deadline: float) -> CheckResult:
        loop = asyncio.get_running_loop()
        spec = live.spec
        started = loop.time()
        sink = Sink(spec.name, spec.labels)
        error: str | None = None
        limit = min(started + spec.timeout, deadline)
        try:
            async with asyncio.timeout_at(limit):
                async with self._limit:
                    await live.probe.collect(sink)
        except TimeoutError:
            waited = loop.time() - started
            error = f"timed out after {waited:.3g}s"
        except CheckFailed as exc:
            error = str(exc) or "failed"
        except Exception as exc:
            error = f"unexpected {type(exc).__name__}: {exc}"
            event(logging.DEBUG, "check raised", check=spec.name, kind=spec.kind, exc_info=True)
        samples, future = refuse_future_times(sink.samples, spec.max_future_skew)
        if future is not None:
            error = future if error is None else f"{error}; {future}"
        if error is not None:
            # Reasons quote targets (a JSON key, an error line): cut, then redact, once.
            error = REDACTOR.reason(error)
        result = CheckResult(
            name=spec.name,
            kind=spec.kind,
            labels=spec.labels,
            success=error is None,
            duration=loop.time() - started,
            finished_at=time.time(),
            started=started,
            error=error,
            samples=samples,
        )
        self._log_transition(live.last, result)
        live.last = result
        return result

    @staticmethod
    def _log_transition(previous: CheckResult | None, result: CheckResult) -> None:
        """Log failures once per change of reason, recoveries once, the rest at debug."""
        if result.error is not None:
            changed = previous is None or previous.error != result.error
            event(
                logging.WARNING if changed else logging.DEBUG,
                "check failed",
                check=result.name,
                kind=result.kind,
                reason=result.error,
                duration_seconds=round(result.duration, 6),
            )
        elif previous is not None and previous.error is not None:
            event(logging.INFO, "check recovered", check=result.name, kind=result.kind)
