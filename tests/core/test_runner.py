"""The runner: deadlines, timeouts, single-flight, result reuse, crashes, reload."""

from __future__ import annotations

import asyncio
from typing import Any

from exporter.config import load_data
from exporter.runner import Runner
from tests.core import conftest
from tests.core.conftest import Behaviour
from tests.leaks import polled
from tests.support import async_wait_until


def config(*checks: dict[str, Any]) -> Any:
    return load_data({"checks": list(checks)}, "<test>", env={})


async def started_runner(*checks: dict[str, Any]) -> Runner:
    runner = Runner()
    await runner.apply(config(*checks))
    return runner


async def test_hanging_check_is_cut_at_its_timeout_and_others_still_report() -> None:
    runner = await started_runner(
        {"name": "stuck", "kind": "test", "mode": "hang", "timeout": "200ms"},
        {"name": "fine", "kind": "test"},
    )
    stuck, fine = await runner.scrape(budget=30)
    await runner.close()
    assert not stuck.success
    assert stuck.error is not None
    assert stuck.error.startswith("timed out after")
    assert [s.family.name for s in stuck.samples] == ["test_probe_value"]  # written before the hang
    assert fine.success


async def test_scrape_deadline_bounds_checks_with_long_timeouts() -> None:
    runner = await started_runner(
        {"name": "stuck", "kind": "test", "mode": "hang", "timeout": "1h"}
    )
    # Only the scrape's 0.3 s deadline can end this before the guard (not a timing claim:
    # without the deadline the scrape would wait for the 1 h timeout).
    (stuck,) = await asyncio.wait_for(runner.scrape(budget=0.3), 120)
    await runner.close()
    assert not stuck.success
    assert stuck.error is not None
    assert "timed out" in stuck.error or "deadline" in stuck.error


async def test_raising_check_fails_with_type_and_message_and_runner_survives() -> None:
    runner = await started_runner(
        {"name": "bad", "kind": "test", "mode": "raise", "message": "kaput"}
    )
    first = (await runner.scrape(budget=10))[0]
    second = (await runner.scrape(budget=10))[0]
    await runner.close()
    assert first.error == "unexpected RuntimeError: kaput"
    assert not second.success


async def test_check_failed_reason_is_kept_verbatim() -> None:
    runner = await started_runner(
        {"name": "f", "kind": "test", "mode": "fail", "message": "status is error"}
    )
    (result,) = await runner.scrape(budget=10)
    await runner.close()
    assert (result.success, result.error) == (False, "status is error")


async def test_concurrent_scrapes_share_one_inflight_run(test_kind: Behaviour) -> None:
    test_kind.gate.clear()
    runner = await started_runner({"name": "slow", "kind": "test", "mode": "gate"})
    scrapes = [asyncio.create_task(runner.scrape(budget=30)) for _ in range(50)]
    await asyncio.wait_for(test_kind.running.wait(), 30)
    test_kind.gate.set()
    results = await asyncio.gather(*scrapes)
    await runner.close()
    assert test_kind.started == 1
    assert all(r[0].success for r in results)
    assert len({id(r[0]) for r in results}) == 1


async def test_min_interval_reuses_the_result(test_kind: Behaviour) -> None:
    runner = await started_runner(
        {"name": "cached", "kind": "test", "min_interval": "1h"},
        {"name": "fresh", "kind": "test"},
    )
    first = await runner.scrape(budget=10)
    second = await runner.scrape(budget=10)
    await runner.close()
    assert first[0] is second[0]  # reused
    assert first[1] is not second[1]  # run again
    assert test_kind.started == 3


async def test_a_wholly_cached_scrape_reuses_its_results_until_the_first_expires(
    test_kind: Behaviour,
) -> None:
    runner = await started_runner(
        {"name": "hourly", "kind": "test", "min_interval": "1h"},
        {"name": "short", "kind": "test", "min_interval": "300ms"},
    )
    first = await runner.scrape(budget=10)  # both run
    second = await runner.scrape(budget=10)  # both cached: the snapshot is made
    third = await runner.scrape(budget=10)
    assert test_kind.started == 2
    assert third is second  # one object for the renderer to recognise
    assert [r is f for r, f in zip(third, first, strict=True)] == [True, True]
    # "short" expires first: from then on it runs again, and "hourly" is still reused.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while test_kind.started == 2:
        assert loop.time() < deadline, "the 300ms min_interval never expired"
        later = await runner.scrape(budget=10)
    assert later[0] is first[0]
    assert later[1] is not first[1]
    assert test_kind.started == 3
    await runner.close()


async def test_a_reload_never_serves_the_previous_configurations_snapshot(
    test_kind: Behaviour,
) -> None:
    runner = await started_runner({"name": "a", "kind": "test", "min_interval": "1h"})
    await runner.scrape(budget=10)
    cached = await runner.scrape(budget=10)
    await runner.apply(
        config(
            {"name": "a", "kind": "test", "min_interval": "1h"},
            {"name": "b", "kind": "test", "min_interval": "1h"},
        )
    )
    after = await runner.scrape(budget=10)
    await runner.close()
    assert [r.name for r in after] == ["a", "b"]
    assert after[0] is cached[0]  # unchanged check kept its probe and result


async def test_reload_keeps_unchanged_checks_and_closes_removed_ones(test_kind: Behaviour) -> None:
    runner = await started_runner(
        {"name": "kept", "kind": "test"},
        {"name": "removed", "kind": "test"},
        {"name": "changed", "kind": "test"},
    )
    await runner.apply(
        config(
            {"name": "kept", "kind": "test"},
            {"name": "changed", "kind": "test", "timeout": "1s"},
            {"name": "added", "kind": "test"},
        )
    )
    assert sorted(test_kind.closed) == ["changed", "removed"]
    assert [s.name for s in runner.specs] == ["kept", "changed", "added"]
    await runner.close()
    assert sorted(test_kind.closed) == ["added", "changed", "changed", "kept", "removed"]


async def test_errors_are_redacted() -> None:
    runner = await started_runner(
        {
            "name": "s",
            "kind": "test",
            "mode": "raise",
            "url": "redis://:sup3rs3cret@127.0.0.1:6379/0",
            "message": "AUTH failed for sup3rs3cret at redis://:sup3rs3cret@127.0.0.1:6379",
        }
    )
    (result,) = await runner.scrape(budget=10)
    await runner.close()
    assert result.error is not None
    assert "sup3rs3cret" not in result.error
    assert "<secret>" in result.error


def test_module_state_is_per_test() -> None:
    assert conftest.BEHAVIOUR.started == 0


async def test_reload_during_a_scrape_answers_for_the_checks_it_started(
    test_kind: Behaviour,
) -> None:
    """The scrape reports the old configuration whole, with the real result of the check
    being replaced: cancelling it reported check_success 0, a false page (issue 13)."""
    test_kind.gate.clear()
    runner = await started_runner({"name": "old", "kind": "test", "mode": "gate"})
    scrape = asyncio.create_task(runner.scrape(budget=30))
    await asyncio.wait_for(test_kind.running.wait(), 30)
    await runner.apply(config({"name": "new", "kind": "test"}))
    assert not scrape.done()
    assert test_kind.closed == []  # still running: closed when its run ends
    test_kind.gate.set()
    (result,) = await scrape
    assert result.name == "old"
    assert result.success, result.error
    await async_wait_until(polled(lambda: test_kind.closed == ["old"]), 10, "old closed")
    assert [r.name for r in await runner.scrape(budget=30)] == ["new"]
    await runner.close()
