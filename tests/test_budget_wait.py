"""TokenBudget.acquire: a reservation that does not fit waits while calls in flight can free room."""

from __future__ import annotations

import asyncio

import pytest

from copydesk.budget import TokenBudget
from copydesk.errors import BudgetExhausted


def test_acquire_waits_for_a_settle_that_frees_room() -> None:
    async def scenario() -> tuple[int, int, bool]:
        budget = TokenBudget(1000)
        first = await budget.acquire(600)
        second = asyncio.create_task(budget.acquire(600, what="a section call"))
        await asyncio.sleep(0.05)
        assert not second.done() and not budget.closed  # waits instead of closing the budget
        budget.settle(first, 100)  # returns 500 unused tokens: now 100 + 600 fit in 1000
        reservation = await asyncio.wait_for(second, 1)
        return budget.spent, reservation.tokens, budget.closed

    assert asyncio.run(scenario()) == (100, 600, False)


def test_acquire_closes_when_nothing_in_flight_could_make_room() -> None:
    async def scenario() -> TokenBudget:
        budget = TokenBudget(1000)
        first = await budget.acquire(600)
        waiting = asyncio.create_task(budget.acquire(600, what="a section call"))
        await asyncio.sleep(0.05)
        budget.settle(first, 500)  # 500 spent: 600 more can never fit
        with pytest.raises(BudgetExhausted, match="a section call"):
            await asyncio.wait_for(waiting, 1)
        return budget

    budget = asyncio.run(scenario())
    assert budget.closed and budget.spent == 500 and budget.reserved == 0


def test_acquire_closes_at_once_when_spent_leaves_no_room() -> None:
    async def scenario() -> None:
        budget = TokenBudget(100)
        budget.settle(await budget.acquire(60), 60)
        with pytest.raises(BudgetExhausted):
            await asyncio.wait_for(budget.acquire(41), 1)

    asyncio.run(scenario())


def test_close_wakes_waiters() -> None:
    async def scenario() -> None:
        budget = TokenBudget(1000)
        await budget.acquire(900)
        waiting = asyncio.create_task(budget.acquire(200))
        await asyncio.sleep(0.05)
        budget.close("the shared allowance content-team is spent")
        with pytest.raises(BudgetExhausted, match="content-team"):
            await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


def test_waiting_uses_at_least_95_percent_without_overshoot() -> None:
    """Many calls racing for a cap: the share used before the stop is >= 95 %, never over."""
    import random

    async def scenario() -> tuple[int, int]:
        budget = TokenBudget(20_000)
        rng = random.Random(7)

        async def call() -> None:
            try:
                reservation = await budget.acquire(500)
            except BudgetExhausted:
                return
            await asyncio.sleep(rng.random() / 200)
            budget.settle(reservation, rng.randint(1, 500))

        await asyncio.gather(*(call() for _ in range(400)))
        return budget.spent, budget.limit

    spent, limit = asyncio.run(scenario())
    assert spent <= limit
    assert spent >= 0.95 * limit
