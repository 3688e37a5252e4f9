"""The article: what one topic becomes, from its first call to its export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from copydesk.client import Usage
from copydesk.rundir import Status  # the one definition of the statuses; re-exported here

__all__ = ["Article", "Section", "Status"]


@dataclass
class Section:
    heading: str
    body: str = ""
    finish_reason: str | None = None
    written: bool = False
    #: The rendered prompt (every message) that produced the body: the gate's prompt-echo check reads it.
    prompt: str = ""


@dataclass
class Article:
    index: int
    topic: str
    #: The topic and its occurrence in the batch: stable across re-runs of the same command.
    key: str
    title: str = ""
    outline: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    status: Status = Status.INCOMPLETE
    reasons: list[str] = field(default_factory=list)
    #: Usage per (stage, model sent): what prices the article.
    usage_by_call: dict[tuple[str, str], Usage] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    fallback_from: str | None = None
    calls: int = 0
    cached_calls: int = 0
    #: True once every stage has produced its text.
    generated: bool = False
    title_finish_reason: str | None = None
    #: The rendered outline prompt (every message) that produced the outline.
    outline_prompt: str = ""
    qc: dict[str, Any] | None = None
    grammar_issues: int | None = None
    moderation_flagged: bool | None = None
    slug: str = ""
    path: str = ""
    #: The extra stages' answers (`stages.extras`), cleaned and inert: name -> text or list of items.
    extras: dict[str, str | list[str]] = field(default_factory=dict)
    #: Why the article is held for review whatever the gate says (a required extra empty or refused).
    holds: list[str] = field(default_factory=list)
    #: The prose's word count, kept when `release_text()` dropped the section bodies.
    word_count: int | None = None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for usage in self.usage_by_call.values():
            total = total + usage
        return total

    def add_usage(self, stage: str, model: str, usage: Usage | None) -> None:
        if usage is not None:
            key = (stage, model)
            self.usage_by_call[key] = self.usage_by_call.get(key, Usage()) + usage

    def note_model(self, model: str) -> None:
        if model not in self.models:
            self.models.append(model)

    def fail(self, reason: str) -> None:
        self.status = Status.INCOMPLETE
        if reason not in self.reasons:
            self.reasons.append(reason)

    def hold(self, reason: str) -> None:
        """Hold the article for review (`needs_review` at best) with `reason`, once the gate has spoken."""
        if reason not in self.holds:
            self.holds.append(reason)

    @property
    def display_title(self) -> str:
        return self.title or self.topic

    def body_markdown(self) -> str:
        """`# Title` and one `## Heading` per outline section (unwritten ones left empty)."""
        if self.word_count is not None:
            raise RuntimeError(f"article {self.index + 1}: its text was released after its export")
        return "\n\n".join(self._body_parts()) + "\n"

    def release_text(self, word_count: int) -> None:
        """Drop the section bodies and prompts once the article is exported (its Markdown file
        holds the text): a 10,000-topic run kept ~10 KB of them per article until the end,
        although the CSV row needs only their word count, kept here."""
        self.word_count = word_count
        for section in self.sections:
            section.body = ""
            section.prompt = ""
        self.outline_prompt = ""

    def _body_parts(self) -> list[str]:
        parts = [f"# {self.display_title}"]
        for section in self.sections:
            parts.append(f"## {section.heading}")
            if section.body:
                parts.append(section.body)
        return parts

    def apply_corrections(self, corrected: str) -> bool:
        """Take the title, headings and section bodies from `corrected`: a copy of
        `body_markdown()` in which words were replaced (the grammar check's autocorrect)
        but no line break was added or removed. Returns False and changes nothing when
        `corrected` does not have that shape; a title that was only the topic stays so."""
        parts = self._body_parts()
        if not corrected.endswith("\n"):
            return False
        lines = corrected[:-1].split("\n")
        new_parts: list[str] = []
        pos = 0
        for k, part in enumerate(parts):
            if k:  # the blank line between two parts
                if pos >= len(lines) or lines[pos]:
                    return False
                pos += 1
            n = part.count("\n") + 1
            if pos + n > len(lines):
                return False
            new_parts.append("\n".join(lines[pos : pos + n]))
            pos += n
        if pos != len(lines) or not new_parts[0].startswith("# "):
            return False
        rest = new_parts[1:]  # per section: its "## Heading", then its body if it has one
        steps = [2 if section.body else 1 for section in self.sections]
        starts = [sum(steps[:i]) for i in range(len(steps))]
        if any(not rest[k].startswith("## ") for k in starts):
            return False
        if self.title:
            self.title = new_parts[0][2:]
        for section, k in zip(self.sections, starts, strict=True):
            heading = rest[k][3:]
            if heading != section.heading:
                self.outline = [heading if h == section.heading else h for h in self.outline]
                section.heading = heading
            if section.body:
                section.body = rest[k + 1]
        return True

    def finish_reasons(self) -> list[str | None]:
        return [section.finish_reason for section in self.sections if section.written]
