"""Outline headings that name the task instead of a part of the article.

    "List of short section headings"      "Short description of the topic"
    "Section headings"                    "How to use feature flags in a simple blog post"

A heading is held when it names the writing request: it opens with "list of", "description of"
or "outline of", or names section headings, headlines, paragraphs or prose, or the blog post /
article itself. The outline stage wrote it, so a rewrite of the section cannot fix it (evidence
`where: heading`): the article needs review (soft).

    qc:
      task_headings:
        enabled: true
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from copydesk.qc.check import BaseCheck, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.text import primary_language

_TASK = re.compile(
    r"""(?:
        ^\W*(?:a\s+|the\s+)?(?:(?:short|brief|numbered|bulleted|simple)\s+)?
            (?:list|description|outline)\s+of\b
      | \b(?:section|sub-?)\s*(?:headings?|titles?|headers?)\b
      | ^\W*(?:(?:short|five|three|four|six|numbered)\s+)*headings?\b
      | \b(?:catchy\s+)?headlines?\b
      | \b(?:this|the|a|my|your|our)\s+(?:\w+\s+){0,2}?(?:blog\s+post|blog|article|post)\b(?!-)
      | \bblog\s+posts?\b
      | \b(?:two|three|2|3)\s+paragraphs?\b | \bplain\s+prose\b
      | ^\W*(?:section|part|heading|paragraph)\s*\d+\W*$
      | \bnumbered\s+(?:\d|one|1\s+to)\b | ^\W*please\s+add\b
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def task_headings(outline: Sequence[str], sections: Sequence[tuple[str, str]], topic: str = "") -> list[dict]:
    """One finding per heading that names the task (headings as written, else the outline's).
    A phrase whose last word the topic has ("Starting a blog": "a blog") does not count."""
    headings = [h for h, _ in sections] or list(outline)
    topic_words = set(re.findall(r"[\w-]+", topic.lower()))
    found = []
    for i, heading in enumerate(headings, start=1):
        match = _TASK.search(heading)
        if match and match.group(0).split()[-1].strip(".,:;!?").lower() not in topic_words:
            found.append(finding(i, heading, heading, where="heading", phrase=match.group(0).strip()))
    return found


class TaskHeadingsCheck(BaseCheck, key="task_headings"):
    def applies(self, draft: Draft) -> bool:
        return primary_language(draft.language) == "en"

    def run(self, draft: Draft) -> CheckResult:
        return CheckResult.from_findings(
            self.name, task_headings(draft.outline, draft.sections, draft.topic), "no heading names the task",
            lambda first: f"{place(first)} names the task ({first['phrase']!r})")
