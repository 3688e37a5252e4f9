"""Flow control: how many calls are in flight, and how fast new ones start.

`AdaptiveLimiter` keeps calls in flight under an AIMD window: the window starts
at the configured cap, halves on a 429 (at most once per `cooldown` seconds, so
a burst of 429s from one overload counts once), and grows back by one call per
window's worth of successes. It never exceeds the cap. Waiting calls queue in
arrival order within their article, the oldest article's first (`article_order`),
and each release hands its slot to exactly the next one.

`RateLimiter` enforces the spec's proactive `rate_limits` (requests and tokens
per minute) by virtual scheduling (GCRA without burst allowance): each admitted
call books its share of the minute, and the next call starts once that share has
passed. The limit therefore holds from the very first call; there is no initial
burst.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

#: The order of the article a call belongs to (its index in the batch); calls made outside
#: any article (None) come first. Set with `article_order()` around an article's work.
_ARTICLE: ContextVar[int | None] = ContextVar("copydesk_article_order", default=None)


@contextmanager
def article_order(index: int) -> Iterator[None]:
    """Calls made inside this block (and the tasks it starts) belong to article `index`.

    Waiting calls of an older article get free slots before those of a newer one, so
    articles finish one after the other, in topic order, while the API stays as busy:
    each finished article's checks and export then run while later articles' calls
    are still in flight, instead of every article finishing together at the end."""
    token = _ARTICLE.set(index)
    try:
        yield
    finally:
        _ARTICLE.reset(token)


def current_article() -> int | None:
    """The index of the article whose work is running here (`article_order`), or None."""
    return _ARTICLE.get()


class AdaptiveLimiter:
    """At most `limit` calls in flight; waiters are served first come, first served
    within their article, and the oldest article's waiters first (see `article_order`).

    A release hands its slot straight to the next waiter (one future resolved), so a
    late arrival never overtakes a caller of the same or an older article already
    waiting, and a release wakes nobody else. Each article has its own FIFO queue; a
    heap holds the articles that have waiters, so a hand-over costs O(log A), A being
    the articles with waiting calls (at most the run's article pool, 2 x concurrency),
    whatever the number of waiting calls. A waiter cancelled before its turn leaves
    the queue without taking a slot; one cancelled just after a slot was handed to it
    passes that slot on, so no slot is ever lost. The queues hold at most twice as many
    entries as there are waiting calls.
    """

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
        #: Waiters handed a slot so far (each release resolves at most one future).
        self.handoffs = 0
        self._last_shrink = float("-inf")
        #: One FIFO queue per article order (-1: calls outside any article), and a heap of
        #: the orders whose queue is not empty.
        self._queues: dict[int, deque[asyncio.Future[None]]] = {}
        self._orders: list[int] = []
        self._queued = 0  # entries in the queues, cancelled ones included
        #: Waiters neither served nor cancelled; the queues may also hold cancelled ones.
        self._live = 0

    @property
    def limit(self) -> int:
        return max(self.floor, min(self.cap, int(self.window)))

    @property
    def waiting(self) -> int:
        """Calls queued for a slot (cancelled ones already left); O(1)."""
        return self._live

    async def acquire(self) -> None:
        """Wait for a slot (see the class); pair every acquire with one `release()`."""
        if not self._live and self.in_flight < self.limit:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        order = _ARTICLE.get()
        self._enqueue(-1 if order is None else order, waiter)
        self._live += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            else:
                self._live -= 1
                self._forget_cancelled()
            raise

    def _enqueue(self, order: int, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(order)
        if queue is None:
            queue = self._queues[order] = deque()
            heapq.heappush(self._orders, order)
        queue.append(waiter)
        self._queued += 1

    def _forget_cancelled(self) -> None:
        """Cancelled waiters stay queued until a hand-over skips them; once they are the
        majority, drop them all at once (amortised O(1), and the queues stay bounded by
        twice the live waiters)."""
        if self._queued > 2 * self._live + 1:
            queues = {order: deque(w for w in queue if not w.done()) for order, queue in self._queues.items()}
            self._queues = {order: queue for order, queue in queues.items() if queue}
            self._orders = sorted(self._queues)
            self._queued = sum(len(queue) for queue in self._queues.values())

    def release(self) -> None:
        self.in_flight -= 1
        self._hand_over()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _take(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _hand_over(self) -> None:
        """Give free slots to the next live waiters; cancelled waiters are dropped on the way."""
        while self._orders and self.in_flight < self.limit:
            order = self._orders[0]
            queue = self._queues[order]
            waiter = queue.popleft()
            self._queued -= 1
            if not queue:
                heapq.heappop(self._orders)
                del self._queues[order]
            if waiter.done():  # cancelled while queued (its task has counted itself out)
                continue
            self._live -= 1
            self._take()
            self.handoffs += 1
            waiter.set_result(None)

    def on_success(self) -> None:
        if self.window < self.cap:
            self.window = min(float(self.cap), self.window + 1.0 / max(self.window, 1.0))
            self._hand_over()  # a grown window admits the next waiter at once

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
