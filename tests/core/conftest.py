"""Test-only check kinds that hang, raise or count, to exercise the runner's fault handling.

They are registered in the real registry for the duration of a test, so config validation
and dispatch treat them exactly like shipped kinds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.checks import KINDS
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.fields import Reader
from exporter.samples import Family, Sink

PROBE_VALUE = Family("test_probe_value", "gauge", "A value written by a test kind.")


@dataclass(frozen=True)
class TestOptions:
    mode: str
    message: str
    url: str


class Behaviour:
    """Shared, per-test knobs: how many runs started, and a gate runs wait on."""

    def __init__(self) -> None:
        self.started = 0
        self.closed: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = asyncio.Event()


BEHAVIOUR = Behaviour()


class TestProbe(BaseProbe[TestOptions]):
    async def collect(self, out: Sink) -> None:
        BEHAVIOUR.started += 1
        BEHAVIOUR.running.set()
        out.add(PROBE_VALUE, BEHAVIOUR.started)
        mode = self.options.mode
        if mode == "hang":
            await asyncio.Event().wait()
        elif mode == "raise":
            raise RuntimeError(self.options.message)
        elif mode == "fail":
            raise CheckFailed(self.options.message)
        elif mode == "gate":
            await BEHAVIOUR.gate.wait()

    async def close(self) -> None:
        BEHAVIOUR.closed.append(self.spec.name)


def parse(reader: Reader) -> TestOptions:
    return TestOptions(
        mode=reader.choice("mode", ("ok", "hang", "raise", "fail", "gate"), "ok"),
        message=reader.str("message", "boom"),
        url=reader.url("url", ("redis", "postgresql"), ""),
    )


def _probe(spec: CheckSpec[Any]) -> TestProbe:
    return TestProbe(spec)


TEST_KIND = Kind(
    name="test", summary="test kind", parse=parse, probe=_probe, families=(PROBE_VALUE,)
)


@pytest.fixture(autouse=True)
def test_kind(monkeypatch: pytest.MonkeyPatch) -> Behaviour:
    global BEHAVIOUR
    BEHAVIOUR = Behaviour()
    monkeypatch.setitem(KINDS, "test", TEST_KIND)
    return BEHAVIOUR
