"""copydesk's one OpenAI HTTP layer, over `httpx.AsyncClient`.

    ApiEndpoint     where the API is and its key: headers, `describe()` (the URL fit for a
                    message: no userinfo, no query string) and `redact()` (copydesk.redact, the
                    one redaction, to which the endpoint registers its key and credentials)
    ChatClient      `complete()` (chat completions), `list_models()` (/v1/models),
                    `post_json()`/`request_json()` (moderation; /v1/batches, and /v1/files
                    with `files=`) and `get_bytes()` (a file's content); every HTTP error
                    is translated here, once, into copydesk's `ApiError`s
    RetryPolicy     exponential backoff from `initial` seconds with jitter, honouring the
                    server's `Retry-After`/`retry-after-ms`/`x-ratelimit-reset-*`

`complete()` is one attempt: retries, the budget and the limiter live in
`copydesk.calls`, which waits `RetryPolicy.delay()`. The other calls take
`retry=RetryPolicy(...)` and retry on their own (nothing is budgeted there). The transport is injectable,
so unit tests use `httpx.MockTransport` and never the network.

The key is held as a `SecretStr` and only ever read while building the
`Authorization` header and to redact it: no message raised here contains it,
even when a server (or a proxy) echoes it back. A key sent over plain http to
a host other than loopback is logged as a warning once per process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import SecretStr

from copydesk import boundedjson, redact
from copydesk.boundedjson import JsonLimitError
from copydesk.redact import strip_url_secrets
from copydesk.retry import RetryPolicy, parse_duration, retry_after_seconds
from copydesk.errors import (ApiError, AuthenticationError, BadRequestError, InputError, MalformedResponseError,
                             ModelNotFoundError, QuotaExceededError, RateLimitError, ServerError, TransportError,
                             UnusableResponseError)

__all__ = ["ApiEndpoint", "ChatClient", "ChatRequest", "Completion", "CutLine", "RetryPolicy", "Usage",
           "feature_missing", "parse_completion", "parse_duration", "public_url", "retry_after_seconds"]

log = logging.getLogger("copydesk.client")

T = TypeVar("T")



def public_url(url: str) -> str:
    """`url` without userinfo, query string and fragment: what a message may show."""
    return strip_url_secrets(url)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_warned_insecure: set[str] = set()

#: The default of COPYDESK_MAX_ANSWER_BYTES: 1 MiB, far above any answer a stage asks for
#: (max_tokens 600 x 8 bytes = 4.8 KB; even 16,384 x 8 = 128 KiB, plus the JSON around it).
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CutLine:
    """A line of a JSONL answer longer than the client reads: only its first HEAD bytes."""

    head: bytes
    HEAD: ClassVar[int] = 1024


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: `usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the API's prompt cache.
    cached_prompt_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
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
    """An OpenAI-compatible API: its base URL (which may carry `user:password@` and a query
    string, both kept out of every message) and its key."""

    base_url: str
    api_key: SecretStr | None = None

    def __post_init__(self) -> None:
        # Every sink's redaction (copydesk.redact) knows this endpoint's key and credentials.
        redact.register(self._key())
        redact.register_url(self.base_url)

    def __repr__(self) -> str:
        return f"ApiEndpoint(base_url={self.describe()!r}, api_key={'set' if self._key() else None})"

    __str__ = __repr__

    def _key(self) -> str:
        return self.api_key.get_secret_value() if self.api_key is not None else ""

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "copydesk"}  # httpx sets Content-Type per body (JSON, multipart)
        if key := self._key():
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def request_base(self) -> tuple[str, dict[str, str], httpx.BasicAuth | None]:
        """(base URL without userinfo and query, the query's parameters, basic auth from the
        userinfo when there is no key): how the client sends what the base URL carries."""
        url = httpx.URL(self.base_url)
        params = dict(url.params)
        auth = None
        if (url.username or url.password) and not self._key():
            auth = httpx.BasicAuth(url.username, url.password)
        bare = url.copy_with(userinfo=b"", query=None, fragment=None)
        return str(bare).rstrip("/") + "/", params, auth

    def describe(self, path: str = "") -> str:
        """The base URL (and `path` under it) as a message may show it."""
        base = public_url(self.base_url).rstrip("/")
        return f"{base}/{path.lstrip('/')}" if path else base

    def redact(self, text: str) -> str:
        """`text` fit for a message or a log (`copydesk.redact.redact`, which knows this endpoint's
        key and credentials): applied to whatever the server says before it is shortened or quoted."""
        return redact.redact(text)

    def insecure_warning(self) -> str | None:
        """Why sending the key here is unsafe (plain http to a host other than loopback), or None."""
        url = httpx.URL(self.base_url)
        if not self._key() or url.scheme != "http" or is_loopback(url.host):
            return None
        return (
            f"OPENAI_BASE_URL {self.describe()} is plain http to a host other than this machine: "
            "the API key travels unencrypted; use https"
        )

    def warn_if_insecure(self) -> str | None:
        """Log `insecure_warning()` once per process and base URL; returns it the first time."""
        message = self.insecure_warning()
        if message is None or self.describe() in _warned_insecure:
            return None
        _warned_insecure.add(self.describe())
        log.warning("%s", message)
        return message


class ChatClient:
    """The HTTP client of one `ApiEndpoint`: one connection pool, one error translation."""

    def __init__(
        self,
        endpoint: ApiEndpoint,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.endpoint = endpoint
        #: The most bytes read of one answer (decoded); a larger one is cut off and fails the call.
        self.max_answer_bytes = max_answer_bytes
        try:
            endpoint.warn_if_insecure()
            base, params, auth = endpoint.request_base()
        except httpx.InvalidURL as exc:
            raise InputError(f"OPENAI_BASE_URL {endpoint.describe()!r} is not a valid URL ({exc})") from exc
        self._http = httpx.AsyncClient(
            base_url=base,
            params=params or None,
            auth=auth,
            headers=endpoint.headers(),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ChatClient({self.endpoint!r})"

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
            raise await self._error(response, "chat/completions", request.model)
        return parse_completion(response, request.model, redact=self.endpoint.redact)

    async def list_models(self) -> list[str]:
        response = await self._send("GET", "models")
        if response.status_code >= 400:
            raise await self._error(response, "models", None)
        try:
            data = _json(response)
            return sorted(str(item["id"]) for item in data.get("data", []))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(f"{self.endpoint.describe('models')}: unexpected answer") from exc

    async def post_json(self, path: str, payload: dict[str, Any], *, retry: RetryPolicy | None = None) -> Any:
        """POST JSON to any endpoint of the same API (moderation, /batches) and return the
        decoded answer; see `request_json` for `retry`."""
        return await self.request_json("POST", path, json=payload, retry=retry)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        """One request to any endpoint of the same API (`json=`, `files=`/`data=` for a
        multipart upload to /files, `params=`), answered with JSON; returns the decoded body.
        With `retry`, retryable errors (429, 5xx, 408/409, timeouts, dropped connections, a
        body that is not JSON) are retried per the policy; without it, one attempt."""

        async def once() -> Any:
            response = await self._checked(method, path, **kwargs)
            try:
                return _json(response)
            except JsonLimitError as exc:
                raise UnusableResponseError(f"{self.endpoint.describe(path)}: {exc}") from None
            except ValueError as exc:
                raise MalformedResponseError(f"{self.endpoint.describe(path)}: the answer is not JSON") from exc

        return await self._retrying(retry, path, once)

    async def get_lines(self, path: str, *, retry: RetryPolicy | None = None,
                        max_lines: int = 1_000_000) -> list[bytes | CutLine]:
        """GET a JSONL body (a batch's output or error file) read streaming, line by line: each
        line at most `max_answer_bytes` (a longer one is a `CutLine`, its head only: never all in
        memory), at most `max_lines` lines (the rest is not read); see `request_json` for `retry`."""

        async def once() -> list[bytes | CutLine]:
            result = await self._send("GET", path, reader=lambda r, p: self._read_lines(r, p, max_lines))
            if isinstance(result, httpx.Response):  # an error answer
                raise await self._error(result, path, None)
            return result

        return await self._retrying(retry, path, once)

    async def _read_lines(self, response: httpx.Response, path: str, max_lines: int) -> Any:
        if response.status_code >= 400:
            return await self._read_capped(response, path)
        limit = self.max_answer_bytes
        lines: list[bytes | CutLine] = []
        line, cut = bytearray(), False

        def add(part: bytes) -> None:
            nonlocal line, cut
            if not cut and len(line) + len(part) > limit:
                line, cut = bytearray((line + part[:CutLine.HEAD])[:CutLine.HEAD]), True
            elif not cut:
                line += part

        try:
            async for chunk in response.aiter_bytes():
                *done, rest = chunk.split(b"\n")
                for part in done:
                    add(part)
                    lines.append(CutLine(bytes(line)) if cut else bytes(line))
                    line, cut = bytearray(), False
                add(rest)
                if len(lines) >= max_lines:
                    break
        finally:
            await response.aclose()
        if line.strip() or cut:
            lines.append(CutLine(bytes(line)) if cut else bytes(line))
        return lines[:max_lines]

    async def get_bytes(self, path: str, *, retry: RetryPolicy | None = None) -> bytes:
        """GET a raw body (a file's content: /files/{id}/content); see `request_json` for `retry`."""

        async def once() -> bytes:
            return (await self._checked("GET", path)).content

        return await self._retrying(retry, path, once)

    async def _checked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise await self._error(response, path, None)
        return response

    async def _retrying(self, retry: RetryPolicy | None, path: str, once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await once()
            except ApiError as exc:
                if retry is None or not exc.retryable or attempt >= retry.max_attempts:
                    raise
                wait = retry.delay(attempt, exc.retry_after)
                log.info("retrying %s in %.1f s after %s (attempt %d)", self.endpoint.describe(path), wait, exc, attempt)
                await asyncio.sleep(wait)

    async def _send(self, method: str, path: str, *, reader: Callable[..., Awaitable[Any]] | None = None,
                    **kwargs: Any) -> Any:
        """One request; its answer read streaming by `reader` (default `_read_capped`), every
        transport failure (also while reading) mapped to a `TransportError`."""
        where = self.endpoint.describe()
        try:
            request = self._http.build_request(method, path, **kwargs)
            response = await self._http.send(request, stream=True)
            return await (reader or self._read_capped)(response, path)
        # Nothing was sent (so nothing charged) when no connection could be made or taken from the pool.
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransportError(
                f"cannot connect to {where} ({type(exc).__name__}); "
                "check OPENAI_BASE_URL and that the server is running",
                sent=False,
            ) from exc
        except httpx.PoolTimeout as exc:
            raise TransportError(f"no free connection to {where} in time ({type(exc).__name__})", sent=False) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(f"{where} did not answer in time ({type(exc).__name__})", sent=True) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"the connection to {where} failed ({type(exc).__name__})", sent=True) from exc

    async def _read_capped(self, response: httpx.Response, path: str) -> httpx.Response:
        """The answer read streaming, at most `max_answer_bytes` of it (after content decoding):
        a larger body is cut off before it is all in memory and fails the call (not retried)."""
        limit = self.max_answer_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            declared = int(response.headers.get("content-length") or 0)
            if declared <= limit:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
        finally:
            await response.aclose()
        if declared > limit or size > limit:
            raise UnusableResponseError(
                f"{self.endpoint.describe(path)}: the answer (HTTP {response.status_code}) is larger than "
                f"{limit:,} bytes (COPYDESK_MAX_ANSWER_BYTES); it was cut off and not read",
                charged=response.status_code < 400,
            )
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                              request=response.request, extensions=response.extensions)

    async def _error(self, response: httpx.Response, path: str, model: str | None) -> ApiError:
        """The `ApiError` for an HTTP error answer; the one place statuses are mapped."""
        status = response.status_code
        detail = _error_detail(response, self.endpoint.redact)
        retry_after = retry_after_seconds(response.headers)
        where = self.endpoint.describe() if path == "chat/completions" else self.endpoint.describe(path)
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
        if status == 500 and _REQUEST_VALIDATION.search(detail):
            # llama-cpp-python answers a request its schema rejects (a response_format type it does not
            # know) with HTTP 500 "1 validation error ... ('body', ...)": retrying cannot help.
            return BadRequestError(f"{where} rejected the request (HTTP {status}): {detail}", status_code=status)
        if status == 501 or (status >= 500 and _NOT_CONFIGURED.search(detail)):
            # a gateway without that feature set up (LiteLLM: 500 "files_settings is not set", "Missing
            # credentials" for a moderation model it lacks): like a 404, retrying cannot help
            return BadRequestError(f"{where} is not set up for this (HTTP {status}): {detail}", status_code=status)
        if status >= 500 or status in (408, 409):
            return ServerError(f"{where} failed (HTTP {status}): {detail}", status_code=status, retry_after=retry_after)
        return BadRequestError(f"{where} rejected the request (HTTP {status}): {detail}", status_code=status)


# ------------------------------------------------------------------------------ parsing

#: A 5xx whose message says the feature is not configured on this server (a gateway's way of a 404).
_NOT_CONFIGURED = re.compile(
    r"\bnot (?:configured|set up|set|enabled|supported|implemented)\b|\bmissing credentials\b"
    r"|\bno (?:deployments?|models?) (?:configured|available|found)\b|\bnot implemented\b",
    re.IGNORECASE,
)


def feature_missing(exc: ApiError) -> bool:
    """Whether `exc` says the server has no such endpoint or feature: 404, 405, 501, or a 5xx
    saying it is not configured (mapped to a `BadRequestError` by `ChatClient`)."""
    status = exc.status_code
    if status in (404, 405, 501):
        return True
    return status is not None and status >= 500 and not exc.retryable and bool(_NOT_CONFIGURED.search(str(exc)))


#: A request-validation error reported as a 500 (pydantic's wording, as llama-cpp-python's server sends it).
_REQUEST_VALIDATION = re.compile(r"\bvalidation errors?\b.*'loc': \('body'", re.DOTALL)


def _unchanged(text: str) -> str:
    return text


def parse_completion(
    response: httpx.Response, model: str, *, redact: Callable[[str], str] = _unchanged
) -> Completion:
    """The completion in a 200 answer; `redact` cleans the server's text quoted in errors."""
    try:
        data = _json(response)
    except JsonLimitError as exc:
        raise UnusableResponseError(f"the chat-completions answer: {exc}", charged=True) from None
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


def _json(response: httpx.Response) -> Any:
    """The body as JSON, depth-capped (copydesk.boundedjson); the size was capped while reading."""
    return boundedjson.loads(response.content)


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
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    try:
        cached = min(max(int(cached or 0), 0), prompt)
    except (TypeError, ValueError):
        cached = 0
    return Usage(prompt, completion, max(total, prompt + completion), cached)


def _error_detail(response: httpx.Response, redact: Callable[[str], str]) -> str:
    """The server's own explanation of an error, redacted before it is shortened
    (so that no part of the key survives a cut)."""
    try:
        data = _json(response)
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or redact(json.dumps(error))[:300]
        else:
            message = str(error)
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    return redact(str(message)[:4000])[:500]


def _is_model_error(detail: str, model: str) -> bool:
    lowered = detail.lower()
    return "model" in lowered or model.lower() in lowered
