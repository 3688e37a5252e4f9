"""A run's calls, described once: what the writer sends for a topic, stage by stage.

    StageCalls  one stage: the model it sends (and the one its batch lines carry), its
                sampling values exactly as sent (`max_tokens` always), the earlier answers
                its template context takes (`copydesk.prompts.STAGE_CONTEXT`), and how often
                it is asked: an outline that does not parse is asked again (OUTLINE_ATTEMPTS),
                a title that is cut off once more with a larger max_tokens
                (`qc.truncated_title.reask`, copydesk.qc.title),
                the expansion is one call per section, and each section may be written again
                `qc.repair.max_attempts` times with a note of at most MAX_NOTE_CHARS; an extra
                stage (`stages.extras`) is asked once per article, after the expansion, with the
                article's text cut to MAX_ARTICLE_CHARS
    CallPlan    a run's stages, in order; `topic()` gives one topic's calls
    TopicCalls  one topic's calls: the topic as sent (cut to MAX_TOPIC_CHARS), the context
                every prompt of it shares, and each `Call` derived from earlier answers
                (`title()`, `outline(title, attempt)`, `section(...)`, `extra(name, ...)`), or every call at its
                largest (`worst_case()`)
    Call        one call: its stage, its part (the call store's number), its context, a
                re-ask's note; it renders its messages and builds its request

`copydesk.writer.ArticleWriter` executes it, `copydesk plan` (copydesk.plan) sums its worst
case, and the run's resources take each stage's model and batch model from it
(copydesk.resources: the metrics, the batch preflight's probe, the batch lines' model).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from copydesk.client import ChatRequest
from copydesk.postprocess import MAX_HEADING_CHARS, MAX_TITLE_CHARS
from copydesk.prompts import PromptLibrary, stage_context
from copydesk.qc.repair import MAX_NOTE_CHARS
from copydesk.qc.title import REASK_FACTOR
from copydesk.spec import PipelineSpec
from copydesk.text import truncate

#: An outline that does not parse into min_sections headings is asked for again, once
#: (small models often get it right the second time); `copydesk plan` counts both calls.
OUTLINE_ATTEMPTS = 2

#: Topics longer than this are cut (on a word boundary) before they reach a prompt.
MAX_TOPIC_CHARS = 500

#: An extra stage reads the article's sections as Markdown, cut to this many characters (on a word
#: boundary) before they reach its prompt; `copydesk plan` counts the longest such text.
MAX_ARTICLE_CHARS = 12_000

#: Call-store part numbers of a repair: attempt * REPAIR_PART + section number.
REPAIR_PART = 1000

# Four bytes per character is the UTF-8 maximum, so an ASCII string four times
# as long has as many bytes as the worst real one.
_WIDE = 4


@dataclass(frozen=True)
class StageCalls:
    """One stage's calls (see the module docstring)."""

    stage: str
    model: str
    #: The model name its batch lines carry (`stages.X.batch_model`, `batch.model`, else its model).
    batch_model: str
    #: The request fields it sends besides model and messages, as written in the spec.
    params: Mapping[str, Any]
    #: The earlier answers its template context takes, on top of topic, language and vars.
    takes: tuple[str, ...]
    #: How often the same call is asked when its answer is unusable.
    attempts: int = 1
    #: The max_tokens of an attempt after the first (None: the stage's).
    reask_max_tokens: int | None = None
    #: One call per section of the outline (at most the outline's max_sections).
    per_section: bool = False
    #: How often each call may be asked again with a note (the publish gate's repairs).
    rewrites: int = 0
    #: The longest such note, in characters.
    note_chars: int = 0
    #: An extra stage (`stages.extras`): its output kind, "text" or "list"; None for the three stages.
    output: str | None = None

    @property
    def max_tokens(self) -> int:
        return int(self.params["max_tokens"])


@dataclass(frozen=True)
class Call:
    """One call: its stage, its call-store part, its template context and a re-ask's note."""

    of: StageCalls
    part: int
    context: Mapping[str, Any]
    note: str | None = None
    #: Its max_tokens, where it differs from the stage's (a re-ask with more room).
    max_tokens_override: int | None = None

    @property
    def stage(self) -> str:
        return self.of.stage

    @property
    def max_tokens(self) -> int:
        return self.max_tokens_override or self.of.max_tokens

    def render(self, prompts: PromptLibrary) -> tuple[list[dict[str, str]], str]:
        """The messages as sent (the note appended to the last one) and the rendered prompt's
        text, every message without the note (a repair's note quotes the failed text)."""
        rendered = prompts.prompt(self.stage, dict(self.context)).messages()
        messages = [dict(m) for m in rendered]
        if self.note:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{self.note}"
        return messages, "\n\n".join(m["content"] for m in rendered)

    def request(self, messages: Sequence[dict[str, str]], response_format: dict[str, Any] | None = None
                ) -> ChatRequest:
        """The request as sent: the stage's model and values, and a `response_format` if any."""
        return ChatRequest(
            model=self.of.model,
            messages=tuple(messages),
            params={**self.of.params, "max_tokens": self.max_tokens,
                    **({"response_format": response_format} if response_format else {})},
        )


@dataclass(frozen=True)
class CallPlan:
    """A run's stages, in order (see the module docstring)."""

    stages: Mapping[str, StageCalls]
    min_sections: int
    max_sections: int

    @classmethod
    def of(cls, spec: PipelineSpec, model_override: str | None = None) -> CallPlan:
        """The calls `spec` makes; `model_override` (the embedded model) is every stage's model."""
        shape: dict[str, dict[str, Any]] = {
            "outline": {"attempts": OUTLINE_ATTEMPTS},
            "expansion": {"per_section": True, "rewrites": spec.qc.repair.max_attempts, "note_chars": MAX_NOTE_CHARS},
            **{name: {"output": extra.output} for name, extra in spec.stages.extras.items()},
        }
        retitle = spec.qc.truncated_title
        if retitle.enabled and retitle.reask:
            shape["title"] = {"attempts": 2, "reask_max_tokens": spec.stages.title.max_tokens * REASK_FACTOR}
        stages = {
            name: StageCalls(name, model_override or spec.model_for(name), spec.batch_model_for(name),
                             stage.sampling_params(), stage_context(name), **shape.get(name, {}))
            for name, stage in spec.stages.items()
        }
        outline = spec.stages.outline
        return cls(stages, outline.min_sections, outline.max_sections)

    @property
    def extras(self) -> list[StageCalls]:
        """The extra stages, in the order the spec declares them."""
        return [stage for stage in self.stages.values() if stage.output is not None]

    def batch_models(self) -> dict[str, str]:
        """stage -> the model its batch lines carry, where that differs from the stage's model."""
        return {name: stage.batch_model for name, stage in self.stages.items() if stage.batch_model != stage.model}

    def topic(self, prompts: PromptLibrary, topic: str, overrides: dict[str, Any] | None = None) -> TopicCalls:
        return TopicCalls(self, prompts.context(truncate(topic, MAX_TOPIC_CHARS), overrides))


@dataclass(frozen=True)
class TopicCalls:
    """One topic's calls: each derived from the context its calls share and earlier answers."""

    plan: CallPlan
    #: What every call of the topic renders with: topic (as sent), language, vars.
    base: Mapping[str, Any]

    def _call(self, stage: str, answers: Mapping[str, Any], index: int | None = None, attempt: int = 0,
              rewrite: int = 0, note: str | None = None) -> Call:
        """The call of `stage` for section `index` (None: not per section), its `attempt`-th ask
        (0-based) or its rewrite number `rewrite` (with `note`). Its part: 0 (title), the attempt
        (outline), the section number (expansion), plus REPAIR_PART times the rewrite."""
        of = self.plan.stages[stage]
        part = (0 if index is None else index + 1) + attempt + REPAIR_PART * rewrite
        more = of.reask_max_tokens if attempt else None
        return Call(of, part, {**self.base, **{name: answers[name] for name in of.takes}}, note, more)

    def title(self, attempt: int = 0) -> Call:
        """The title's `attempt`-th ask (0-based); a re-ask has the stage's `reask_max_tokens`."""
        return self._call("title", {}, attempt=attempt)

    def outline(self, title: str, attempt: int) -> Call:
        """The outline's `attempt`-th ask (0-based), of `plan.stages["outline"].attempts`."""
        return self._call("outline", {"title": title}, attempt=attempt)

    def section(self, title: str, outline: Sequence[str], headings: Sequence[str], index: int, *,
                note: str | None = None, rewrite: int = 0) -> Call:
        """Section `index` (0-based) of `headings` (the sections as they stand; `outline` as it
        was parsed); `rewrite` > 0: its rewrite number `rewrite`, with `note`."""
        return self._call("expansion", _answers(title, outline, headings, index), index, rewrite=rewrite, note=note)

    def extra(self, name: str, title: str, outline: Sequence[str], article: str) -> Call:
        """The extra stage `name`'s call: the title, the outline and `article` (the sections as
        Markdown; cut to MAX_ARTICLE_CHARS here)."""
        answers = {"title": title, "outline": list(outline), "article": truncate(article, MAX_ARTICLE_CHARS)}
        return self._call(name, answers)

    def worst_case(self) -> Iterator[Call]:
        """Every call the topic can make, at its largest: a title of MAX_TITLE_CHARS four-byte
        characters, `max_sections` headings of MAX_HEADING_CHARS four-byte characters, every
        attempt asked, and every call rewritten as often as its stage allows, with the longest note."""
        title = "x" * (MAX_TITLE_CHARS * _WIDE)
        headings = [f"{i}" + "x" * (MAX_HEADING_CHARS * _WIDE - 1) for i in range(self.plan.max_sections)]
        for name, of in self.plan.stages.items():
            note = "x" * (of.note_chars * _WIDE)
            for index in range(len(headings)) if of.per_section else [None]:
                answers = _answers(title, headings, headings, index)
                if of.output is not None:  # truncate() may add an ellipsis (three bytes) after the limit
                    answers["article"] = "x" * ((MAX_ARTICLE_CHARS + 1) * _WIDE)
                for attempt in range(of.attempts):
                    yield self._call(name, answers, index, attempt)
                    for rewrite in range(1, of.rewrites + 1):
                        yield self._call(name, answers, index, attempt, rewrite, note)


def _answers(title: str, outline: Sequence[str], headings: Sequence[str], index: int | None) -> dict[str, Any]:
    """What earlier stages answered, as the templates name it (a stage's context takes its `takes`)."""
    answers: dict[str, Any] = {"title": title, "outline": list(outline)}
    if index is not None:
        answers.update(section=headings[index], section_index=index + 1, section_count=len(headings))
    return answers
