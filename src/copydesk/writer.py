"""Writes one article: title → outline → sections (concurrently) → extras (in order), through the gateway.

The extra stages (`stages.extras`) are asked one after the other, so that in batch mode each
is its own batch. Their answers are cleaned and made inert (`copydesk.postprocess`); a required
extra that comes back empty or refused holds the article (`Article.holds`).

A failure never escapes: the article ends `incomplete` with the reason and the
text it has so far. Whether the run as a whole must stop (bad credentials, a
missing model, the budget) is the gateway's and the budget's to say.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from copydesk import events
from copydesk.article import Article, Section
from copydesk.callplan import Call, CallPlan, TopicCalls
from copydesk.calls import CallGateway, CallSite
from copydesk.errors import ApiError, BadRequestError, BudgetExhausted, CopydeskError
from copydesk.postprocess import (
    MAX_TITLE_CHARS,
    clean_extra_text,
    clean_section,
    clean_title,
    parse_list,
    parse_outline,
)
from copydesk.prompts import PromptLibrary
from copydesk.qc.refusal import refusal_findings
from copydesk.qc.title import title_cut_off
from copydesk.spec import ExtraStage, PipelineSpec
from copydesk.text import truncate
from copydesk.store import call_key

log = logging.getLogger("copydesk.writer")

#: HTTP statuses by which a server refuses a `response_format` it does not support (llama-cpp-python:
#: 500 with a validation error, which copydesk.client maps to BadRequestError).
REFUSED = (400, 422, 500)


def outline_formats(mode: str, min_sections: int, max_sections: int) -> list[dict[str, Any] | None]:
    """The `response_format`s to try for an outline, in order (None: plain text).

    OpenAI (and vLLM, Ollama) take `{"type": "json_schema", "json_schema": {"name", "schema",
    "strict"}}`, whose schema must be an object at the top; llama.cpp's server (and
    llama-cpp-python's) take `{"type": "json_object", "schema": ...}` and turn the schema
    into a grammar. Both ask for `{"headings": ["...", ...]}`, which `parse_outline` reads."""
    return _array_formats("headings", "outline", mode, min_sections, max_sections)


def list_formats(mode: str, max_items: int) -> list[dict[str, Any] | None]:
    """The `response_format`s to try for an extra with `output: list` (as `outline_formats`):
    both ask for `{"items": ["...", ...]}`, which `copydesk.postprocess.parse_list` reads."""
    return _array_formats("items", "items", mode, 1, max_items)


def _array_formats(key: str, name: str, mode: str, min_items: int, max_items: int) -> list[dict[str, Any] | None]:
    """The `response_format`s to try, in order, for an answer `{key: ["...", ...]}` (see `outline_formats`)."""
    items = {"type": "array", "items": {"type": "string"}}
    strict_schema = {"type": "object", "properties": {key: items}, "required": [key], "additionalProperties": False}
    bounded = {"type": "object", "required": [key],
               "properties": {key: {**items, "minItems": min_items, "maxItems": max_items}}}
    forms: dict[str, dict[str, Any]] = {
        "json_schema": {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": strict_schema}},
        "json_object": {"type": "json_object", "schema": bounded},
    }
    if mode == "off":
        return [None]
    if mode == "auto":
        return [forms["json_schema"], forms["json_object"], None]
    return [forms[mode], None]


def _for_server(forms: list[dict[str, Any] | None], mode: str, embedded: bool) -> list[dict[str, Any] | None]:
    """The embedded server is llama-cpp-python, which takes only json_object (+ schema)."""
    if embedded and mode == "auto":
        return [f for f in forms if f is None or f["type"] == "json_object"]
    return forms


class OutlineFormats:
    """Which outline `response_format` this run's server takes: the first one it has not refused.
    A refusal moves every later outline of the run on to the next form."""

    def __init__(self, forms: list[dict[str, Any] | None], what: str = "outlines") -> None:
        self.forms = forms
        #: What the log line names: "outlines", or an extra stage ("extra 'tags'").
        self.what = what
        self.index = 0
        #: What the server said to each form it refused (type -> message), for the log and the tests.
        self.refused: dict[str, str] = {}

    @property
    def current(self) -> dict[str, Any] | None:
        return self.forms[min(self.index, len(self.forms) - 1)]

    def refuse(self, form: dict[str, Any], exc: ApiError) -> None:
        if self.index < len(self.forms) - 1 and self.forms[self.index] is form:
            self.index += 1
            self.refused[str(form["type"])] = str(exc)
            log.warning("the server refused response_format %s (%s); %s %s %s for the rest of the run",
                        form["type"], exc, self.what, "use" if self.what == "outlines" else "uses",
                        (self.current or {}).get("type", "plain text"))


@dataclass(eq=False)
class ArticleWriter:
    """Executes the run's `CallPlan` (copydesk.callplan) for one article at a time."""

    spec: PipelineSpec
    prompts: PromptLibrary
    gateway: CallGateway
    #: The run's template variables (None: none).
    overrides: dict[str, Any] | None = None
    _: KW_ONLY
    #: The embedded model answers to one name only; every stage then uses it.
    model_override: str | None = None
    #: What every call sends (the run's resources pass theirs; None: the spec's, with model_override).
    plan: CallPlan | None = None
    #: The outline's response_formats, the first one this run's server has not refused.
    outline_formats: OutlineFormats = field(init=False)
    #: Per extra stage: the response_formats its server takes (`output: list`), [None] for text.
    extra_formats: dict[str, OutlineFormats] = field(init=False)

    def __post_init__(self) -> None:
        self.overrides = self.overrides or {}
        self.plan = self.plan or CallPlan.of(self.spec, self.model_override)
        embedded = bool(self.model_override)
        outline = self.spec.stages.outline
        forms = outline_formats(outline.structured, outline.min_sections, outline.max_sections)
        self.outline_formats = OutlineFormats(_for_server(forms, outline.structured, embedded))
        self.extra_formats = {
            name: OutlineFormats(_for_server(list_formats(extra.structured, extra.max_items), extra.structured,
                                             embedded) if extra.output == "list" else [None],
                                 f"extra '{name}'")
            for name, extra in self.spec.stages.extras.items()
        }

    async def write(self, article: Article) -> Article:
        try:
            await self._write(article)
        except BudgetExhausted as exc:
            article.fail(f"stopped by the budget: {exc}")
        except ApiError as exc:
            article.fail(f"API error: {exc}")
        except CopydeskError as exc:
            article.fail(str(exc))
        except Exception as exc:  # never take the batch down
            log.exception("article %r failed", article.topic)
            article.fail(f"internal error: {type(exc).__name__}: {exc}")
        events.emit(events.ArticleFinished(article.topic, article.status.value))
        return article

    def calls(self, topic: str) -> TopicCalls:
        """The calls this writer makes for `topic` (copydesk.callplan)."""
        return self.plan.topic(self.prompts, topic, self.overrides)

    async def _write(self, article: Article) -> None:
        calls = self.calls(article.topic)

        await self._title(article, calls)
        if not article.title:
            article.fail("the title stage returned no usable title")
            return

        # outline
        bounds = {"min_sections": self.plan.min_sections, "max_sections": self.plan.max_sections}
        for attempt in range(self.plan.stages["outline"].attempts):
            completion, article.outline_prompt = await self._structured(article, calls.outline(article.title, attempt))
            article.outline = parse_outline(completion.text, **bounds)
            if len(article.outline) >= self.plan.min_sections:
                break
            log.info("outline of %r unusable (%d sections); asking again", article.topic, len(article.outline))
        if len(article.outline) < self.plan.min_sections:
            article.fail(
                f"unusable outline: {len(article.outline)} section(s) parsed, at least "
                f"{self.plan.min_sections} needed"
            )
            return
        article.sections = [Section(heading) for heading in article.outline]
        events.emit(events.SectionsPlanned(len(article.sections)))

        # expansion: one call per section, all at once; the gateway's limiter bounds them
        results = await asyncio.gather(
            *(self._expand(article, calls, i) for i in range(len(article.sections))), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BudgetExhausted):
                    article.fail(f"stopped by the budget: {result}")
                elif isinstance(result, ApiError):
                    article.fail(f"API error: {result}")
                elif isinstance(result, CopydeskError):
                    article.fail(str(result))
                else:
                    log.error("section of %r failed", article.topic, exc_info=result)
                    article.fail(f"internal error: {type(result).__name__}: {result}")
        if all(section.written for section in article.sections):
            for extra in self.plan.extras:  # one after the other: in batch mode, one batch each
                await self._extra(article, calls, extra.stage)
            article.generated = True

    async def _title(self, article: Article, calls: TopicCalls) -> None:
        """The title; one that is cut off (copydesk.qc.title) is asked for again with a larger
        max_tokens while the plan has attempts left, and replaced by an answer that is not."""
        completion, _ = await self._call(article, calls.title())
        article.title = clean_title(completion.text)[:MAX_TITLE_CHARS]
        article.title_finish_reason = completion.finish_reason
        for attempt in range(1, self.plan.stages["title"].attempts):
            why = title_cut_off(article.title, article.title_finish_reason, self.spec.language)
            if why is None:
                return
            log.info("title of %r looks cut off (%s); asking again", article.topic, why)
            completion, _ = await self._call(article, calls.title(attempt))
            title = clean_title(completion.text)[:MAX_TITLE_CHARS]
            if title and title_cut_off(title, completion.finish_reason, self.spec.language) is None:
                article.title, article.title_finish_reason = title, completion.finish_reason

    async def _structured(self, article: Article, call: Call, formats: OutlineFormats | None = None) -> tuple[Any, str]:
        """The outline call (or `formats`' stage's), with the structured form the server takes
        (see OutlineFormats)."""
        formats = formats or self.outline_formats
        while True:
            form = formats.current
            try:
                return await self._call(article, call, response_format=form)
            except BadRequestError as exc:
                if form is None or exc.status_code not in REFUSED:
                    raise
                formats.refuse(form, exc)

    async def _extra(self, article: Article, calls: TopicCalls, name: str) -> None:
        """Ask the extra stage `name`; its cleaned answer goes to `article.extras[name]`. An empty or
        refused answer (a refusal in words, `finish_reason: content_filter`, a 400 from the server)
        holds the article when the extra is required, and is left out otherwise."""
        spec: ExtraStage = self.spec.stages.extras[name]
        text = "\n\n".join(f"## {s.heading}\n\n{s.body}".rstrip() for s in article.sections)
        call = calls.extra(name, article.title, article.outline, text)
        try:
            completion, _ = await self._structured(article, call, self.extra_formats[name])
        except BadRequestError as exc:
            problem = f"was refused by the server ({truncate(str(exc), 120)})"
        else:
            raw = completion.text or ""
            if spec.output == "list":
                value = parse_list(raw, max_items=spec.max_items, limit=spec.char_limit)
            else:
                value = clean_extra_text(raw, spec.char_limit)
            if completion.finish_reason == "content_filter" or any(
                    kind == "refusal" for kind, _ in refusal_findings([("", raw)])):
                problem = "was refused"
            elif not value:
                problem = "is empty"
            else:
                article.extras[name] = value
                return
        if spec.required:
            article.hold(f"extra '{name}' {problem}")
        else:
            log.info("article %d: the optional extra %r %s; left out", article.index + 1, name, problem)

    async def rewrite_section(self, article: Article, index: int, note: str, attempt: int) -> None:
        """Write section `index` (0-based) again, its own prompt followed by `note` (what the gate
        found wrong, `copydesk.qc.repair`). Same budget guard and call store as every call; raises
        what the gateway raises (BudgetExhausted, ApiError)."""
        await self._expand(article, self.calls(article.topic), index, note=note, rewrite=attempt)

    async def _expand(self, article: Article, calls: TopicCalls, index: int, *, note: str | None = None,
                      rewrite: int = 0) -> None:
        section = article.sections[index]
        headings = [s.heading for s in article.sections]
        call = calls.section(article.title, article.outline, headings, index, note=note, rewrite=rewrite)
        completion, section.prompt = await self._call(article, call)
        section.body = clean_section(completion.text, section.heading)
        section.finish_reason = completion.finish_reason
        section.written = True

    async def _call(self, article: Article, call: Call, *, response_format: dict[str, Any] | None = None
                    ) -> tuple[Any, str]:
        """The completion, and the rendered prompt that produced it (every message's text, without
        the `note`: a repair's re-ask, appended to the last user message, quotes the failed text)."""
        messages, prompt = call.render(self.prompts)
        request = call.request(messages, response_format)
        stage, part = call.stage, call.part
        result = await self.gateway.complete(stage, request, call_key(article.key, stage, part, request),
                                             site=CallSite(article.index, stage, part))
        article.calls += 1
        article.cached_calls += int(result.cached)
        sent_model = self.gateway.fallback_model if result.fallback_from else request.model
        article.add_usage(stage, sent_model or request.model, result.completion.usage)
        article.note_model(result.completion.model)
        if result.fallback_from:
            article.fallback_from = result.fallback_from
        return result.completion, prompt
