"""copydesk.budget: reservations, settlement, refusal, the warning, the prompt bound, and concurrency."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from copydesk.budget import (
    PER_MESSAGE_OVERHEAD,
    PER_REQUEST_OVERHEAD,
    TokenBudget,
    call_token_bound,
    prompt_token_bound,
)
from copydesk.errors import BudgetExhausted, CopydeskError


def test_reserve_settle_release_arithmetic() -> None:
    budget = TokenBudget(1000)
    a = budget.reserve(300)
    b = budget.reserve(200)
    assert (budget.spent, budget.reserved, budget.available, budget.remaining) == (0, 500, 500, 1000)

    assert budget.settle(a, 120) == 120
    assert (budget.spent, budget.reserved, budget.available, budget.remaining) == (120, 200, 680, 880)

    budget.release(b)
    assert (budget.spent, budget.reserved, budget.available) == (120, 0, 880)
    assert not a.open and not b.open


def test_settle_and_release_are_idempotent() -> None:
    budget = TokenBudget(1000)
    r = budget.reserve(100)
    budget.settle(r, 40)
    assert budget.settle(r, 40) == 0
    budget.release(r)
    assert (budget.spent, budget.reserved) == (40, 0)

    r2 = budget.reserve(100)
    budget.release(r2)
    budget.release(r2)
    assert budget.settle(r2, 50) == 0
    assert (budget.spent, budget.reserved) == (40, 0)


def test_settle_none_keeps_the_whole_reservation_as_spent() -> None:
    budget = TokenBudget(1000)
    r = budget.reserve(250)
    assert budget.settle(r, None) == 250
    assert (budget.spent, budget.reserved) == (250, 0)


def test_settle_above_the_reservation_counts_what_the_api_said() -> None:
    budget = TokenBudget(1000)
    r = budget.reserve(100)
    assert budget.settle(r, 130) == 130
    assert budget.spent == 130 and budget.overrun_reports == 1


def test_reservation_that_fits_exactly_is_allowed() -> None:
    budget = TokenBudget(100)
    budget.reserve(60)
    budget.reserve(40)
    assert budget.available == 0 and not budget.closed


def test_refusal_closes_the_budget() -> None:
    budget = TokenBudget(100)
    first = budget.reserve(60)
    with pytest.raises(BudgetExhausted) as info:
        budget.reserve(41, what="a title call")
    assert "a title call" in str(info.value) and "41" in str(info.value)
    assert info.value.exit_code == 3 and isinstance(info.value, CopydeskError)
    assert budget.closed
    assert budget.reserved == 60  # the refused reservation left no trace

    # Once closed, even a call that would fit is refused; calls in flight still settle.
    with pytest.raises(BudgetExhausted):
        budget.reserve(1)
    budget.settle(first, 10)
    assert budget.spent == 10 and budget.reserved == 0
    with pytest.raises(BudgetExhausted):
        budget.reserve(1)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBudget(0)


def test_warns_once_at_warn_at(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    budget = TokenBudget(1000, warn_at=0.5, on_warn=lambda b: calls.append(b.spent))
    with caplog.at_level(logging.WARNING, logger="copydesk.budget"):
        budget.settle(budget.reserve(100), 499)
        assert calls == []
        budget.settle(budget.reserve(100), 1)  # 500: exactly at the threshold
        assert calls == [500]
        for _ in range(4):
            budget.settle(budget.reserve(100), 100)
    assert calls == [500]
    assert budget.spent == 900
    assert sum("of the token budget spent" in r.getMessage() for r in caplog.records) == 1


def test_no_warning_below_warn_at() -> None:
    calls: list[TokenBudget] = []
    budget = TokenBudget(1000, warn_at=0.8, on_warn=calls.append)
    budget.settle(budget.reserve(900), 799)
    budget.release(budget.reserve(100))
    assert calls == []


# ----------------------------------------------------------------------------- the prompt bound


ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;:!?\n\t",
    "异步编程的基本概念与实践指南，标题大纲段落。",
    "😀🎉🚀👩‍💻🇨🇳",
    "éàüßøñ ЖЩЯ αβγ",
    "\u0000\u200b\ufeff",
]


def random_text(rng: random.Random, length: int) -> str:
    pool = "".join(ALPHABETS)
    return "".join(rng.choice(pool) for _ in range(length))


def test_prompt_token_bound_is_at_least_the_utf8_length() -> None:
    rng = random.Random(20240611)
    for _ in range(500):
        messages = [
            {"role": rng.choice(["system", "user", "assistant"]), "content": random_text(rng, rng.randint(0, 400))}
            for _ in range(rng.randint(1, 4))
        ]
        utf8 = sum(len(m["content"].encode("utf-8")) for m in messages)
        bound = prompt_token_bound(messages)
        # At most one token per byte, plus one (SentencePiece's dummy prefix) per message.
        assert bound >= utf8 + len(messages)
        assert bound >= PER_REQUEST_OVERHEAD + len(messages) * PER_MESSAGE_OVERHEAD + utf8


def test_prompt_token_bound_counts_bytes_not_characters() -> None:
    ascii_bound = prompt_token_bound([{"role": "user", "content": "a" * 30}])
    chinese_bound = prompt_token_bound([{"role": "user", "content": "异" * 30}])  # 3 bytes each
    emoji_bound = prompt_token_bound([{"role": "user", "content": "😀" * 30}])  # 4 bytes each
    assert chinese_bound - ascii_bound == 60
    assert emoji_bound - ascii_bound == 90


def test_prompt_token_bound_grows_with_each_message() -> None:
    one = prompt_token_bound([{"role": "user", "content": ""}])
    two = prompt_token_bound([{"role": "user", "content": ""}, {"role": "user", "content": ""}])
    assert one >= PER_REQUEST_OVERHEAD + PER_MESSAGE_OVERHEAD
    assert two - one >= PER_MESSAGE_OVERHEAD


def test_call_token_bound_adds_max_tokens() -> None:
    messages = [{"role": "user", "content": "hello"}]
    assert call_token_bound(messages, 600) == prompt_token_bound(messages) + 600


# ----------------------------------------------------------------------------- concurrency


async def test_concurrent_workers_never_overshoot() -> None:
    rng = random.Random(7)
    limit = 5_000
    budget = TokenBudget(limit, warn_at=0.5)
    violations: list[str] = []
    refused = 0
    settled_total = 0

    def check(where: str) -> None:
        if budget.spent > limit or budget.spent + budget.reserved > limit or budget.reserved < 0:
            violations.append(f"{where}: spent={budget.spent} reserved={budget.reserved}")

    async def worker(seed: int) -> None:
        nonlocal refused, settled_total
        wrng = random.Random(seed)
        while True:
            want = wrng.randint(50, 400)
            try:
                reservation = budget.reserve(want)
            except BudgetExhausted:
                refused += 1
                check("refused")
                return
            check("reserved")
            await asyncio.sleep(wrng.random() * 0.004)
            check("in flight")
            outcome = wrng.random()
            if outcome < 0.1:
                budget.release(reservation)
            elif outcome < 0.2:
                settled_total += budget.settle(reservation, None)
            else:
                settled_total += budget.settle(reservation, wrng.randint(0, want))
            check("settled")

    await asyncio.gather(*(worker(rng.randrange(1 << 30)) for _ in range(64)))
    assert violations == []
    assert refused == 64  # every worker was eventually stopped by the budget, none crashed
    assert budget.closed
    assert budget.reserved == 0
    assert budget.spent == settled_total
    assert 0 < budget.spent <= limit


async def test_threads_never_overshoot() -> None:
    """TokenBudget says it is thread-safe: hammer it from threads too."""
    import threading

    limit = 20_000
    budget = TokenBudget(limit)
    violations: list[int] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            want = rng.randint(1, 50)
            try:
                r = budget.reserve(want)
            except BudgetExhausted:
                return
            if budget.spent + budget.reserved > limit:
                violations.append(budget.spent + budget.reserved)
            budget.settle(r, rng.randint(0, want))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert violations == []
    assert budget.spent <= limit and budget.reserved == 0
