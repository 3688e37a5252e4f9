"""The token budget: a hard cap on the `usage.total_tokens` a run may spend.

Before each attempt a call *reserves* an upper bound of what it can cost (see
`prompt_token_bound`, plus the stage's `max_tokens`); afterwards it *settles*
to what the API reported, or keeps the whole reservation when the API did not
say (a timeout after sending, a missing `usage`). A reservation that does not
fit next to what is spent and reserved is refused, so at any concurrency

    spent + reserved <= max_total_tokens

holds at every moment, and `spent` is the sum of what the API reported (or of
upper bounds where it did not).

Use the budget, don't just guard it: `acquire()` (what the call gateway uses)
makes a reservation that does not fit *wait* while calls in flight may still
free room (a settle returns the unused part of its reservation). The budget
closes only when nothing in flight could make room: `spent + tokens > limit`.
Once closed no new call starts; calls already in flight finish and settle.
The synchronous `reserve()` never waits: it closes the budget at the first
reservation that does not fit.

Why the bound holds: the APIs copydesk talks to use byte-level BPE (OpenAI's
tiktoken encodings) or SentencePiece with byte fallback (llama.cpp models).
In both, every token of a message's content covers at least one byte of its
UTF-8 encoding, except SentencePiece's single dummy-prefix piece; so a
content of n bytes is at most n + 1 tokens. The chat template adds a fixed
number of tokens per message (OpenAI: 3-4; ChatML: 5) and per request (the
assistant priming, and a default system prompt some templates inject, e.g.
SmolLM2's ~20 tokens). `PER_MESSAGE_OVERHEAD` and `PER_REQUEST_OVERHEAD` are
set well above those. A completion is at most `max_tokens` long, which the
API enforces.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from copydesk.errors import BudgetExhausted

log = logging.getLogger("copydesk.budget")

PER_MESSAGE_OVERHEAD = 16
PER_REQUEST_OVERHEAD = 64


def prompt_token_bound(messages: Iterable[dict[str, str]]) -> int:
    """An upper bound of the prompt tokens any BPE/SentencePiece tokenizer counts."""
    total = PER_REQUEST_OVERHEAD
    for message in messages:
        total += PER_MESSAGE_OVERHEAD + len(message.get("content", "").encode("utf-8")) + 1
        total += len(message.get("role", "").encode("utf-8"))
    return total


def call_token_bound(messages: Iterable[dict[str, str]], max_tokens: int) -> int:
    return prompt_token_bound(messages) + max_tokens


@dataclass
class Reservation:
    tokens: int
    open: bool = True


class TokenBudget:
    """Thread-safe; cheap enough to consult on every call."""

    def __init__(
        self,
        limit: int,
        *,
        warn_at: float = 0.8,
        on_warn: Callable[[TokenBudget], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("a budget needs at least one token")
        self.limit = limit
        self.warn_at = warn_at
        self.spent = 0
        self.reserved = 0
        self.closed = False
        self.refused_reason: str | None = None
        self.overrun_reports = 0
        self._warned = False
        self._on_warn = on_warn
        self._lock = threading.Lock()
        #: `acquire()` calls waiting for room, woken by every settle, release and close.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def remaining(self) -> int:
        return self.limit - self.spent

    @property
    def available(self) -> int:
        return self.limit - self.spent - self.reserved

    def reserve(self, tokens: int, *, what: str = "the next call") -> Reservation:
        with self._lock:
            if self.closed:
                raise BudgetExhausted(self.refused_reason or "the token budget is exhausted")
            if self.spent + self.reserved + tokens > self.limit:
                self.closed = True
                self.refused_reason = (
                    f"token budget reached: {what} may need up to {tokens:,} tokens but only "
                    f"{self.limit - self.spent - self.reserved:,} of {self.limit:,} are left "
                    f"({self.spent:,} spent, {self.reserved:,} reserved by calls in flight)"
                )
                raise BudgetExhausted(self.refused_reason)
            self.reserved += tokens
            return Reservation(tokens)

    async def acquire(self, tokens: int, *, what: str = "the next call") -> Reservation:
        """Reserve `tokens`, waiting while calls in flight may still free room.

        Raises `BudgetExhausted` (and closes the budget) once even the settlement of every
        call in flight could not make room, i.e. `spent + tokens > limit`; never overshoots."""
        while True:
            with self._lock:
                if self.closed:
                    raise BudgetExhausted(self.refused_reason or "the token budget is exhausted")
                if self.spent + self.reserved + tokens <= self.limit:
                    self.reserved += tokens
                    return Reservation(tokens)
                if self.spent + tokens > self.limit:
                    self.closed = True
                    self.refused_reason = (
                        f"token budget reached: {what} may need up to {tokens:,} tokens but only "
                        f"{self.limit - self.spent:,} of {self.limit:,} are left ({self.spent:,} spent)"
                    )
                    self._wake_locked()
                    raise BudgetExhausted(self.refused_reason)
                loop = asyncio.get_running_loop()
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            try:
                await waiter
            finally:
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))

    def close(self, reason: str) -> None:
        """Stop every new call (e.g. a shared allowance is spent); calls in flight still settle."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self.refused_reason = reason
            self._wake_locked()

    def _wake_locked(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # that loop is closed: nobody waits on it any more
                pass

    def settle(self, reservation: Reservation, actual_total: int | None) -> int:
        """Replace a reservation by what the API reported; None keeps the whole reservation."""
        with self._lock:
            if not reservation.open:
                return 0
            reservation.open = False
            self.reserved -= reservation.tokens
            charged = reservation.tokens if actual_total is None else actual_total
            if actual_total is not None and actual_total > reservation.tokens:
                # Only an API that ignores max_tokens can do this; count what it said.
                self.overrun_reports += 1
                log.warning(
                    "the API reported %d tokens for a call bounded by %d; check that it honours max_tokens",
                    actual_total,
                    reservation.tokens,
                )
            self.spent += charged
            self._wake_locked()
            warn = not self._warned and self.spent >= self.warn_at * self.limit
            if warn:
                self._warned = True
        if warn:
            log.warning("%.0f%% of the token budget spent (%d of %d)", 100 * self.spent / self.limit, self.spent, self.limit)
            if self._on_warn:
                self._on_warn(self)
        return charged

    def release(self, reservation: Reservation) -> None:
        """The attempt provably cost nothing (an error answer, a refused connection)."""
        with self._lock:
            if reservation.open:
                reservation.open = False
                self.reserved -= reservation.tokens
                self._wake_locked()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
