"""A small OpenAI chat-completions client over `httpx.AsyncClient`.

One `ChatClient.complete()` call is one HTTP attempt: it returns a `Completion`
or raises one of copydesk's `ApiError`s, translated from httpx at this boundary.
Retries, the budget and the limiter live in `copydesk.calls`. The transport is
injectable, so unit tests use `httpx.MockTransport` and never the network.

The key is held as a `SecretStr` and only ever read while building the
`Authorization` header and to redact it: no message raised here contains it,
even when a server (or a proxy) echoes it back in its answer.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from copydesk.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    TransportError,
)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


@dataclass(frozen=True)
class ChatRequest:
    """What one stage sends: the model, the messages and exactly the stage's own values."""

    model: str
    messages: tuple[dict[str, str], ...]
    params: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"model": self.model, "messages": list(self.messages), **self.params}

    @property
    def max_tokens(self) -> int:
        return int(self.params["max_tokens"])

    def with_model(self, model: str) -> ChatRequest:
        return ChatRequest(model=model, messages=self.messages, params=self.params)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    #: None when the API sent no usable `usage`; the caller then counts its upper bound.
    usage: Usage | None
    model: str


@dataclass(frozen=True)
class ApiEndpoint:
    base_url: str
    api_key: SecretStr | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "copydesk"}
        if self.api_key is not None and self.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def describe(self) -> str:
        return self.base_url

    def redact(self, text: str) -> str:
        """`text` with every occurrence of the key replaced by "[redacted]"; applied to
        whatever the server says before it goes into an exception message."""
        key = self.api_key.get_secret_value() if self.api_key is not None else ""
        return text.replace(key, "[redacted]") if key else text


class ChatClient:
    def __init__(
        self,
        endpoint: ApiEndpoint,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url.rstrip("/") + "/",
            headers=endpoint.headers(),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- calls ------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        response = await self._send("POST", "chat/completions", json=request.payload())
        if response.status_code >= 400:
            raise await self._error(response, request.model)
        return parse_completion(response, request.model, redact=self.endpoint.redact)

    async def list_models(self) -> list[str]:
        response = await self._send("GET", "models")
        if response.status_code >= 400:
            raise await self._error(response, None)
        try:
            data = response.json()
            return sorted(str(item["id"]) for item in data.get("data", []))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(f"{self.endpoint.describe()}/models: unexpected answer") from exc

    async def post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST any JSON endpoint of the same API (the moderation endpoint uses it)."""
        response = await self._send("POST", path, json=payload)
        if response.status_code >= 400:
            raise await self._error(response, None)
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedResponseError(f"{self.endpoint.describe()}/{path}: the answer is not JSON") from exc

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        # Nothing was sent (so nothing charged) when no connection could be made or taken from the pool.
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransportError(
                f"cannot connect to {self.endpoint.describe()} ({type(exc).__name__}); "
                "check OPENAI_BASE_URL and that the server is running",
                sent=False,
            ) from exc
        except httpx.PoolTimeout as exc:
            raise TransportError(
                f"no free connection to {self.endpoint.describe()} in time ({type(exc).__name__})", sent=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"{self.endpoint.describe()} did not answer in time ({type(exc).__name__})", sent=True
            ) from exc
        except httpx.TransportError as exc:
            raise TransportError(
                f"the connection to {self.endpoint.describe()} failed ({type(exc).__name__})", sent=True
            ) from exc

    async def _error(self, response: httpx.Response, model: str | None) -> ApiError:
        status = response.status_code
        detail = _error_detail(response, self.endpoint.redact)
        retry_after = retry_after_seconds(response.headers)
        where = self.endpoint.describe()
        if status in (401, 403):
            return AuthenticationError(
                f"{where} refused the credentials (HTTP {status}: {detail}). "
                "Check OPENAI_API_KEY (and OPENAI_BASE_URL); the key is not shown here.",
                status_code=status,
            )
        if status == 404 and model is not None and _is_model_error(detail, model):
            available: list[str] = []
            try:
                available = await self.list_models()
            except ApiError:
                pass
            offered = f"; the server offers: {self.endpoint.redact(', '.join(available))}" if available else ""
            return ModelNotFoundError(
                f"model {model!r} is not available at {where} ({detail}){offered}",
                model=model,
                available=available,
            )
        if status == 429 and "insufficient_quota" in response.text:
            return QuotaExceededError(
                f"{where} says the account is out of quota (HTTP 429 insufficient_quota: {detail}); "
                "retrying cannot help: add credit or use another key",
                status_code=status,
            )
        if status == 429:
            return RateLimitError(f"rate limited by {where}: {detail}", status_code=status, retry_after=retry_after)
        if status >= 500 or status in (408, 409):
            return ServerError(f"{where} failed (HTTP {status}): {detail}", status_code=status, retry_after=retry_after)
        return BadRequestError(f"{where} rejected the request (HTTP {status}): {detail}", status_code=status)


# ------------------------------------------------------------------------------ parsing


def _unchanged(text: str) -> str:
    return text


def parse_completion(
    response: httpx.Response, model: str, *, redact: Callable[[str], str] = _unchanged
) -> Completion:
    """The completion in a 200 answer; `redact` cleans the server's text quoted in errors."""
    try:
        data = response.json()
    except ValueError as exc:
        raise MalformedResponseError(
            f"the chat-completions answer is not JSON: {redact(response.text)[:120]!r}", charged=True
        ) from exc
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        if text is None:
            text = choice.get("text", "")
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        finish_reason = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MalformedResponseError(
            f"the chat-completions answer has no usable choices[0].message.content: {redact(str(data))[:120]!r}",
            charged=True,
        ) from exc
    return Completion(
        text=text, finish_reason=finish_reason, usage=_parse_usage(data.get("usage")), model=str(data.get("model") or model)
    )


def _parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens", 0) or 0)
        completion = int(raw.get("completion_tokens", 0) or 0)
        total = raw.get("total_tokens")
        total = int(total) if total is not None else prompt + completion
    except (TypeError, ValueError):
        return None
    if min(prompt, completion, total) < 0:
        return None
    return Usage(prompt, completion, max(total, prompt + completion))


def _error_detail(response: httpx.Response, redact: Callable[[str], str]) -> str:
    """The server's own explanation of an error, redacted before it is shortened
    (so that no part of the key survives a cut)."""
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or redact(json.dumps(error))[:300]
        else:
            message = str(error)
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    return redact(str(message))[:500]


def _is_model_error(detail: str, model: str) -> bool:
    lowered = detail.lower()
    return "model" in lowered or model.lower() in lowered


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def retry_after_seconds(headers: httpx.Headers | dict[str, str], now: float | None = None) -> float | None:
    """How long the server asked us to wait: `Retry-After` (seconds or an HTTP date),
    `retry-after-ms`, or OpenAI's `x-ratelimit-reset-requests/-tokens` ("1s", "6m0s", "20ms")."""
    headers = httpx.Headers(headers)
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - (now if now is not None else time.time()))
            except (TypeError, ValueError, IndexError):
                pass
    resets = [
        parsed
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (raw := headers.get(name)) and (parsed := parse_duration(raw)) is not None
    ]
    return max(resets) if resets else None


def parse_duration(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000
