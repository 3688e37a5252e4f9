"""Writes one article: title → outline → sections (concurrently), through the gateway.

A failure never escapes: the article ends `incomplete` with the reason and the
text it has so far. Whether the run as a whole must stop (bad credentials, a
missing model, the budget) is the gateway's and the budget's to say.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from copydesk import events
from copydesk.article import Article, Section
from copydesk.calls import CallGateway, CallSite
from copydesk.client import ChatRequest
from copydesk.errors import ApiError, BadRequestError, BudgetExhausted, CopydeskError
from copydesk.postprocess import MAX_TITLE_CHARS, clean_section, clean_title, parse_outline
from copydesk.prompts import PromptLibrary
from copydesk.spec import PipelineSpec
from copydesk.store import call_key
from copydesk.text import truncate

log = logging.getLogger("copydesk.writer")

#: An outline that does not parse into min_sections headings is asked for again, once
#: (small models often get it right the second time); `copydesk plan` counts both calls.
OUTLINE_ATTEMPTS = 2

#: Topics longer than this are cut (on a word boundary) before they reach a prompt.
MAX_TOPIC_CHARS = 500

#: Call-store part numbers of a repair: attempt * REPAIR_PART + section number.
REPAIR_PART = 1000


#: HTTP statuses by which a server refuses a `response_format` it does not support (llama-cpp-python:
#: 500 with a validation error, which copydesk.client maps to BadRequestError).
REFUSED = (400, 422, 500)


def outline_formats(mode: str, min_sections: int, max_sections: int) -> list[dict[str, Any] | None]:
    """The `response_format`s to try for an outline, in order (None: plain text).

    OpenAI (and vLLM, Ollama) take `{"type": "json_schema", "json_schema": {"name", "schema",
    "strict"}}`, whose schema must be an object at the top; llama.cpp's server (and
    llama-cpp-python's) take `{"type": "json_object", "schema": ...}` and turn the schema
    into a grammar. Both ask for `{"headings": ["...", ...]}`, which `parse_outline` reads."""
    items = {"type": "array", "items": {"type": "string"}}
    strict_schema = {"type": "object", "properties": {"headings": items}, "required": ["headings"],
                     "additionalProperties": False}
    bounded = {"type": "object", "required": ["headings"],
               "properties": {"headings": {**items, "minItems": min_sections, "maxItems": max_sections}}}
    forms: dict[str, dict[str, Any]] = {
        "json_schema": {"type": "json_schema",
                        "json_schema": {"name": "outline", "strict": True, "schema": strict_schema}},
        "json_object": {"type": "json_object", "schema": bounded},
    }
    if mode == "off":
        return [None]
    if mode == "auto":
        return [forms["json_schema"], forms["json_object"], None]
    return [forms[mode], None]


class OutlineFormats:
    """Which outline `response_format` this run's server takes: the first one it has not refused.
    A refusal moves every later outline of the run on to the next form."""

    def __init__(self, forms: list[dict[str, Any] | None]) -> None:
        self.forms = forms
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
            log.warning("the server refused response_format %s (%s); outlines use %s for the rest of the run",
                        form["type"], exc, (self.current or {}).get("type", "plain text"))


class ArticleWriter:
    def __init__(
        self,
        spec: PipelineSpec,
        prompts: PromptLibrary,
        gateway: CallGateway,
        overrides: dict[str, Any] | None = None,
        *,
        model_override: str | None = None,
    ) -> None:
        self.spec = spec
        self.prompts = prompts
        self.gateway = gateway
        self.overrides = overrides or {}
        #: The embedded model answers to one name only; every stage then uses it.
        self.model_override = model_override
        outline = spec.stages.outline
        forms = outline_formats(outline.structured, outline.min_sections, outline.max_sections)
        if model_override and outline.structured == "auto":
            # the embedded server is llama-cpp-python, which takes only json_object (+ schema)
            forms = [f for f in forms if f is None or f["type"] == "json_object"]
        self.outline_formats = OutlineFormats(forms)

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

    async def _write(self, article: Article) -> None:
        topic = truncate(article.topic, MAX_TOPIC_CHARS)
        base = self.prompts.context(topic, self.overrides)

        # title
        completion, _ = await self._call(article, "title", 0, base)
        article.title = clean_title(completion.text)[:MAX_TITLE_CHARS]
        article.title_finish_reason = completion.finish_reason
        if not article.title:
            article.fail("the title stage returned no usable title")
            return

        # outline
        outline_stage = self.spec.stages.outline
        for attempt in range(OUTLINE_ATTEMPTS):
            completion, article.outline_prompt = await self._outline(article, attempt, {**base, "title": article.title})
            article.outline = parse_outline(
                completion.text, min_sections=outline_stage.min_sections, max_sections=outline_stage.max_sections
            )
            if len(article.outline) >= outline_stage.min_sections:
                break
            log.info("outline of %r unusable (%d sections); asking again", article.topic, len(article.outline))
        if len(article.outline) < outline_stage.min_sections:
            article.fail(
                f"unusable outline: {len(article.outline)} section(s) parsed, at least "
                f"{outline_stage.min_sections} needed"
            )
            return
        article.sections = [Section(heading) for heading in article.outline]
        events.emit(events.SectionsPlanned(len(article.sections)))

        # expansion: one call per section, all at once; the gateway's limiter bounds them
        results = await asyncio.gather(
            *(self._expand(article, base, i) for i in range(len(article.sections))), return_exceptions=True
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
            article.generated = True

    async def _outline(self, article: Article, attempt: int, context: dict[str, Any]) -> tuple[Any, str]:
        """The outline call, with the structured form the server takes (see OutlineFormats)."""
        while True:
            form = self.outline_formats.current
            try:
                return await self._call(article, "outline", attempt, context, response_format=form)
            except BadRequestError as exc:
                if form is None or exc.status_code not in REFUSED:
                    raise
                self.outline_formats.refuse(form, exc)

    async def rewrite_section(self, article: Article, index: int, note: str, attempt: int) -> None:
        """Write section `index` (0-based) again, its own prompt followed by `note` (what the gate
        found wrong, `copydesk.qc.repair`). Same budget guard and call store as every call; raises
        what the gateway raises (BudgetExhausted, ApiError)."""
        base = self.prompts.context(truncate(article.topic, MAX_TOPIC_CHARS), self.overrides)
        await self._expand(article, base, index, note=note, part=REPAIR_PART * attempt + index + 1)

    async def _expand(
        self, article: Article, base: dict[str, Any], index: int, *, note: str | None = None, part: int | None = None
    ) -> None:
        section = article.sections[index]
        context = {
            **base,
            "title": article.title,
            "outline": list(article.outline),
            "section": section.heading,
            "section_index": index + 1,
            "section_count": len(article.sections),
        }
        completion, section.prompt = await self._call(
            article, "expansion", index + 1 if part is None else part, context, note=note
        )
        section.body = clean_section(completion.text, section.heading)
        section.finish_reason = completion.finish_reason
        section.written = True

    async def _call(
        self, article: Article, stage: str, part: int, context: dict[str, Any], *, note: str | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> tuple[Any, str]:
        """The completion, and the rendered prompt that produced it (every message's text, without
        the `note`: a repair's re-ask, appended to the last user message, quotes the failed text)."""
        prompt = self.prompts.prompt(stage, context)
        stage_spec = getattr(self.spec.stages, stage)
        messages = [dict(m) for m in prompt.messages()]
        if note:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{note}"
        request = ChatRequest(
            model=self.model_override or self.spec.model_for(stage),
            messages=tuple(messages),
            params={**stage_spec.sampling_params(), **({"response_format": response_format} if response_format else {})},
        )
        result = await self.gateway.complete(stage, request, call_key(article.key, stage, part, request),
                                             site=CallSite(article.index, stage, part))
        article.calls += 1
        article.cached_calls += int(result.cached)
        sent_model = self.gateway.fallback_model if result.fallback_from else request.model
        article.add_usage(stage, sent_model or request.model, result.completion.usage)
        article.note_model(result.completion.model)
        if result.fallback_from:
            article.fallback_from = result.fallback_from
        return result.completion, "\n\n".join(m["content"] for m in prompt.messages())
