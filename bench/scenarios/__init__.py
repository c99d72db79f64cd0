"""The scenarios, in report order. Each module has TITLE, WHAT and ``run(ctx) -> Section``."""

from __future__ import annotations

from types import ModuleType

from bench.scenarios import bullmq, footprint, http, load, postgres, tcp

SCENARIOS: dict[str, ModuleType] = {
    "bullmq": bullmq,
    "tcp": tcp,
    "http": http,
    "postgres": postgres,
    "load": load,
    "footprint": footprint,
}
