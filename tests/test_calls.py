"""copydesk.calls.CallGateway over a ChatClient on httpx.MockTransport: retries, budget, store, fallback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from copydesk.budget import TokenBudget, call_token_bound
from copydesk.calls import CallGateway, RetryPolicy
from copydesk.client import ApiEndpoint, ChatClient, ChatRequest, Completion, Usage
from copydesk.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExhausted,
    MalformedResponseError,
    ModelNotFoundError,
    ServerError,
    TransportError,
)
from copydesk.limiter import AdaptiveLimiter
from copydesk.store import CallStore, call_key

KEY = "sk-test-calls-SECRET-abcdef0123456789"
FAST = RetryPolicy(max_attempts=4, initial=0.01, max_delay=0.05, jitter=0.01)
MESSAGES = ({"role": "user", "content": "Write a title about asyncio."},)
REQUEST = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, params={"max_tokens": 50, "temperature": 0.5})
BOUND = call_token_bound(MESSAGES, 50)
USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def ok(text: str = "Async Python", usage: dict[str, int] | None = USAGE, model: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if model:
        body["model"] = model
    if usage is not None:
        body["usage"] = usage
    return httpx.Response(200, json=body)


class Api:
    """A scripted MockTransport: answers come from `script` in order (the last one repeats)."""

    def __init__(self, *script: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    @property
    def chat_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/chat/completions")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return item(request) if callable(item) else item


def gateway(
    handler: Handler,
    *,
    limit: int = 100_000,
    cap: int = 4,
    retry: RetryPolicy = FAST,
    store: CallStore | None = None,
    fallback_model: str | None = None,
    key: str | None = KEY,
) -> CallGateway:
    client = ChatClient(
        ApiEndpoint("https://api.example.test/v1", SecretStr(key) if key else None),
        transport=httpx.MockTransport(handler),
    )
    return CallGateway(
        client,
        TokenBudget(limit),
        AdaptiveLimiter(cap, cooldown=0.0),
        store=store,
        retry=retry,
        fallback_model=fallback_model,
    )


def key_for(n: int = 0, request: ChatRequest = REQUEST) -> str:
    return call_key(f"topic-{n}", "title", 0, request)


def test_default_backoff_starts_at_one_second() -> None:
    policy = RetryPolicy()
    assert policy.initial == 1.0 and policy.max_attempts > 1


async def test_success_settles_the_budget_to_the_reported_usage() -> None:
    api = Api(ok())
    gw = gateway(api)
    result = await gw.complete("title", REQUEST, key_for())
    assert result.cached is False and result.fallback_from is None
    assert result.completion.text == "Async Python" and result.completion.usage == Usage(20, 10, 30)
    assert (gw.budget.spent, gw.budget.reserved) == (30, 0)
    assert gw.stats.calls == 1 and gw.stats.attempts == 1 and gw.stats.retries == 0
    assert len(api.requests) == 1


async def test_retries_429_then_succeeds() -> None:
    api = Api(httpx.Response(429, text="slow down"), httpx.Response(429, text="slow down"), ok())
    gw = gateway(api)
    result = await gw.complete("title", REQUEST, key_for())
    assert result.completion.text == "Async Python"
    assert len(api.requests) == 3
    assert gw.stats.rate_limited == 2 and gw.stats.retries == 2 and gw.stats.attempts == 3
    assert gw.limiter.shrinks >= 1  # the window reacted to the 429s
    # The 429s cost nothing: only the successful attempt is spent.
    assert (gw.budget.spent, gw.budget.reserved) == (30, 0)


async def test_honours_retry_after() -> None:
    api = Api(httpx.Response(429, headers={"Retry-After": "0.3"}), ok())
    gw = gateway(api)  # its own backoff would wait at most 0.05 s
    started = time.monotonic()
    await gw.complete("title", REQUEST, key_for())
    elapsed = time.monotonic() - started
    assert elapsed >= 0.28
    assert elapsed < 1.5
    assert len(api.requests) == 2


async def test_honours_retry_after_in_the_wait_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chosen wait is at least what the server asked for (checked without sleeping)."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float, *args: Any) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    api = Api(httpx.Response(429, headers={"x-ratelimit-reset-requests": "750ms"}), ok())
    await gateway(api).complete("title", REQUEST, key_for())
    assert len(waits) == 1 and waits[0] >= 0.75


async def test_401_is_not_retried_and_stops_every_later_call() -> None:
    api = Api(httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}}))
    gw = gateway(api)
    with pytest.raises(AuthenticationError) as info:
        await gw.complete("title", REQUEST, key_for(1))
    assert len(api.requests) == 1
    assert gw.fatal is info.value
    assert KEY not in str(info.value)
    with pytest.raises(AuthenticationError):
        await gw.complete("outline", REQUEST, key_for(2))
    assert len(api.requests) == 1  # no new request
    assert (gw.budget.spent, gw.budget.reserved) == (0, 0)


async def test_401_stops_calls_waiting_for_a_slot() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        api_requests.append(request)
        await asyncio.sleep(0.01)
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    api_requests: list[httpx.Request] = []
    gw = gateway(handler, cap=1)
    results = await asyncio.gather(*(gw.complete("title", REQUEST, key_for(i)) for i in range(10)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert len(api_requests) == 1


async def test_400_is_not_retried() -> None:
    api = Api(httpx.Response(400, json={"error": {"message": "Invalid 'messages': empty"}}))
    gw = gateway(api)
    with pytest.raises(BadRequestError, match="Invalid 'messages': empty"):
        await gw.complete("title", REQUEST, key_for())
    assert len(api.requests) == 1
    assert gw.fatal is None  # a bad request fails one article, not the run
    assert (gw.budget.spent, gw.budget.reserved) == (0, 0)
    assert gw.stats.failed == 1
    # The next call is made.
    api.script = [ok()]
    await gw.complete("title", REQUEST, key_for(2))
    assert len(api.requests) == 2


async def test_server_errors_after_max_attempts_release_the_budget() -> None:
    api = Api(httpx.Response(500, json={"error": {"message": "The server had an error"}}))
    gw = gateway(api)
    with pytest.raises(ServerError):
        await gw.complete("title", REQUEST, key_for())
    assert len(api.requests) == FAST.max_attempts
    assert (gw.budget.spent, gw.budget.reserved) == (0, 0)
    assert gw.stats.failed == 1 and gw.stats.retries == FAST.max_attempts - 1
    assert not gw.budget.closed


async def test_timeout_after_sending_counts_the_whole_reservation() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    gw = gateway(handler, retry=RetryPolicy(max_attempts=2, initial=0.01, max_delay=0.05, jitter=0.01))
    with pytest.raises(TransportError) as info:
        await gw.complete("title", REQUEST, key_for())
    assert info.value.sent is True
    assert gw.budget.spent == 2 * BOUND  # both attempts may have been billed
    assert gw.budget.reserved == 0


async def test_connect_error_costs_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    gw = gateway(handler, retry=RetryPolicy(max_attempts=2, initial=0.01, max_delay=0.05, jitter=0.01))
    with pytest.raises(TransportError):
        await gw.complete("title", REQUEST, key_for())
    assert (gw.budget.spent, gw.budget.reserved) == (0, 0)


async def test_connect_timeout_costs_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route", request=request)

    gw = gateway(handler, retry=RetryPolicy(max_attempts=2, initial=0.01, max_delay=0.05, jitter=0.01))
    with pytest.raises(TransportError):
        await gw.complete("title", REQUEST, key_for())
    assert (gw.budget.spent, gw.budget.reserved) == (0, 0)


async def test_timeout_then_success() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return ok()

    gw = gateway(handler)
    await gw.complete("title", REQUEST, key_for())
    assert gw.budget.spent == BOUND + 30


async def test_missing_usage_counts_the_reservation() -> None:
    gw = gateway(Api(ok(usage=None)))
    result = await gw.complete("title", REQUEST, key_for())
    assert result.completion.usage is None
    assert gw.budget.spent == BOUND
    assert gw.stats.missing_usage == 1


async def test_malformed_answer_is_retried_and_charged() -> None:
    api = Api(httpx.Response(200, text="<html>oops</html>"), ok())
    gw = gateway(api)
    await gw.complete("title", REQUEST, key_for())
    assert len(api.requests) == 2
    assert gw.budget.spent == BOUND + 30


async def test_malformed_answers_to_the_end_raise() -> None:
    gw = gateway(Api(httpx.Response(200, json={"choices": []})))
    with pytest.raises(MalformedResponseError):
        await gw.complete("title", REQUEST, key_for())
    assert gw.budget.spent == FAST.max_attempts * BOUND


async def test_budget_refuses_a_call_that_cannot_fit_without_a_request() -> None:
    api = Api(ok())
    gw = gateway(api, limit=BOUND - 1)
    with pytest.raises(BudgetExhausted):
        await gw.complete("title", REQUEST, key_for())
    assert api.requests == []


async def test_budget_is_never_exceeded_under_concurrency() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)
        # The API honours max_tokens: it never bills more than the reservation.
        return ok(usage={"prompt_tokens": 40, "completion_tokens": 50, "total_tokens": 90})

    limit = 10 * BOUND
    gw = gateway(handler, limit=limit, cap=16)
    results = await asyncio.gather(*(gw.complete("title", REQUEST, key_for(i)) for i in range(100)), return_exceptions=True)
    assert any(isinstance(r, BudgetExhausted) for r in results)
    assert gw.budget.spent <= limit and gw.budget.reserved == 0
    done = [r for r in results if not isinstance(r, BaseException)]
    assert gw.budget.spent == 90 * len(done)


async def test_cached_completion_is_returned_without_a_request(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "calls.jsonl")
    cached = Completion(text="From the store", finish_reason="stop", usage=Usage(1, 2, 3), model="gpt-4o-mini")
    store.put(key_for(), cached)
    api = Api(ok())
    gw = gateway(api, store=store)
    result = await gw.complete("title", REQUEST, key_for())
    assert result.cached is True and result.completion == cached
    assert api.requests == []
    assert gw.stats.cached == 1 and gw.budget.spent == 0
    store.close()


async def test_a_rerun_pays_nothing_for_finished_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    first_api = Api(ok("First answer"))
    first = gateway(first_api, store=CallStore(path))
    await first.complete("title", REQUEST, key_for(1))
    first.store.close()

    second_api = Api(ok("Second answer"))
    second = gateway(second_api, store=CallStore(path))
    again = await second.complete("title", REQUEST, key_for(1))
    other = await second.complete("title", REQUEST, key_for(2))
    assert again.cached and again.completion.text == "First answer"
    assert not other.cached and other.completion.text == "Second answer"
    assert len(second_api.requests) == 1
    assert second.budget.spent == 30
    second.store.close()


def _model_api(missing: str, available: list[str]) -> Api:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": m} for m in available]})
        model = json.loads(request.content)["model"]
        if model == missing:
            return httpx.Response(404, json={"error": {"message": f"The model `{model}` does not exist"}})
        return ok(f"answer from {model}", model=model)

    return Api(answer)


async def test_fallback_model_is_used_when_the_model_404s() -> None:
    api = _model_api("gpt-9", ["gpt-4o-mini"])
    gw = gateway(api, fallback_model="gpt-4o-mini")
    request = ChatRequest(model="gpt-9", messages=MESSAGES, params={"max_tokens": 50})
    result = await gw.complete("title", request, key_for(1, request))
    assert result.completion.text == "answer from gpt-4o-mini"
    assert result.fallback_from == "gpt-9"
    assert gw.stats.fallbacks == {"gpt-9": "gpt-4o-mini"}
    assert [json.loads(r.content)["model"] for r in api.chat_requests] == ["gpt-9", "gpt-4o-mini"]
    assert gw.fatal is None
    # Later calls go straight to the fallback.
    result2 = await gw.complete("outline", request, key_for(2, request))
    assert result2.fallback_from == "gpt-9"
    assert [json.loads(r.content)["model"] for r in api.chat_requests][2:] == ["gpt-4o-mini"]
    # The fallback call's params are the stage's own.
    assert json.loads(api.chat_requests[-1].content) == {
        "model": "gpt-4o-mini",
        "messages": [dict(m) for m in MESSAGES],
        "max_tokens": 50,
    }


async def test_model_404_without_fallback_is_fatal() -> None:
    api = _model_api("gpt-9", ["gpt-4o-mini", "gpt-4o"])
    gw = gateway(api)
    request = ChatRequest(model="gpt-9", messages=MESSAGES, params={"max_tokens": 50})
    with pytest.raises(ModelNotFoundError) as info:
        await gw.complete("title", request, key_for(1, request))
    assert info.value.available == ["gpt-4o", "gpt-4o-mini"]
    assert gw.fatal is info.value
    count = len(api.requests)
    with pytest.raises(ModelNotFoundError):
        await gw.complete("title", request, key_for(2, request))
    assert len(api.requests) == count


async def test_fallback_after_repeated_server_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        return httpx.Response(503, text="overloaded") if model == "primary" else ok(model=model)

    api = Api(answer)
    gw = gateway(api, fallback_model="backup")
    request = ChatRequest(model="primary", messages=MESSAGES, params={"max_tokens": 50})
    result = await gw.complete("title", request, key_for(1, request))
    assert result.fallback_from == "primary" and result.completion.model == "backup"
    assert len(api.requests) == FAST.max_attempts + 1
    assert gw.budget.spent == 30


async def test_concurrency_cap_is_respected() -> None:
    current = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.005)
        current -= 1
        return ok()

    gw = gateway(handler, cap=3)
    await asyncio.gather(*(gw.complete("expansion", REQUEST, key_for(i)) for i in range(30)))
    assert peak == 3
    assert gw.limiter.peak_in_flight == 3
    assert gw.stats.calls == 30


async def test_the_key_never_reaches_the_store(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    gw = gateway(Api(ok()), store=CallStore(path))
    await gw.complete("title", REQUEST, key_for())
    gw.store.close()
    assert KEY not in path.read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8").count("\n") == 1
