"""copydesk.limiter: the adaptive concurrency window and the proactive rate limits."""

from __future__ import annotations

import asyncio
import random
import time
import types

import pytest

from copydesk import limiter as limiter_module
from copydesk.limiter import AdaptiveLimiter, RateLimiter, article_order

# ----------------------------------------------------------------------------- AdaptiveLimiter


async def test_never_exceeds_the_cap_with_200_tasks() -> None:
    cap = 7
    lim = AdaptiveLimiter(cap)
    rng = random.Random(3)
    current = 0
    observed_peak = 0
    done = 0

    async def task() -> None:
        nonlocal current, observed_peak, done
        async with lim.slot():
            current += 1
            observed_peak = max(observed_peak, current)
            assert lim.in_flight <= cap
            await asyncio.sleep(rng.random() * 0.003)
            current -= 1
        done += 1

    await asyncio.gather(*(task() for _ in range(200)))
    assert done == 200
    assert lim.peak_in_flight == cap  # it did run that many at once, and never more
    assert observed_peak == cap
    assert lim.in_flight == 0


async def test_slot_is_released_when_the_body_raises() -> None:
    lim = AdaptiveLimiter(1)
    with pytest.raises(RuntimeError):
        async with lim.slot():
            raise RuntimeError("boom")
    assert lim.in_flight == 0
    async with asyncio.timeout(1):
        async with lim.slot():
            pass


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimiter(0)


def test_rate_limited_halves_the_window_once_per_cooldown() -> None:
    lim = AdaptiveLimiter(16, cooldown=60.0)
    lim.on_rate_limited()
    assert lim.window == 8 and lim.limit == 8 and lim.shrinks == 1
    # A burst of 429s from the same overload counts once.
    for _ in range(10):
        lim.on_rate_limited()
    assert lim.window == 8 and lim.shrinks == 1


def test_rate_limited_halves_again_after_the_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limiter_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    lim = AdaptiveLimiter(16, cooldown=1.0)
    lim.on_rate_limited()
    clock[0] += 0.5
    lim.on_rate_limited()
    assert lim.window == 8
    clock[0] += 0.6
    lim.on_rate_limited()
    assert lim.window == 4 and lim.shrinks == 2


def test_window_never_drops_below_the_floor() -> None:
    lim = AdaptiveLimiter(8, floor=2, cooldown=0.0)
    for _ in range(10):
        lim.on_rate_limited()
    assert lim.window == 2 and lim.limit == 2


def test_success_grows_the_window_back_to_the_cap() -> None:
    lim = AdaptiveLimiter(16, cooldown=0.0)
    lim.on_rate_limited()
    lim.on_rate_limited()
    assert lim.limit == 4
    successes = 0
    while lim.window < 16:
        lim.on_success()
        successes += 1
        assert successes < 1000, "the window never grew back"
    assert lim.window == 16 and lim.limit == 16
    # Additive increase: about one call per window's worth of successes, not a jump.
    assert successes > 16
    for _ in range(100):
        lim.on_success()
    assert lim.window == 16  # never above the cap


async def test_shrunk_window_limits_in_flight() -> None:
    lim = AdaptiveLimiter(8, cooldown=0.0)
    lim.on_rate_limited()
    lim.on_rate_limited()  # window 2
    peak = 0
    current = 0

    async def task() -> None:
        nonlocal peak, current
        async with lim.slot():
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.002)
            current -= 1

    await asyncio.gather(*(task() for _ in range(30)))
    assert peak == 2


# ----------------------------------------------------------------------------- RateLimiter


async def test_inactive_rate_limiter_never_waits() -> None:
    rl = RateLimiter()
    assert not rl.active
    started = time.monotonic()
    for _ in range(1000):
        await rl.acquire(10_000)
    assert time.monotonic() - started < 0.5


class _VirtualClock:
    """time.monotonic and asyncio.sleep for the limiter module, without real waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _VirtualClock:
    virtual = _VirtualClock()
    monkeypatch.setattr(limiter_module, "time", types.SimpleNamespace(monotonic=virtual.monotonic))
    monkeypatch.setattr(
        limiter_module,
        "asyncio",
        types.SimpleNamespace(sleep=virtual.sleep, Lock=asyncio.Lock, Condition=asyncio.Condition),
    )
    return virtual


async def run_for(rl: RateLimiter, clock: _VirtualClock, seconds: float, tokens: int = 1) -> list[float]:
    stamps: list[float] = []
    while clock.now < seconds:
        await rl.acquire(tokens)
        stamps.append(clock.now)
    return stamps


async def test_rpm_steady_state_spacing(clock: _VirtualClock) -> None:
    rpm = 120
    stamps = await run_for(RateLimiter(rpm=rpm), clock, 600)
    last_minute = [s for s in stamps if s >= 540]
    assert 0.8 * rpm <= len(last_minute) <= rpm + 1
    gaps = [b - a for a, b in zip(last_minute, last_minute[1:])]
    assert min(gaps) >= (60 / rpm) * 0.99


async def test_tpm_steady_state_tokens(clock: _VirtualClock) -> None:
    tpm, per_call = 6_000, 200
    stamps = await run_for(RateLimiter(tpm=tpm), clock, 600, tokens=per_call)
    tokens_last_minute = per_call * sum(1 for s in stamps if s >= 540)
    assert 0.8 * tpm <= tokens_last_minute <= tpm + per_call


async def test_the_tighter_limit_wins(clock: _VirtualClock) -> None:
    # 600 requests a minute would allow 10/s, but 6,000 tokens a minute at 100 per call allow 1/s.
    stamps = await run_for(RateLimiter(rpm=600, tpm=6_000), clock, 600, tokens=100)
    assert sum(1 for s in stamps if s >= 540) <= 61


async def test_rpm_spaces_out_requests_from_the_start() -> None:
    rl = RateLimiter(rpm=120)  # one request per 0.5 s
    started = time.monotonic()
    for _ in range(4):
        await rl.acquire(1)
    elapsed = time.monotonic() - started
    assert elapsed >= 1.5 * 0.8
    assert elapsed < 1.5 * 1.5


async def test_rpm_is_never_exceeded_in_any_minute(clock: _VirtualClock) -> None:
    rpm = 120
    stamps = await run_for(RateLimiter(rpm=rpm), clock, 180)
    worst = max(sum(1 for s in stamps if start <= s < start + 60) for start in stamps)
    assert worst <= rpm


# ----------------------------------------------------------------------------- fair, O(1) waiting


async def _queue_up(lim: AdaptiveLimiter, count: int, order: list[int], release: asyncio.Event) -> list[asyncio.Task]:
    async def waiter(number: int) -> None:
        async with lim.slot():
            order.append(number)
            await release.wait()

    tasks = []
    for number in range(count):
        tasks.append(asyncio.create_task(waiter(number)))
        await asyncio.sleep(0)  # arrive one after the other
    return tasks


async def test_waiters_acquire_in_arrival_order() -> None:
    lim = AdaptiveLimiter(1)
    order: list[int] = []
    gate = asyncio.Event()
    gate.set()  # each holder leaves at once, handing over to the next
    async with lim.slot():  # everybody must queue
        tasks = await _queue_up(lim, 50, order, gate)
        assert order == [] and lim.waiting == 50
    await asyncio.gather(*tasks)
    assert order == list(range(50))
    assert lim.in_flight == 0


async def test_a_late_arrival_does_not_overtake_the_queue() -> None:
    lim = AdaptiveLimiter(1)
    order: list[str] = []

    async def call(name: str) -> None:
        await lim.acquire()
        order.append(name)

    await lim.acquire()
    queued = asyncio.create_task(call("queued"))
    await asyncio.sleep(0)
    lim.release()  # the slot goes to the queued caller ...
    late = asyncio.create_task(call("late"))  # ... even though a newcomer arrives before it runs
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["queued"] and not late.done()
    lim.release()
    async with asyncio.timeout(1):
        await asyncio.gather(queued, late)
    assert order == ["queued", "late"]


async def test_each_release_wakes_exactly_one_waiter() -> None:
    """O(1) per release: with 2,000 callers queued, each release resolves one future
    (a Condition.notify_all wakes every waiter, 2,000 x 2,000 wake-ups in all)."""
    lim = AdaptiveLimiter(1)
    resumed = 0

    async def waiter() -> None:
        nonlocal resumed
        await lim.acquire()
        resumed += 1  # runs only when this waiter was woken

    await lim.acquire()
    tasks = [asyncio.create_task(waiter()) for _ in range(2000)]
    await asyncio.sleep(0)
    assert lim.waiting == 2000
    for released in range(1, 2001):
        before = lim.handoffs
        lim.release()
        assert lim.handoffs - before == 1
        await asyncio.sleep(0)
        assert resumed == released
    await asyncio.gather(*tasks)
    assert lim.handoffs == 2000 and lim.in_flight == 1


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    lim = AdaptiveLimiter(1)
    await lim.acquire()
    cancelled = asyncio.create_task(lim.acquire())
    second = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert cancelled.cancelled()
    lim.release()
    async with asyncio.timeout(1):
        await second  # the slot went past the cancelled waiter
    assert lim.in_flight == 1 and lim.waiting == 0
    lim.release()
    assert lim.in_flight == 0


async def test_a_waiter_cancelled_after_the_handover_passes_the_slot_on() -> None:
    lim = AdaptiveLimiter(1)
    await lim.acquire()
    unlucky = asyncio.create_task(lim.acquire())
    next_in_line = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    lim.release()  # hands the slot to `unlucky` ...
    unlucky.cancel()  # ... which is cancelled before it runs again
    await asyncio.sleep(0)
    assert unlucky.cancelled()
    async with asyncio.timeout(1):
        await next_in_line  # the slot was passed on, not swallowed
    assert lim.in_flight == 1
    lim.release()
    assert lim.in_flight == 0


async def test_a_grown_window_admits_waiters_without_a_release() -> None:
    lim = AdaptiveLimiter(2, cooldown=0.0)
    lim.on_rate_limited()  # window 1
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    while lim.limit < 2:
        lim.on_success()
    async with asyncio.timeout(1):
        await waiter
    assert lim.in_flight == 2


async def test_cancelled_waiters_do_not_pile_up() -> None:
    lim = AdaptiveLimiter(1)
    await lim.acquire()
    live = [asyncio.create_task(lim.acquire()) for _ in range(10)]
    doomed = [asyncio.create_task(lim.acquire()) for _ in range(1000)]
    await asyncio.sleep(0)
    for task in doomed:
        task.cancel()
    await asyncio.gather(*doomed, return_exceptions=True)
    assert lim.waiting == 10
    assert lim._queued <= 2 * 10 + 1  # dropped without any release
    for _ in range(10):
        lim.release()
        await asyncio.sleep(0)
    assert all(task.done() for task in live) and lim.in_flight == 1


async def test_calls_reach_the_api_in_arrival_order_through_the_gateway() -> None:
    """End to end through `CallGateway` (rate limiter, window, budget, retries): with more
    callers than slots, the API sees them first come, first served, never more than the cap
    at once, and every queued caller is served by exactly one hand-over."""
    from copydesk.budget import TokenBudget
    from copydesk.calls import CallGateway
    from copydesk.client import ChatRequest, Completion, RetryPolicy, Usage

    cap = 4
    gate = asyncio.Event()  # the first `cap` calls hold their slots until every caller queued
    seen: list[str] = []
    current = peak = 0

    class Client:
        async def complete(self, request: ChatRequest) -> Completion:
            nonlocal current, peak
            seen.append(request.messages[0]["content"])
            current += 1
            peak = max(peak, current)
            await gate.wait()
            await asyncio.sleep(0.001)
            current -= 1
            return Completion("ok", "stop", Usage(1, 1, 2), request.model)

    lim = AdaptiveLimiter(cap)
    gateway = CallGateway(Client(), TokenBudget(10**9), lim, retry=RetryPolicy(max_attempts=1))  # type: ignore[arg-type]
    names = [f"call {n:04d}" for n in range(300)]
    tasks = []
    for name in names:
        request = ChatRequest("m", ({"role": "user", "content": name},), {"max_tokens": 4})
        tasks.append(asyncio.create_task(gateway.complete("s", request, name)))
        for _ in range(50):  # this caller reaches the API or the queue before the next one starts
            await asyncio.sleep(0)
            if len(seen) + lim.waiting == len(tasks):
                break
        assert len(seen) + lim.waiting == len(tasks)
    assert lim.waiting == len(names) - cap and len(seen) == cap
    gate.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)
    assert seen == names
    assert peak == cap and lim.in_flight == 0 and lim.waiting == 0
    assert lim.handoffs == len(names) - cap


async def test_an_older_articles_calls_are_served_first_and_fifo_within_an_article() -> None:
    """Articles finish in topic order: a free slot goes to the oldest article's waiting call,
    and within one article to the call that waited longest; calls outside any article first."""
    lim = AdaptiveLimiter(1)
    served: list[tuple[str, int]] = []

    async def call(article: int | None, n: int) -> None:
        if article is None:
            await lim.acquire()
        else:
            with article_order(article):
                await lim.acquire()
        served.append((str(article), n))
        lim.release()

    await lim.acquire()  # everybody queues
    arrivals = [(3, 0), (1, 0), (3, 1), (2, 0), (1, 1), (None, 0), (2, 1), (1, 2)]
    tasks = []
    for article, n in arrivals:
        tasks.append(asyncio.create_task(call(article, n)))
        await asyncio.sleep(0)
    assert lim.waiting == len(arrivals)
    lim.release()
    async with asyncio.timeout(2):
        await asyncio.gather(*tasks)
    assert served == [("None", 0), ("1", 0), ("1", 1), ("1", 2), ("2", 0), ("2", 1), ("3", 0), ("3", 1)]
    assert lim.in_flight == 0 and lim.waiting == 0 and lim.handoffs == len(arrivals)


async def test_the_article_order_reaches_tasks_started_inside_it() -> None:
    lim = AdaptiveLimiter(1)
    served: list[int] = []

    async def section(article: int) -> None:
        async with lim.slot():
            served.append(article)

    async def article(index: int) -> None:
        with article_order(index):
            await asyncio.gather(*(section(index) for _ in range(3)))  # like the writer's sections

    await lim.acquire()
    tasks = [asyncio.create_task(article(i)) for i in (2, 0, 1)]
    await asyncio.sleep(0.01)
    lim.release()
    async with asyncio.timeout(2):
        await asyncio.gather(*tasks)
    assert served == [0, 0, 0, 1, 1, 1, 2, 2, 2]
