"""Flow control: how many calls are in flight, and how fast new ones start.

`AdaptiveLimiter` keeps calls in flight under an AIMD window: the window starts
at the configured cap, halves on a 429 (at most once per `cooldown` seconds, so
a burst of 429s from one overload counts once), and grows back by one call per
window's worth of successes. It never exceeds the cap.

`RateLimiter` enforces the spec's proactive `rate_limits` (requests and tokens
per minute) by virtual scheduling (GCRA without burst allowance): each admitted
call books its share of the minute, and the next call starts once that share has
passed. The limit therefore holds from the very first call; there is no initial
burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class AdaptiveLimiter:
    def __init__(self, cap: int, *, floor: int = 1, cooldown: float = 1.0) -> None:
        if cap < 1:
            raise ValueError("concurrency must be at least 1")
        self.cap = cap
        self.floor = min(floor, cap)
        self.cooldown = cooldown
        self.window = float(cap)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.shrinks = 0
        self._last_shrink = float("-inf")
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    @property
    def limit(self) -> int:
        return max(self.floor, min(self.cap, int(self.window)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            async with cond:
                self.in_flight -= 1
                cond.notify_all()

    def on_success(self) -> None:
        if self.window < self.cap:
            self.window = min(float(self.cap), self.window + 1.0 / max(self.window, 1.0))

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_shrink >= self.cooldown:
            self._last_shrink = now
            self.window = max(float(self.floor), self.window / 2)
            self.shrinks += 1


class _Pace:
    """At most `per_minute` units a minute: admitting `amount` units books
    `amount * 60 / per_minute` seconds, and nothing else starts before they have passed.

    Nothing accumulates while idle, so there is never a burst. A single call larger
    than a minute's worth (tokens) is admitted as soon as the pace is free, and then
    holds back the calls after it for as long as its size requires."""

    def __init__(self, per_minute: int) -> None:
        self.interval = 60.0 / per_minute
        self.next_free = float("-inf")  # the first call starts at once

    def wait_time(self) -> float:
        return max(0.0, self.next_free - time.monotonic())

    def take(self, amount: float) -> None:
        self.next_free = max(self.next_free, time.monotonic()) + amount * self.interval


class RateLimiter:
    def __init__(self, rpm: int | None = None, tpm: int | None = None) -> None:
        self._requests = _Pace(rpm) if rpm else None
        self._tokens = _Pace(tpm) if tpm else None
        self._lock: asyncio.Lock | None = None

    @property
    def active(self) -> bool:
        return self._requests is not None or self._tokens is not None

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # first come, first served
            while True:
                wait = max(
                    self._requests.wait_time() if self._requests else 0.0,
                    self._tokens.wait_time() if self._tokens else 0.0,
                )
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._requests:
                self._requests.take(1)
            if self._tokens:
                self._tokens.take(tokens)
