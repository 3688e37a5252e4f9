"""Moderation: the real local classifier (alt-profanity-check) and the OpenAI endpoint over MockTransport."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr

from copydesk.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    InputError,
    MalformedResponseError,
    ModelNotFoundError,
    ServerError,
    TransportError,
)
from copydesk.qc.moderation import (
    ModerationPolicy,
    OPENAI_CATEGORIES,
    LocalModerator,
    ModerationResult,
    OpenAIModerator,
    EndpointOrLocalModerator,
    choose_moderator,
    chunk_text,
    local_model_load_seconds,
)

CLEAN_PROSE = """\
# Scheduling retries in Prefect

## Why retries matter

A flaky network call should not fail a whole pipeline. Prefect lets a task declare
how many times it is retried and how long it waits between attempts.

## Configuring backoff

Start with a delay of one second and double it on every attempt. Cap the delay so
that a long outage does not stall the run for hours. Keep the API key in the
environment, never in the source code, and rotate it every ninety days.

## Killing stuck workers

When a worker hangs, send SIGTERM first and SIGKILL only after a grace period, so
that cleanup handlers can run and temporary files are removed.
"""

ABUSIVE = [
    "You are a stupid idiot and I hate you.",
    "Shut up, you worthless moron.",
    "I will kill you and your whole family.",
]

ZH_TEXT = "ChatGPT API 是 OpenAI 提供的核心服务接口。开发者可以通过 HTTP 请求调用模型！你准备好了吗？当然。"

KEY = "sk-test-THIS-KEY-MUST-NEVER-APPEAR-0123456789"


# --------------------------------------------------------------------------- local classifier


@pytest.fixture(scope="module")
def local() -> LocalModerator:
    moderator = LocalModerator(threshold=0.8)
    moderator.load()
    return moderator


def test_model_loads_once_and_reports_its_load_time(local: LocalModerator) -> None:
    seconds = local_model_load_seconds()
    assert seconds is not None and seconds > 0
    assert local.load() == seconds  # a second load is the cached one


async def test_clean_technical_prose_is_not_flagged(local: LocalModerator) -> None:
    result = await local.moderate([CLEAN_PROSE])
    assert result.flagged is False
    assert not any(result.categories.values())
    assert result.category_scores["harassment"] < 0.5
    assert result.flagged_sentences == []
    assert result.provider == "local"


@pytest.mark.parametrize("sentence", ABUSIVE)
async def test_insults_and_threats_are_flagged_as_harassment(local: LocalModerator, sentence: str) -> None:
    text = CLEAN_PROSE + "\n" + sentence + " The build passed on the second attempt.\n"
    result = await local.moderate([text])
    assert result.flagged is True
    assert result.categories["harassment"] is True
    assert result.category_scores["harassment"] >= 0.8
    assert result.flagged_sentences == [sentence]


def test_hell_of_a_job_is_not_flagged_at_the_default_threshold(local: LocalModerator) -> None:
    text = (
        "The team did a hell of a job migrating the database without downtime. "
        "We did a hell of a job on this release."
    )
    scores = dict(local.sentence_scores([text]))
    # Measured 0.58 and 0.79: below 0.8, but the short sentence only just.
    assert all(score < 0.8 for score in scores.values()), scores
    assert local.classify([text]).flagged is False
    assert LocalModerator(threshold=0.5).classify([text]).flagged is True


def test_threshold_decides(local: LocalModerator) -> None:
    threat = "I will kill you and your whole family."  # measured 0.87
    assert LocalModerator(threshold=0.8).classify([threat]).flagged is True
    assert LocalModerator(threshold=0.95).classify([threat]).flagged is False
    with pytest.raises(ValueError):
        LocalModerator(threshold=1.5)


def test_only_harassment_is_scored_and_the_rest_is_declared_not_assessed(local: LocalModerator) -> None:
    result = local.classify([ABUSIVE[0]])
    assert set(result.categories) == set(OPENAI_CATEGORIES) and len(OPENAI_CATEGORIES) == 13
    assert set(result.category_scores) == set(OPENAI_CATEGORIES)
    assert all(result.category_scores[c] == 0.0 for c in OPENAI_CATEGORIES if c != "harassment")
    assert result.assessed_categories == ("harassment",)
    assert len(result.to_dict()["not_assessed"]) == 12
    assert set(result.to_openai_shape()) == {"flagged", "categories", "category_scores"}
    json.dumps(result.to_dict())


def test_scores_each_sentence_including_chinese_punctuation(local: LocalModerator) -> None:
    scored = local.sentence_scores([ZH_TEXT])
    assert [s for s, _ in scored] == [
        "ChatGPT API 是 OpenAI 提供的核心服务接口。",
        "开发者可以通过 HTTP 请求调用模型！",
        "你准备好了吗？",
        "当然。",
    ]
    result = local.classify([ZH_TEXT])
    assert result.flagged is False


def test_empty_text_is_not_flagged(local: LocalModerator) -> None:
    result = local.classify(["", "   \n"])
    assert result.flagged is False and result.category_scores["harassment"] == 0.0


async def test_concurrent_use_gives_the_same_answers(local: LocalModerator) -> None:
    texts = [CLEAN_PROSE, ABUSIVE[1]] * 8
    results = await asyncio.gather(*(local.moderate([t]) for t in texts))
    assert [r.flagged for r in results] == [False, True] * 8


# --------------------------------------------------------------------------- OpenAI endpoint


def _result(flagged: bool = False, scores: dict[str, float] | None = None) -> dict:
    """One result of OpenAI's moderation response."""
    category_scores = {c: 0.0001 for c in OPENAI_CATEGORIES} | (scores or {})
    return {
        "flagged": flagged,
        "categories": {c: category_scores[c] >= 0.5 for c in OPENAI_CATEGORIES},
        "category_scores": category_scores,
        "category_applied_input_types": {c: ["text"] for c in OPENAI_CATEGORIES},
    }


def _moderator(handler, **kwargs) -> OpenAIModerator:
    kwargs.setdefault("backoff_initial", 0.0)
    return OpenAIModerator(
        "http://moderation.test/v1", SecretStr(KEY), transport=httpx.MockTransport(handler), **kwargs
    )


async def test_openai_request_and_response_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        results = [_result(False) for _ in body["input"]]
        return httpx.Response(200, json={"id": "modr-1", "model": "omni-moderation-2024-09-26", "results": results})

    result = await _moderator(handler).moderate(["A clean paragraph about retries."])
    assert result.flagged is False
    assert result.provider == "openai"
    assert result.assessed_categories == OPENAI_CATEGORIES
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://moderation.test/v1/moderations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "omni-moderation-latest",
        "input": ["A clean paragraph about retries."],
    }


async def test_openai_aggregates_over_chunks() -> None:
    requests: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["input"]
        requests.append(inputs)
        results = [
            _result(True, {"violence": 0.93}) if "I will kill you" in text else _result(False, {"harassment": 0.2})
            for text in inputs
        ]
        return httpx.Response(200, json={"id": "modr-2", "model": "omni-moderation-latest", "results": results})

    paragraph = "Retries start at one second and double each time. " * 20  # ~1,000 characters
    text = "\n\n".join([paragraph] * 9 + ["I will kill you."] + [paragraph] * 30)
    moderator = _moderator(handler, chunk_chars=2000)
    result = await moderator.moderate([text])

    sent = [chunk for batch in requests for chunk in batch]
    assert len(sent) > 16 and len(requests) >= 2  # several chunks, several requests
    assert all(len(chunk) <= 2000 for chunk in sent)
    assert sum(chunk.count("Retries start") for chunk in sent) == 39 * 20  # nothing lost, nothing doubled
    assert result.flagged is True
    assert result.categories["violence"] is True
    assert result.category_scores["violence"] == pytest.approx(0.93)
    assert result.category_scores["harassment"] == pytest.approx(0.2)
    # OpenAI scores whole chunks: the excerpt is the start of the flagged chunk.
    (flagged_chunk,) = [chunk for chunk in sent if "I will kill you." in chunk]
    (excerpt,) = result.flagged_sentences
    assert " ".join(flagged_chunk.split()).startswith(excerpt.rstrip("…"))


async def test_openai_401_is_an_authentication_error_without_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}},
        )

    with pytest.raises(AuthenticationError) as info:
        await _moderator(handler).moderate(["text"])
    assert info.value.status_code == 401
    assert KEY not in str(info.value) and "sk-" not in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value)
    assert KEY not in repr(_moderator(handler))


async def test_openai_400_message_is_scrubbed_of_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": f"bad input for key {KEY[:12]}**** and {KEY}"}})

    with pytest.raises(BadRequestError) as info:
        await _moderator(handler).moderate(["text"])
    assert KEY not in str(info.value) and KEY[:12] not in str(info.value)


async def test_openai_retries_429_then_succeeds() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json={"id": "m", "model": "m", "results": [_result()]})

    result = await _moderator(handler, max_attempts=3).moderate(["text"])
    assert calls == 3 and result.flagged is False


async def test_openai_persistent_5xx_is_a_server_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="upstream unavailable")

    with pytest.raises(ServerError):
        await _moderator(handler, max_attempts=2).moderate(["text"])
    assert calls == 2


async def test_openai_404_means_no_moderation_here() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"message": "Not Found"}})

    with pytest.raises(ModelNotFoundError) as info:
        await _moderator(handler).moderate(["text"])
    assert "provider: local" in str(info.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, json={"id": "m", "model": "m", "results": []}),
        httpx.Response(200, json={"id": "m", "model": "m", "results": [{"flagged": "no"}]}),
    ],
)
async def test_openai_malformed_answers(response: httpx.Response) -> None:
    with pytest.raises(MalformedResponseError):
        await _moderator(lambda request: response).moderate(["text"])


async def test_openai_transport_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError) as info:
        await _moderator(handler, max_attempts=2).moderate(["text"])
    assert KEY not in str(info.value)


async def test_openai_empty_input_makes_no_call() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover - must not be called
        raise AssertionError("no request expected")

    result = await _moderator(handler).moderate(["", "  "])
    assert result.flagged is False


def test_chunk_text_keeps_everything_within_the_limit() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(30))
    chunks = chunk_text(text, 1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert "".join(chunks).split() == text.split()
    long_sentence = "x" * 2500
    assert [len(c) for c in chunk_text(long_sentence, 1000)] == [1000, 1000, 500]
    assert chunk_text("short", 1000) == ["short"]
    assert chunk_text("   ", 1000) == []


# --------------------------------------------------------------------------- choosing


def test_choose_moderator() -> None:
    key = SecretStr(KEY)
    auto = ModerationPolicy()
    chosen = choose_moderator(auto, api_key=key, base_url=None)
    assert isinstance(chosen, EndpointOrLocalModerator)
    assert chosen.primary.base_url == "https://api.openai.com/v1" and chosen.name == "openai"
    chosen = choose_moderator(auto, api_key=key, base_url="http://127.0.0.1:9/v1/")
    assert isinstance(chosen, EndpointOrLocalModerator) and chosen.primary.base_url == "http://127.0.0.1:9/v1"

    local = choose_moderator(ModerationPolicy(threshold=0.7), api_key=None, base_url="http://127.0.0.1:9/v1")
    assert isinstance(local, LocalModerator) and local.threshold == 0.7
    assert isinstance(choose_moderator(auto, api_key=SecretStr(""), base_url=None), LocalModerator)
    assert isinstance(choose_moderator(ModerationPolicy(provider="local"), api_key=key, base_url=None), LocalModerator)
    assert isinstance(
        choose_moderator(ModerationPolicy(provider="openai"), api_key=key, base_url=None), OpenAIModerator
    )
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        choose_moderator(ModerationPolicy(provider="openai"), api_key=None, base_url=None)


async def test_auto_falls_back_to_the_local_classifier_when_the_server_has_no_endpoint() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(404, json={"detail": "Not Found"})

    endpoint = OpenAIModerator("http://moderation.test/v1", SecretStr(KEY), transport=httpx.MockTransport(handler))
    moderator = EndpointOrLocalModerator(endpoint, LocalModerator(0.8))
    result = await moderator.moderate(["You are a worthless idiot and I will hurt you."])
    assert result.flagged and result.provider == "local"
    assert moderator.name == "local" and moderator.languages == frozenset({"en"})
    clean = await moderator.moderate(["Unit tests make refactoring safer."])
    assert not clean.flagged
    assert calls == ["/v1/moderations"]  # the endpoint is not asked again once it is known to be missing


async def test_auto_does_not_fall_back_on_other_endpoint_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad input"}})

    endpoint = OpenAIModerator("http://moderation.test/v1", SecretStr(KEY), transport=httpx.MockTransport(handler))
    moderator = EndpointOrLocalModerator(endpoint, LocalModerator(0.8))
    with pytest.raises(ApiError):
        await moderator.moderate(["Some text."])
    assert not moderator.using_fallback


def test_result_is_frozen() -> None:
    result = ModerationResult(False, {}, {}, "local", [])
    with pytest.raises(AttributeError):
        result.flagged = True  # type: ignore[misc]
