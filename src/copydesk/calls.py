"""One place every chat-completions call goes through.

`CallGateway.complete()` answers from the call store when it can; otherwise it
waits for the rate limiter and a slot in the adaptive window, reserves the
call's upper bound in the run's budget and, when the spec names one, in the shared
allowance (copydesk.allowance), makes the attempt, settles both, and
retries what is worth retrying (429, 5xx, timeouts, dropped connections,
unreadable answers) with exponential backoff from 1 s, jitter, and the
server's own `Retry-After`/`x-ratelimit-reset-*`. A 401/403 stops the whole run
at once: every later call raises the same error without touching the API.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from copydesk import events
from copydesk.allowance import SharedBudget, SharedReservation
from copydesk.budget import Reservation, TokenBudget, call_token_bound
from copydesk.client import ChatClient, ChatRequest, Completion, RetryPolicy
from copydesk.errors import (
    ApiError,
    AuthenticationError,
    BudgetExhausted,
    MalformedResponseError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
)
from copydesk.limiter import AdaptiveLimiter, RateLimiter
from copydesk.store import CallStore

log = logging.getLogger("copydesk.calls")


@dataclass(frozen=True)
class CallSite:
    """Where a call comes from: the article (0-based index), the stage and the part (the
    call store's part number: the section, an outline's attempt, a repair). Batch mode names
    each request line after it (copydesk.batch); realtime calls do not need it."""

    article: int
    stage: str
    part: int = 0


@dataclass(frozen=True)
class CallResult:
    completion: Completion
    cached: bool
    #: The model that answered, when the pipeline fell back from its pinned model.
    fallback_from: str | None = None


@dataclass
class CallStats:
    calls: int = 0
    cached: int = 0
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed: int = 0
    missing_usage: int = 0
    fallbacks: dict[str, str] = field(default_factory=dict)


class CallGateway:
    def __init__(
        self,
        client: ChatClient,
        budget: TokenBudget,
        limiter: AdaptiveLimiter,
        *,
        rate_limiter: RateLimiter | None = None,
        store: CallStore | None = None,
        retry: RetryPolicy = RetryPolicy(),
        fallback_model: str | None = None,
        metrics: object | None = None,
        shared: SharedBudget | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.limiter = limiter
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.store = store if store is not None else CallStore(None)
        self.retry = retry
        self.fallback_model = fallback_model
        self.metrics = metrics
        self.shared = shared
        self.stats = CallStats()
        #: Set by a 401/403; every later call raises it again.
        self.fatal: ApiError | None = None

    @contextlib.contextmanager
    def article_scope(self, index: int) -> Iterator[None]:
        """Held while article `index` is in progress (copydesk.orchestration); batch mode
        submits a stage once every article in progress waits on it."""
        yield

    async def complete(self, stage: str, request: ChatRequest, key: str, site: CallSite | None = None) -> CallResult:
        if cached := self.store.get(key):
            self.stats.cached += 1
            events.emit(
                events.CallFinished(stage, cached.usage.total_tokens if cached.usage else 0, True,
                                    self.budget.spent, self.budget.limit)
            )
            return CallResult(cached, cached=True)
        if self.fatal is not None:
            raise self.fatal
        model = self.stats.fallbacks.get(request.model, request.model)
        try:
            completion = await self._with_retries(stage, request.with_model(model), key)
        except ModelNotFoundError as exc:
            if not self._can_fall_back(model):
                self.fatal = exc
                raise
            completion = await self._fall_back(stage, request, model, exc, key)
        except (AuthenticationError, QuotaExceededError, BudgetExhausted, ModelNotFoundError):
            raise
        except ApiError as exc:
            if not exc.retryable or not self._can_fall_back(model):
                raise
            completion = await self._fall_back(stage, request, model, exc, key)
        # stored by `_attempt` the moment it arrived
        used = self.stats.fallbacks.get(request.model)
        return CallResult(completion, cached=False, fallback_from=request.model if used else None)

    def _can_fall_back(self, model: str) -> bool:
        return bool(self.fallback_model) and model != self.fallback_model

    async def _fall_back(self, stage: str, request: ChatRequest, model: str, exc: ApiError, key: str) -> Completion:
        assert self.fallback_model
        if request.model not in self.stats.fallbacks:
            self.stats.fallbacks[request.model] = self.fallback_model
            log.warning("model %s failed (%s); falling back to %s for the rest of the run", model, exc, self.fallback_model)
        try:
            return await self._with_retries(stage, request.with_model(self.fallback_model), key)
        except (AuthenticationError, ModelNotFoundError) as fatal:
            self.fatal = fatal
            raise

    async def _with_retries(self, stage: str, request: ChatRequest, key: str) -> Completion:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, ApiError) and exc.retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(stage, request, key)
        except (AuthenticationError, QuotaExceededError) as exc:
            self.fatal = exc
            raise
        except ApiError as exc:
            self.stats.failed += 1
            self._record(stage, request.model, "failed", 0.0)
            attempts = int(retrying.statistics.get("attempt_number", 1))
            if exc.retryable:
                log.warning("%s call failed after %d attempt(s): %s", stage, attempts, exc)
            else:  # a refusal (a 4xx, an unsupported response_format): said once by whoever handles it
                log.info("%s call refused (not retried, %d attempt(s)): %s", stage, attempts, exc)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.retry.delay(state.attempt_number, getattr(exc, "retry_after", None))

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.retries += 1
        log.info("retrying after %s (attempt %d)", exc, state.attempt_number)

    async def _attempt(self, stage: str, request: ChatRequest, key: str) -> Completion:
        if self.fatal is not None:
            raise self.fatal
        bound = call_token_bound(request.messages, request.max_tokens)
        await self.rate_limiter.acquire(bound)
        async with self.limiter.slot():
            if self.fatal is not None:
                raise self.fatal
            reservation = await self.budget.acquire(bound, what=f"a {stage} call")
            shared = await self._reserve_shared(reservation, bound, f"a {stage} call")
            self.stats.attempts += 1
            started = time.perf_counter()
            try:
                completion = await self.client.complete(request)
            except ApiError as exc:
                seconds = time.perf_counter() - started
                if exc.charged:
                    await self._settle(reservation, shared, None)
                else:
                    self.budget.release(reservation)
                    if shared is not None:
                        await self.shared.release(shared)  # type: ignore[union-attr]
                if isinstance(exc, RateLimitError):
                    self.stats.rate_limited += 1
                    self.limiter.on_rate_limited()
                    self._record(stage, request.model, "rate_limited", seconds)
                elif exc.retryable:
                    self._record(stage, request.model, "retried", seconds)
                if isinstance(exc, MalformedResponseError):
                    log.warning("%s; counting the call's upper bound (%d tokens) as spent", exc, bound)
                raise
            except BaseException:
                # Cancelled mid-flight: the API may still bill it. A shared reservation stays
                # held (counted as used): nothing can be awaited here.
                self.budget.settle(reservation, None)
                raise
            seconds = time.perf_counter() - started
        # Stored before anything else is awaited (the shared settlement is a few requests to the
        # Prefect server): a process killed from here on has the answer, and a resume pays nothing.
        self.store.put(key, completion)
        self.limiter.on_success()
        if completion.usage is None:
            self.stats.missing_usage += 1
            log.warning(
                "the API sent no usable usage for a %s call; counting its upper bound (%d tokens) as spent",
                stage,
                bound,
            )
            spent = await self._settle(reservation, shared, None)
        else:
            spent = await self._settle(reservation, shared, completion.usage.total_tokens)
        self.stats.calls += 1
        self._record(stage, request.model, "ok", seconds)
        if self.metrics is not None and completion.usage is not None:
            self.metrics.record_usage(stage, request.model, completion.usage.prompt_tokens,
                                      completion.usage.completion_tokens, completion.usage.cached_prompt_tokens)
        if self.metrics is not None:
            self.metrics.set_budget(self.budget.limit, self.budget.remaining)
        events.emit(events.CallFinished(stage, spent, False, self.budget.spent, self.budget.limit))
        return completion

    async def _reserve_shared(self, reservation: Reservation, bound: int, what: str) -> SharedReservation | None:
        """The shared allowance's reservation, after the run's. When the allowance is spent the
        run's budget closes too, with the allowance named as the reason: the run stops (exit 3)."""
        if self.shared is None:
            return None
        try:
            return await self.shared.acquire(bound, what=what)
        except BudgetExhausted as exc:
            self.budget.release(reservation)
            self.budget.close(str(exc))
            raise BudgetExhausted(str(exc)) from exc
        except BaseException:
            self.budget.release(reservation)
            raise

    async def _settle(self, reservation: Reservation, shared: SharedReservation | None, actual: int | None) -> int:
        spent = self.budget.settle(reservation, actual)
        if shared is not None and self.shared is not None:
            await self.shared.settle(shared, actual)
        return spent

    def _record(self, stage: str, model: str, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.record_request(stage, model, outcome, seconds)
