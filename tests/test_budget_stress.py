"""The budget guard against a real HTTP server billing random usage, at concurrency 64."""

from __future__ import annotations

import asyncio

import pytest
from fake_openai import FakeOpenAI

from copydesk.budget import TokenBudget
from copydesk.calls import CallGateway, RetryPolicy
from copydesk.client import ApiEndpoint, ChatClient, ChatRequest
from copydesk.errors import BudgetExhausted
from copydesk.limiter import AdaptiveLimiter


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_usage_at_concurrency_64_never_passes_the_budget(seed):
    limit = 40_000
    with FakeOpenAI(randomize_usage=True, seed=seed, fault_rate={"429": 0.05, "500": 0.05}) as fake:
        budget = TokenBudget(limit)
        limiter = AdaptiveLimiter(64)
        async with ChatClient(ApiEndpoint(fake.url), max_connections=64) as client:
            gateway = CallGateway(client, budget, limiter, retry=RetryPolicy(initial=0.005, max_delay=0.02))
            outcomes = {"done": 0, "refused": 0}

            async def call(i: int) -> None:
                request = ChatRequest("gpt-4o-mini", ({"role": "user", "content": f"paragraph {i}"},),
                                      {"max_tokens": 300})
                try:
                    await gateway.complete("expansion", request, key=str(i))
                    outcomes["done"] += 1
                except BudgetExhausted:
                    outcomes["refused"] += 1

            await asyncio.gather(*(call(i) for i in range(400)))
    assert fake.total_tokens <= limit  # the API's own count
    assert budget.spent == fake.total_tokens  # copydesk's count agrees to the token
    assert budget.reserved == 0
    assert outcomes["refused"] > 0 and outcomes["done"] > 50  # the stop really happened, after real work
    assert limiter.peak_in_flight <= 64 and fake.state.peak_in_flight <= 64
    assert fake.total_tokens > 0.6 * limit  # the bound is not so loose that the budget is wasted
