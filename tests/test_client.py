"""copydesk.client over httpx.MockTransport: the request sent, the answer parsed, errors translated."""

from __future__ import annotations

import email.utils
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from copydesk.client import (
    ApiEndpoint,
    ChatClient,
    ChatRequest,
    Completion,
    RetryPolicy,
    Usage,
    parse_duration,
    retry_after_seconds,
)
from copydesk.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
)

KEY = "sk-test-client-SECRET-0123456789abcdef"
BASE_URL = "https://api.example.test/v1"
MESSAGES = ({"role": "system", "content": "You write."}, {"role": "user", "content": "Title about 异步?"})
PARAMS = {"max_tokens": 20, "temperature": 0.9, "top_p": 1.0, "presence_penalty": 0.0}

Handler = Callable[[httpx.Request], httpx.Response]


def completion_body(text: str = "Async Python", usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def make_client(handler: Handler, key: str | None = KEY) -> ChatClient:
    endpoint = ApiEndpoint(BASE_URL, SecretStr(key) if key is not None else None)
    return ChatClient(endpoint, transport=httpx.MockTransport(handler))


def request(model: str = "gpt-4o-mini", params: dict[str, Any] | None = None) -> ChatRequest:
    return ChatRequest(model=model, messages=MESSAGES, params=dict(PARAMS if params is None else params))


async def error_for(response: httpx.Response, key: str | None = KEY) -> ApiError:
    client = make_client(lambda req: response, key)
    try:
        with pytest.raises(ApiError) as info:
            await client.complete(request())
    finally:
        await client.aclose()
    return info.value


# ----------------------------------------------------------------------------- the request


async def test_exact_json_body_and_path() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=completion_body(usage=USAGE))

    async with make_client(handler) as client:
        await client.complete(request())
    (sent,) = seen
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/chat/completions"
    assert json.loads(sent.content) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You write."}, {"role": "user", "content": "Title about 异步?"}],
        "max_tokens": 20,
        "temperature": 0.9,
        "top_p": 1.0,
        "presence_penalty": 0.0,
    }
    assert sent.headers["content-type"] == "application/json"


async def test_only_the_stage_params_are_sent() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(req.content))
        return httpx.Response(200, json=completion_body(usage=USAGE))

    async with make_client(handler) as client:
        await client.complete(request(params={"max_tokens": 300}))
    assert bodies == [{"model": "gpt-4o-mini", "messages": [dict(m) for m in MESSAGES], "max_tokens": 300}]


async def test_authorization_header_when_a_key_is_set() -> None:
    headers: list[httpx.Headers] = []

    def handler(req: httpx.Request) -> httpx.Response:
        headers.append(req.headers)
        return httpx.Response(200, json=completion_body(usage=USAGE))

    async with make_client(handler) as client:
        await client.complete(request())
    assert headers[0]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("key", [None, ""])
async def test_no_authorization_header_without_a_key(key: str | None) -> None:
    headers: list[httpx.Headers] = []

    def handler(req: httpx.Request) -> httpx.Response:
        headers.append(req.headers)
        return httpx.Response(200, json=completion_body(usage=USAGE))

    async with make_client(handler, key=key) as client:
        await client.complete(request())
    assert "authorization" not in headers[0]


def test_endpoint_repr_does_not_show_the_key() -> None:
    endpoint = ApiEndpoint(BASE_URL, SecretStr(KEY))
    assert KEY not in repr(endpoint) and KEY not in str(endpoint) and KEY not in endpoint.describe()


# ----------------------------------------------------------------------------- the answer


async def test_parses_text_finish_reason_model_and_usage() -> None:
    async with make_client(lambda req: httpx.Response(200, json=completion_body("异步 Python", usage=USAGE))) as client:
        result = await client.complete(request())
    assert result == Completion(
        text="异步 Python", finish_reason="stop", usage=Usage(12, 5, 17), model="gpt-4o-mini-2024-07-18"
    )


async def test_total_tokens_missing_is_prompt_plus_completion() -> None:
    body = completion_body(usage={"prompt_tokens": 3, "completion_tokens": 4})
    async with make_client(lambda req: httpx.Response(200, json=body)) as client:
        assert (await client.complete(request())).usage == Usage(3, 4, 7)


async def test_total_below_prompt_plus_completion_is_raised_to_the_sum() -> None:
    body = completion_body(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 1})
    async with make_client(lambda req: httpx.Response(200, json=body)) as client:
        assert (await client.complete(request())).usage == Usage(3, 4, 7)


@pytest.mark.parametrize(
    "usage", [None, "lots", {"prompt_tokens": "x"}, {"prompt_tokens": -1, "completion_tokens": 2}, []]
)
async def test_missing_or_unusable_usage_is_none(usage: Any) -> None:
    body = completion_body()
    if usage is not None:
        body["usage"] = usage
    async with make_client(lambda req: httpx.Response(200, json=body)) as client:
        result = await client.complete(request())
    assert result.usage is None
    assert result.text == "Async Python"


async def test_missing_model_in_answer_falls_back_to_requested_model() -> None:
    body = completion_body(usage=USAGE)
    del body["model"]
    async with make_client(lambda req: httpx.Response(200, json=body)) as client:
        assert (await client.complete(request("my-model"))).model == "my-model"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, text='{"choices": [{"message": '),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"object": "error"}),
        httpx.Response(200, json={"choices": [{"message": {"content": 42}}]}),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
async def test_malformed_answer_is_charged(response: httpx.Response) -> None:
    error = await error_for(response)
    assert isinstance(error, MalformedResponseError)
    assert error.charged is True
    assert error.retryable is True


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_name_the_variable_and_hide_the_key(status: int) -> None:
    error = await error_for(httpx.Response(status, json={"error": {"message": "Incorrect API key provided"}}))
    assert isinstance(error, AuthenticationError)
    assert error.status_code == status
    assert error.retryable is False and error.exit_code == 4
    assert "OPENAI_API_KEY" in str(error)
    assert "Incorrect API key provided" in str(error)
    assert KEY not in str(error)
    assert KEY[-12:] not in str(error)


async def test_auth_error_never_contains_the_key_even_if_the_server_echoes_it() -> None:
    error = await error_for(httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    assert isinstance(error, AuthenticationError)
    assert KEY not in str(error)


async def test_model_not_found_lists_the_models() -> None:
    requests: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        requests.append(f"{req.method} {req.url.path}")
        if req.url.path.endswith("/models"):
            assert req.headers["authorization"] == f"Bearer {KEY}"
            return httpx.Response(200, json={"object": "list", "data": [{"id": "zeta"}, {"id": "alpha"}]})
        return httpx.Response(
            404,
            json={"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
        )

    async with make_client(handler) as client:
        with pytest.raises(ModelNotFoundError) as info:
            await client.complete(request("gpt-9"))
    error = info.value
    assert requests == ["POST /v1/chat/completions", "GET /v1/models"]
    assert error.model == "gpt-9"
    assert error.available == ["alpha", "zeta"]
    assert "'gpt-9'" in str(error) and "alpha, zeta" in str(error)
    assert error.exit_code == 2 and error.status_code == 404


async def test_model_not_found_when_models_cannot_be_listed() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/models"):
            return httpx.Response(500, text="down")
        return httpx.Response(404, json={"error": {"message": "model gpt-9 not found"}})

    async with make_client(handler) as client:
        with pytest.raises(ModelNotFoundError) as info:
            await client.complete(request("gpt-9"))
    assert info.value.available == []


async def test_a_404_that_is_not_about_the_model_is_a_bad_request() -> None:
    error = await error_for(httpx.Response(404, text="Not Found"))
    assert type(error) is BadRequestError
    assert error.status_code == 404


async def test_rate_limit_with_retry_after_seconds() -> None:
    error = await error_for(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "Rate limit reached"}})
    )
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7.0
    assert error.retryable is True and error.status_code == 429
    assert "Rate limit reached" in str(error)


async def test_rate_limit_with_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = await error_for(httpx.Response(429, headers={"Retry-After": when}))
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None and 27 <= error.retry_after <= 31


async def test_rate_limit_with_retry_after_ms() -> None:
    error = await error_for(httpx.Response(429, headers={"retry-after-ms": "1500"}))
    assert isinstance(error, RateLimitError) and error.retry_after == pytest.approx(1.5)


@pytest.mark.parametrize(("value", "seconds"), [("6m0s", 360.0), ("20ms", 0.02), ("1s", 1.0), ("1m30.5s", 90.5)])
async def test_rate_limit_with_openai_reset_headers(value: str, seconds: float) -> None:
    error = await error_for(httpx.Response(429, headers={"x-ratelimit-reset-requests": value}))
    assert isinstance(error, RateLimitError) and error.retry_after == pytest.approx(seconds)


async def test_rate_limit_takes_the_longer_of_the_reset_headers() -> None:
    error = await error_for(
        httpx.Response(429, headers={"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"})
    )
    assert error.retry_after == 360.0


async def test_rate_limit_without_headers() -> None:
    error = await error_for(httpx.Response(429, text="slow down"))
    assert isinstance(error, RateLimitError) and error.retry_after is None
    assert "slow down" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors(status: int) -> None:
    error = await error_for(httpx.Response(status, json={"error": {"message": "The server had an error"}}))
    assert isinstance(error, ServerError)
    assert error.status_code == status and error.retryable is True and error.charged is False
    assert "The server had an error" in str(error)


async def test_bad_request_carries_the_api_message() -> None:
    error = await error_for(
        httpx.Response(400, json={"error": {"message": "max_tokens is too large: 999999", "type": "invalid_request_error"}})
    )
    assert type(error) is BadRequestError
    assert error.status_code == 400 and error.retryable is False
    assert "max_tokens is too large: 999999" in str(error)


async def test_read_timeout_is_a_transport_error_after_sending() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    error = await error_for_handler(handler)
    assert isinstance(error, TransportError)
    assert error.sent is True and error.charged is True and error.retryable is True
    assert isinstance(error.__cause__, httpx.ReadTimeout)


async def test_connect_error_is_a_transport_error_before_sending() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    error = await error_for_handler(handler)
    assert isinstance(error, TransportError)
    assert error.sent is False and error.charged is False and error.retryable is True
    assert "OPENAI_BASE_URL" in str(error)


@pytest.mark.parametrize("exc_type", [httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_timeouts_before_sending_are_not_charged(exc_type: type[httpx.TimeoutException]) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise exc_type("no connection", request=req)

    error = await error_for_handler(handler)
    assert isinstance(error, TransportError)
    assert error.sent is False and error.charged is False


async def test_dropped_connection_is_a_transport_error_after_sending() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("server disconnected", request=req)

    error = await error_for_handler(handler)
    assert isinstance(error, TransportError) and error.sent is True


async def error_for_handler(handler: Handler) -> ApiError:
    async with make_client(handler) as client:
        with pytest.raises(ApiError) as info:
            await client.complete(request())
    return info.value


async def test_error_messages_never_contain_the_key() -> None:
    for response in (
        httpx.Response(500, text="boom"),
        httpx.Response(429, text="slow"),
        httpx.Response(400, json={"error": {"message": "bad"}}),
        httpx.Response(200, text="not json"),
    ):
        error = await error_for(response)
        assert KEY not in str(error) and KEY not in repr(error)


# ----------------------------------------------------------------------------- other endpoints


async def test_list_models_sorted() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        assert req.method == "GET" and req.url.path == "/v1/models"
        return httpx.Response(200, json={"data": [{"id": "b"}, {"id": "a"}]})

    async with make_client(handler) as client:
        assert await client.list_models() == ["a", "b"]


async def test_post_json_sends_and_returns_json() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        assert req.url.path == "/v1/moderations"
        return httpx.Response(200, json={"echo": json.loads(req.content)})

    async with make_client(handler) as client:
        assert await client.post_json("moderations", {"input": "x"}) == {"echo": {"input": "x"}}


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("3", 3.0),
        ("0.25", 0.25),
        (" 7s ", 7.0),
        ("-5", 0.0),
        ("1m500ms", 60.5),
    ],
)
def test_parse_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "s", "5 minutes", "1x"])
def test_parse_duration_rejects_garbage(value: str) -> None:
    assert parse_duration(value) is None


def test_retry_after_seconds_prefers_retry_after_ms() -> None:
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)


def test_retry_after_http_date_relative_to_now() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 12, usegmt=True)
    assert retry_after_seconds({"Retry-After": header}, now=now) == pytest.approx(12.0)
    # A date in the past means "now", never a negative wait.
    assert retry_after_seconds({"Retry-After": email.utils.formatdate(now - 60, usegmt=True)}, now=now) == 0.0


def test_retry_after_garbage_is_none() -> None:
    assert retry_after_seconds({"Retry-After": "whenever"}) is None
    assert retry_after_seconds({}) is None


# ------------------------------------------------------------------------------ URLs, secrets, one layer


def test_describe_and_redact_strip_url_credentials_and_encoded_keys() -> None:
    key = "key/with+special=chars-77"
    endpoint = ApiEndpoint("https://alice:pw-secret-123@gw.example.test/v1?api-key=qsecret-456&mode=x",
                           SecretStr(key))
    assert endpoint.describe() == "https://gw.example.test/v1"
    assert endpoint.describe("moderations") == "https://gw.example.test/v1/moderations"
    for text in [
        f"echo {key}",
        f"echo {urllib.parse.quote(key, safe='')} and {urllib.parse.quote(key, safe='').lower()}",
        f"form {urllib.parse.quote_plus(key)}",
        'json "' + json.dumps(key)[1:-1] + '"',
        "see http://bob:other-pass@proxy.test:8080/x?token=abcdef#frag now",
        "query api-key=qsecret-456 and user alice:pw-secret-123",
        "OpenAI says sk-abcd****wxyz",
    ]:
        cleaned = endpoint.redact(text)
        for secret in (key, urllib.parse.quote(key, safe=""), "pw-secret-123", "qsecret-456", "other-pass",
                       "abcdef", "sk-abcd"):
            assert secret.lower() not in cleaned.lower(), (text, cleaned)
    assert endpoint.redact("see http://bob:other-pass@proxy.test:8080/x?token=abcdef#frag now") == \
        "see http://proxy.test:8080/x now"
    assert key not in repr(endpoint) and "pw-secret" not in repr(endpoint)


async def test_base_url_query_and_userinfo_are_sent_properly() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=completion_body(usage=USAGE))

    endpoint = ApiEndpoint("https://gw.example.test/v1?api-version=2024-10", SecretStr(KEY))
    async with ChatClient(endpoint, transport=httpx.MockTransport(handler)) as client:
        await client.complete(request())
    assert str(seen[0].url) == "https://gw.example.test/v1/chat/completions?api-version=2024-10"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    # No key: the userinfo becomes basic auth (a gateway behind a password), never part of a message.
    endpoint = ApiEndpoint("https://alice:pw-secret-123@gw.example.test/v1", None)
    async with ChatClient(endpoint, transport=httpx.MockTransport(handler)) as client:
        await client.complete(request())
    assert seen[1].headers["authorization"].startswith("Basic ")
    assert seen[1].url.userinfo == b""


async def test_error_messages_never_show_the_base_url_credentials() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    endpoint = ApiEndpoint("http://alice:pw-secret-123@127.0.0.1:9/v1?api-key=qsecret-456", SecretStr(KEY))
    async with ChatClient(endpoint, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TransportError) as info:
            await client.complete(request())
    message = str(info.value)
    assert "http://127.0.0.1:9/v1" in message
    assert "pw-secret" not in message and "qsecret" not in message and "alice" not in message


def test_plain_http_with_a_key_to_another_host_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    assert ApiEndpoint("http://127.0.0.1:8000/v1", SecretStr(KEY)).insecure_warning() is None
    assert ApiEndpoint("http://localhost:8000/v1", SecretStr(KEY)).insecure_warning() is None
    assert ApiEndpoint("http://[::1]:8000/v1", SecretStr(KEY)).insecure_warning() is None
    assert ApiEndpoint("http://10.1.2.3:8000/v1", None).insecure_warning() is None  # no key, nothing to leak
    assert ApiEndpoint("https://api.example.test/v1", SecretStr(KEY)).insecure_warning() is None
    endpoint = ApiEndpoint("http://u:pw-secret-123@gpu-box.internal.test:8000/v1", SecretStr(KEY))
    assert "plain http" in (endpoint.insecure_warning() or "")
    with caplog.at_level(logging.WARNING, logger="copydesk.client"):
        ChatClient(endpoint)
        ChatClient(endpoint)
    warnings = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1 and "http://gpu-box.internal.test:8000/v1" in warnings[0]
    assert "pw-secret" not in warnings[0] and KEY not in warnings[0]


@pytest.mark.parametrize("status", [408, 409, 500, 503])
async def test_chat_and_moderation_agree_on_retryable_statuses(status: int) -> None:
    """One layer maps statuses: 408/409 are server errors (retried) for chat and moderation alike."""
    from copydesk.qc.moderation import OpenAIModerator

    chat_error = await error_for(httpx.Response(status, json={"error": {"message": "try again"}}))
    assert isinstance(chat_error, ServerError) and chat_error.retryable

    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(status, json={"error": {"message": "try again"}}, headers={"Retry-After": "0"})
        return httpx.Response(200, json={"results": [{"flagged": False, "categories": {}, "category_scores": {}}]})

    moderator = OpenAIModerator(BASE_URL, SecretStr(KEY), transport=httpx.MockTransport(handler), backoff_initial=0.0)
    result = await moderator.moderate(["text"])
    assert calls == 2 and result.flagged is False


def test_retry_policy_backoff_and_retry_after() -> None:
    policy = RetryPolicy(initial=1.0, max_delay=10.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=99.0) == 10.0
    assert 1.0 <= RetryPolicy(initial=1.0, jitter=0.5).delay(1) <= 1.5


async def test_the_layer_serves_the_batch_api_shapes() -> None:
    """/v1/files (multipart upload), /v1/batches (JSON) and a file's content go through the same
    client: same key, same error mapping, same retries."""
    seen: list[httpx.Request] = []
    failures = {"batches": 1}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        path = req.url.path
        if path == "/v1/files":
            assert req.headers["content-type"].startswith("multipart/form-data")
            assert b'name="purpose"' in req.content and b"batch" in req.content
            assert b'{"custom_id": "a-1"}' in req.content
            return httpx.Response(200, json={"id": "file-in", "object": "file", "purpose": "batch"})
        if path == "/v1/batches":
            if failures["batches"]:
                failures["batches"] -= 1
                return httpx.Response(503, json={"error": {"message": "busy"}}, headers={"Retry-After": "0"})
            body = json.loads(req.content)
            return httpx.Response(200, json={"id": "batch_1", "status": "validating", "input_file_id": body["input_file_id"]})
        if path == "/v1/files/file-out/content":
            return httpx.Response(200, content=b'{"custom_id": "a-1"}\n')
        return httpx.Response(404, json={"error": {"message": "no such thing"}})

    retry = RetryPolicy(max_attempts=3, initial=0.0, jitter=0.0)
    async with make_client(handler) as client:
        uploaded = await client.request_json(
            "POST", "files", data={"purpose": "batch"},
            files={"file": ("in.jsonl", b'{"custom_id": "a-1"}\n', "application/jsonl")}, retry=retry)
        batch = await client.post_json("batches", {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
                                                   "completion_window": "24h"}, retry=retry)
        content = await client.get_bytes("files/file-out/content", retry=retry)
        with pytest.raises(BadRequestError) as info:
            await client.request_json("GET", "batches/missing", retry=retry)
    assert batch == {"id": "batch_1", "status": "validating", "input_file_id": "file-in"}
    assert content == b'{"custom_id": "a-1"}\n'
    assert [r.url.path for r in seen].count("/v1/batches") == 2  # the 503 was retried
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in seen)
    assert info.value.status_code == 404 and "https://api.example.test/v1/batches/missing" in str(info.value)
