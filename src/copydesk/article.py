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
    qc: dict[str, Any] | None = None
    grammar_issues: int | None = None
    moderation_flagged: bool | None = None
    slug: str = ""
    path: str = ""

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

    @property
    def display_title(self) -> str:
        return self.title or self.topic

    def body_markdown(self) -> str:
        """`# Title` and one `## Heading` per outline section (unwritten ones left empty)."""
        parts = [f"# {self.display_title}"]
        for section in self.sections:
            parts.append(f"## {section.heading}")
            if section.body:
                parts.append(section.body)
        return "\n\n".join(parts) + "\n"

    def finish_reasons(self) -> list[str | None]:
        return [section.finish_reason for section in self.sections if section.written]
