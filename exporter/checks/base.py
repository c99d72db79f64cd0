"""What every check kind module provides: options parsing, a probe, its families."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from exporter.alerting import AlertSetting, DefaultAlert, Panel
from exporter.fields import Reader
from exporter.samples import Family, Sink

OptionsT = TypeVar("OptionsT")  # a kind's frozen options dataclass
# Covariant: a Kind[HttpOptions] is a Kind[object], so the registry holds every kind with
# no Any (a kind's options only come out of its parse).
KindOptionsT = TypeVar("KindOptionsT", covariant=True)
ResultT = TypeVar("ResultT")


# The share of a check's timeout each step may use, in one place so that the kinds agree.
# The runner cancels a check at its timeout with a generic "timed out"; each step below
# stops earlier so that the probe itself can say which step was slow (and write its 0s).
#
# A probe's whole exchange (tcp, http): 90 % of the timeout, or the timeout less half a
# second when that is longer (timeouts over 5 s): time to close and raise its own reason.
OWN_BUDGET_SHARE = 0.9
OWN_BUDGET_MARGIN = 0.5
# A driver's own timeout (asyncpg's connect and statement_timeout, libpq's connect_timeout,
# PyMongo's timeoutMS, SQLite's progress-handler interrupt): 80 %. A driver enforces it on
# the server or in its own loop, and the cancel or error reply needs a round trip to come
# back, so it gets more room than a probe that stops itself.
DRIVER_SHARE = 0.8
# Waits that sleep where nothing interrupts them (SQLite's busy handler): half.
WAIT_SHARE = 0.5


def own_budget(timeout: float) -> float:
    """The time a probe allows its whole exchange: a little under the check timeout.

    Stopping first lets the probe say which step was slow and write its 0s, instead of
    the runner's generic "timed out".
    """
    return max(timeout * OWN_BUDGET_SHARE, timeout - OWN_BUDGET_MARGIN)


def driver_timeout(timeout: float) -> float:
    """The timeout handed to a client library for its connect or statements."""
    return timeout * DRIVER_SHARE


class CheckFailed(Exception):
    """The target answered wrongly or not at all; the message is the operator's reason.

    Kinds raise it with a short, secret-free sentence (``connection refused``,
    ``components.redis.status is "error", expected "ok"``); the runner records it once.
    """


class ConnectionLost(Exception):
    """A connection broke mid-run (the server restarted or stopped); the message is the
    operator's reason. Raised by a probe's own steps for :func:`once_more_if_kept`."""


async def once_more_if_kept(
    attempt: Callable[[], Awaitable[ResultT]],
    *,
    kept: bool,
    drop: Callable[[], Awaitable[None]],
    lost: type[BaseException] | tuple[type[BaseException], ...] = ConnectionLost,
    repeatable: Callable[[BaseException], bool] = lambda exc: True,
) -> ResultT:
    """Run ``attempt``; when a connection kept from an earlier scrape turns out to be
    dead (``lost``), ``drop`` it and run ``attempt`` once more on a new one.

    A kept connection whose server restarted since the last scrape fails on first use:
    one fresh try tells that apart from a server that is down. A new connection that
    fails is not tried again (the server is down, say so now), nor is a run for which
    ``repeatable(exc)`` says no (samples already written would be doubled; a reply that
    broke the protocol would break it again). The last ``lost`` error propagates, after
    ``drop``.
    """
    try:
        return await attempt()
    except lost as exc:
        await drop()
        if not kept or not repeatable(exc):
            raise
    try:
        return await attempt()
    except lost:
        await drop()
        raise


@dataclass(frozen=True)
class CheckSpec(Generic[OptionsT]):
    """One configured check: the common fields plus its kind's options."""

    name: str
    kind: str
    timeout: float
    min_interval: float
    labels: tuple[tuple[str, str], ...]
    options: OptionsT
    # How far ahead of this host's clock a past time (``Family.past_time``) may be.
    max_future_skew: float = 300.0
    # ``alerts:`` of the check: read by the bundle generator only. Not compared, so that
    # a threshold edited on reload does not reconnect the probe.
    alerts: tuple[AlertSetting, ...] = field(default=(), compare=False)


class Probe(Protocol):
    """A live check: owns its connections from creation until :meth:`close`."""

    async def collect(self, out: Sink) -> None:
        """Write samples to ``out``; raise :class:`CheckFailed` (or anything) to fail."""

    async def close(self) -> None:
        """Release connections; called on reload (removed checks) and shutdown."""


class BaseProbe(Generic[OptionsT]):
    """Convenience base: keeps the spec, closes nothing."""

    def __init__(self, spec: CheckSpec[OptionsT]) -> None:
        self.spec = spec
        self.options: OptionsT = spec.options

    async def collect(self, out: Sink) -> None:
        """Write samples to ``out``: every kind overrides this."""
        raise NotImplementedError

    async def close(self) -> None:
        """Nothing to release: a kind that keeps connections overrides this."""
        return None


@dataclass(frozen=True)
class Kind(Generic[KindOptionsT]):
    """A check kind, as listed in the registry (``exporter.checks.KINDS``).

    ``parse`` reads the kind's own keys from the check's mapping through ``reader`` (the
    common keys are already read) and returns its frozen options; problems go to the
    reader. ``probe`` builds the live object for a validated spec. ``families`` lists every
    family ``collect`` may write, for docs and the bundle generator. ``target`` names the
    option a ``/probe?target=`` fills (``url``, ``address``, ``dsn``, ``path``); None means
    the kind cannot be used as a probe module. ``alerts`` and ``panels`` are the kind's
    default alerts and overview panels (``exporter.alerting``); every kind also gets
    ``exporter.alerting.COMMON_ALERTS``.
    """

    name: str
    summary: str
    parse: Callable[[Reader], KindOptionsT]
    probe: Callable[[CheckSpec[Any]], Probe]
    families: tuple[Family, ...]
    target: str | None = None
    alerts: tuple[DefaultAlert, ...] = ()
    panels: tuple[Panel, ...] = ()
