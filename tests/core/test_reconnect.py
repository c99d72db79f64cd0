"""``once_more_if_kept``: the one "reconnect once" of the postgres, pgbouncer and RESP
(bullmq) connections, which each wrote it themselves with their own ``_ConnectionLost``."""

from __future__ import annotations

import pytest

from exporter.checks.base import ConnectionLost, once_more_if_kept


class Target:
    """Answers or breaks per attempt, and counts the drops of its connection."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.attempts = 0
        self.drops = 0

    async def attempt(self) -> str:
        self.attempts += 1
        outcome = self.outcomes.pop(0)
        if outcome.startswith("lost"):
            raise ConnectionLost(outcome)
        if outcome == "other":
            raise ValueError(outcome)
        return outcome

    async def drop(self) -> None:
        self.drops += 1


async def test_a_kept_connection_that_died_is_replaced_once() -> None:
    target = Target("lost: server restarted", "answer")
    assert await once_more_if_kept(target.attempt, kept=True, drop=target.drop) == "answer"
    assert (target.attempts, target.drops) == (2, 1)


async def test_a_new_connection_that_fails_is_not_tried_again() -> None:
    target = Target("lost: refused", "answer")
    with pytest.raises(ConnectionLost, match=r"^lost: refused$"):
        await once_more_if_kept(target.attempt, kept=False, drop=target.drop)
    assert (target.attempts, target.drops) == (1, 1)


async def test_the_second_loss_is_the_reason_and_drops_again() -> None:
    target = Target("lost: first", "lost: second", "answer")
    with pytest.raises(ConnectionLost, match=r"^lost: second$"):
        await once_more_if_kept(target.attempt, kept=True, drop=target.drop)
    assert (target.attempts, target.drops) == (2, 2)


async def test_a_run_that_must_not_repeat_is_not_repeated() -> None:
    target = Target("lost: after samples", "answer")
    with pytest.raises(ConnectionLost):
        await once_more_if_kept(
            target.attempt, kept=True, drop=target.drop, repeatable=lambda exc: False
        )
    assert (target.attempts, target.drops) == (1, 1)


async def test_other_errors_pass_through_untouched() -> None:
    target = Target("other", "answer")
    with pytest.raises(ValueError, match=r"^other$"):
        await once_more_if_kept(target.attempt, kept=True, drop=target.drop)
    assert (target.attempts, target.drops) == (1, 0)
