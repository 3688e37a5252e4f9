"""Moderation: OpenAI's moderation endpoint, or a local classifier, one result shape.

Both moderators answer `await moderate(texts) -> ModerationResult`, whose
`to_openai_shape()` is the `{flagged, categories, category_scores}` object of an
OpenAI moderation result, with OpenAI's 13 categories.

- `OpenAIModerator` posts to `{base_url}/moderations` (model
  `omni-moderation-latest`), splitting long texts into chunks of a few thousand
  characters and aggregating the chunks: flagged if any chunk is, each category
  flagged if any chunk flags it, each score the maximum over the chunks.
- `LocalModerator` runs `alt-profanity-check` (a scikit-learn model shipped in
  the package) on every sentence. It is a profanity/insult detector trained on
  English, so it speaks for one category only: `harassment` gets the highest
  sentence score, every other category stays 0.0 and is listed as not assessed
  (`assessed_categories`). It does not read Chinese (or any non-English text):
  the gate treats a non-English article moderated only locally as not moderated.

`choose_moderator` picks one from the spec's `qc.moderation.provider`; the run's preflight
(copydesk.preflight) probes the endpoint once and applies `qc.moderation.on_unavailable`
(`UnavailableModerator` for `review`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from pydantic import Field, SecretStr

from copydesk.client import ApiEndpoint, ChatClient, RetryPolicy, feature_missing
from copydesk.errors import (
    ApiError,
    BadRequestError,
    InputError,
    MalformedResponseError,
    ModelNotFoundError,
    ServiceError,
)
from copydesk.qc.check import Policy
from copydesk.text import plain_text, split_sentences

log = logging.getLogger("copydesk.qc.moderation")



class ModerationPolicy(Policy):
    enabled: bool = True
    provider: Literal["auto", "openai", "local"] = "auto"
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    #: What a run does when the preflight finds the moderation endpoint unavailable (copydesk.preflight):
    #: fail (exit 2 before any chat call), local (the local classifier), review (every article held for
    #: review). Unset: local for provider auto, fail for provider openai.
    on_unavailable: Literal["fail", "local", "review"] | None = None

    @property
    def unavailable_action(self) -> str:
        """`on_unavailable`, or its default for the provider."""
        if self.on_unavailable is not None:
            return self.on_unavailable
        return "fail" if self.provider == "openai" else "local"

OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

#: The only category the local profanity classifier can speak for.
LOCAL_CATEGORIES: tuple[str, ...] = ("harassment",)
#: Flagged passages kept in a result (the report needs examples, not the whole article).
MAX_FLAGGED_EXCERPTS = 20
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    provider: str
    #: The sentences (local) or chunk excerpts (OpenAI) that were flagged.
    flagged_sentences: list[str] = field(default_factory=list)
    #: Categories the provider actually scored; a 0.0 elsewhere means "not seen", not "clean".
    assessed_categories: tuple[str, ...] = OPENAI_CATEGORIES

    def to_openai_shape(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "categories": dict(self.categories),
            "category_scores": dict(self.category_scores),
        }

    @property
    def flagged_categories(self) -> list[str]:
        return [name for name, hit in self.categories.items() if hit]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the OpenAI shape plus provider, excerpts and what was not assessed."""
        return {
            **self.to_openai_shape(),
            "provider": self.provider,
            "flagged_sentences": list(self.flagged_sentences),
            "not_assessed": [c for c in OPENAI_CATEGORIES if c not in self.assessed_categories],
        }


class Moderator(Protocol):
    #: Provider name written into results and reports.
    name: str
    #: Language codes (primary subtag) the moderator can read; None means any.
    languages: frozenset[str] | None

    async def moderate(self, texts: Sequence[str]) -> ModerationResult: ...


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


# --------------------------------------------------------------------------- local


_model_lock = threading.Lock()
_predict_prob: Callable[[list[str]], Any] | None = None
_load_seconds: float | None = None


def _load_local_model() -> Callable[[list[str]], Any]:
    """Import alt-profanity-check (which unpickles its model on import) once per process."""
    global _predict_prob, _load_seconds
    if _predict_prob is None:
        with _model_lock:
            if _predict_prob is None:
                started = time.perf_counter()
                try:
                    from profanity_check import predict_prob
                except Exception as exc:  # ImportError, or a model that no longer unpickles
                    raise ServiceError(
                        f"the local moderation classifier (alt-profanity-check) cannot load: {exc}"
                    ) from exc
                _load_seconds = time.perf_counter() - started
                _predict_prob = predict_prob
    return _predict_prob


def local_model_load_seconds() -> float | None:
    """Seconds the first load of the local model took in this process (None: not loaded)."""
    return _load_seconds


class LocalModerator:
    """Per-sentence profanity classifier; flags when any sentence scores ≥ threshold."""

    name = "local"
    languages: frozenset[str] | None = frozenset({"en"})

    def __init__(self, threshold: float = 0.8) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {threshold}")
        self.threshold = threshold

    def load(self) -> float:
        """Load the model now (it otherwise loads on first use); returns the load time in seconds."""
        _load_local_model()
        return _load_seconds or 0.0

    def sentence_scores(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(sentence, profanity probability) for every sentence of the Markdown texts."""
        sentences = [s for text in texts for s in split_sentences(plain_text(text))]
        if not sentences:
            return []
        predict_prob = _load_local_model()
        return [(s, float(p)) for s, p in zip(sentences, predict_prob(sentences), strict=True)]

    def classify(self, texts: Sequence[str]) -> ModerationResult:
        """Synchronous moderation (CPU-bound; `moderate` runs this in a worker thread)."""
        scored = self.sentence_scores(texts)
        top = max((p for _, p in scored), default=0.0)
        hits = [s for s, p in scored if p >= self.threshold]
        scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
        categories = dict.fromkeys(OPENAI_CATEGORIES, False)
        scores["harassment"] = round(top, 6)
        categories["harassment"] = bool(hits)
        return ModerationResult(
            flagged=bool(hits),
            categories=categories,
            category_scores=scores,
            provider=self.name,
            flagged_sentences=[_excerpt(s) for s in hits[:MAX_FLAGGED_EXCERPTS]],
            assessed_categories=LOCAL_CATEGORIES,
        )

    async def moderate(self, texts: Sequence[str]) -> ModerationResult:
        return await asyncio.to_thread(self.classify, list(texts))


# --------------------------------------------------------------------------- OpenAI


#: Characters per input sent to the moderation endpoint.
CHUNK_CHARS = 4000
#: Inputs per request.
INPUTS_PER_REQUEST = 16

def chunk_text(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """Split text into pieces of at most max_chars, at paragraph, line or sentence ends."""
    text = text.strip()
    if not text:
        return []
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        units = [block] if len(block) <= max_chars else split_sentences(block)
        for unit in units:
            while len(unit) > max_chars:  # one enormous "sentence": cut it
                pieces.append(unit[:max_chars])
                unit = unit[max_chars:]
            pieces.append(unit)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not piece.strip():
            continue
        joined = f"{current}\n\n{piece}" if current else piece
        if len(joined) <= max_chars:
            current = joined
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


class OpenAIModerator:
    """The moderation endpoint of an OpenAI(-compatible) API, through copydesk's one HTTP
    layer (`copydesk.client.ChatClient.post_json`): the same headers, redaction, error
    mapping and Retry-After handling as chat completions.

    429, 5xx, 408/409, transport errors and unreadable answers are retried up to
    `max_attempts` with exponential backoff (`backoff_initial` seconds, doubling;
    `Retry-After` honoured up to `backoff_max`); other 4xx are not. A 404 means the
    server has no moderation endpoint (`ModelNotFoundError`, status 404).
    """

    name = "openai"
    languages: frozenset[str] | None = None

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        transport: httpx.AsyncBaseTransport | None = None,
        model: str = "omni-moderation-latest",
        *,
        timeout: float = 60.0,
        max_attempts: int = 3,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        chunk_chars: int = CHUNK_CHARS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = ApiEndpoint(self.base_url, api_key)
        self._transport = transport
        self.model = model
        self.timeout = timeout
        self.retry = RetryPolicy(
            max_attempts=max(1, max_attempts), initial=backoff_initial, max_delay=backoff_max, jitter=0.0
        )
        self.chunk_chars = chunk_chars

    def __repr__(self) -> str:
        return f"OpenAIModerator(base_url={self.endpoint.describe()!r}, model={self.model!r})"

    async def _post(self, client: ChatClient, inputs: list[str]) -> list[dict[str, Any]]:
        try:
            body = await client.post_json("moderations", {"model": self.model, "input": inputs}, retry=self.retry)
        except BadRequestError as exc:
            if exc.status_code != 404:
                raise
            raise ModelNotFoundError(
                f"{exc} (an OpenAI-compatible server may not offer moderation; set qc.moderation.provider: local)",
                model=self.model,
            ) from exc
        return self._parse(body, len(inputs))

    def _parse(self, body: Any, expected: int) -> list[dict[str, Any]]:
        where = f"the moderation endpoint {self.endpoint.describe('moderations')}"
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != expected:
            raise MalformedResponseError(
                f"{where} answered without one result per input "
                f"(expected {expected}, got {len(results) if isinstance(results, list) else 'none'})"
            )
        for result in results:
            if (
                not isinstance(result, dict)
                or not isinstance(result.get("flagged"), bool)
                or not isinstance(result.get("categories"), dict)
                or not isinstance(result.get("category_scores"), dict)
            ):
                raise MalformedResponseError(f"{where} answered with a result lacking flagged/categories/scores")
        return results

    async def probe(self, attempts: int = 2) -> None:
        """One tiny input, one request (a second after a transient failure): the preflight
        (copydesk.preflight). Raises the endpoint's `ApiError` when it cannot moderate."""
        client = ChatClient(
            self.endpoint, timeout=min(self.timeout, 30.0), connect_timeout=min(self.timeout, 10.0),
            transport=self._transport,
        )
        retry = RetryPolicy(max_attempts=max(1, attempts), initial=0.5, max_delay=2.0, jitter=0.0)
        async with client:
            body = await client.post_json("moderations", {"model": self.model, "input": ["preflight"]}, retry=retry)
        self._parse(body, 1)

    # -- the call ---------------------------------------------------------------

    async def moderate(self, texts: Sequence[str]) -> ModerationResult:
        chunks = [chunk for text in texts for chunk in chunk_text(text, self.chunk_chars)]
        categories = dict.fromkeys(OPENAI_CATEGORIES, False)
        scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
        flagged_excerpts: list[str] = []
        if not chunks:
            return ModerationResult(False, categories, scores, self.name, [])
        client = ChatClient(
            self.endpoint, timeout=self.timeout, connect_timeout=min(self.timeout, 10.0), transport=self._transport
        )
        async with client:
            # One request per batch, one after another: an article is one or two batches,
            # and a failure then leaves no request running behind it.
            batches = [chunks[i : i + INPUTS_PER_REQUEST] for i in range(0, len(chunks), INPUTS_PER_REQUEST)]
            answers = [await self._post(client, batch) for batch in batches]
        flagged = False
        for batch, results in zip(batches, answers, strict=True):
            for chunk, result in zip(batch, results, strict=True):
                if result["flagged"]:
                    flagged = True
                    if len(flagged_excerpts) < MAX_FLAGGED_EXCERPTS:
                        flagged_excerpts.append(_excerpt(chunk))
                for name, hit in result["categories"].items():
                    categories[name] = categories.get(name, False) or bool(hit)
                for name, score in result["category_scores"].items():
                    try:
                        value = float(score)
                    except (TypeError, ValueError):
                        continue
                    scores[name] = max(scores.get(name, 0.0), value)
        return ModerationResult(flagged, categories, scores, self.name, flagged_excerpts)


# --------------------------------------------------------------------------- choice


class EndpointOrLocalModerator:
    """`provider: auto` with a key: OpenAI's moderation endpoint, and the local classifier
    for the rest of the run when the server has no such endpoint (404/405: vLLM, Ollama,
    llama.cpp and many gateways offer chat completions only). Any other failure of the
    endpoint is raised, so the article is held for review rather than judged locally."""

    def __init__(self, primary: OpenAIModerator, fallback: LocalModerator) -> None:
        self.primary = primary
        self.fallback = fallback
        self.using_fallback = False

    @property
    def name(self) -> str:
        return self.fallback.name if self.using_fallback else self.primary.name

    @property
    def languages(self) -> frozenset[str] | None:
        return self.fallback.languages if self.using_fallback else self.primary.languages

    async def moderate(self, texts: Sequence[str]) -> ModerationResult:
        if not self.using_fallback:
            try:
                return await self.primary.moderate(texts)
            except ApiError as exc:
                if not feature_missing(exc):
                    raise
                self.using_fallback = True
                log.warning(
                    "the API has no moderation endpoint (%s); moderating with the local classifier instead "
                    "(set qc.moderation.provider to silence this)", exc
                )
        return await self.fallback.moderate(texts)


class UnavailableModerator:
    """`qc.moderation.on_unavailable: review`: the endpoint failed the preflight, so no article is
    sent to it; each one's moderation 'could not run' at once, with the preflight's reason (the
    gate then holds the article for review)."""

    languages: frozenset[str] | None = None

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    async def moderate(self, texts: Sequence[str]) -> ModerationResult:
        raise ServiceError(self.reason)


def choose_moderator(
    policy: ModerationPolicy,
    *,
    api_key: SecretStr | None,
    base_url: str | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Moderator:
    """The moderator `qc.moderation.provider` asks for.

    auto:   OpenAI's endpoint when an API key is configured (the local classifier if that
            server turns out to have no moderation endpoint), otherwise the local classifier.
    openai: OpenAI's endpoint; an error (InputError) when no key is configured.
    local:  the local classifier, whatever the environment says.
    A key without a base URL means https://api.openai.com/v1.
    """
    has_key = api_key is not None and bool(api_key.get_secret_value())
    if policy.provider == "local" or (policy.provider == "auto" and not has_key):
        return LocalModerator(policy.threshold)
    if not has_key:
        raise InputError(
            "qc.moderation.provider is 'openai' but OPENAI_API_KEY is not set; "
            "set the key or use provider: local (or auto)"
        )
    from copydesk.settings import OPENAI_DEFAULT_BASE_URL

    endpoint = OpenAIModerator(base_url or OPENAI_DEFAULT_BASE_URL, api_key, transport=transport)
    if policy.provider == "auto":
        return EndpointOrLocalModerator(endpoint, LocalModerator(policy.threshold))
    return endpoint
