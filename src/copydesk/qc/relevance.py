"""Relevance: the title and each section relate to the topic, by shared content words.

    check_relevance("Retries in Prefect", "Retry policies that work", sections, "en-US", min_shared_terms=1)

Lexical, deliberately simple and configurable (`qc.relevance.min_shared_terms`):

- the title must share `min_shared_terms` content terms with the topic;
- a section (its heading and its body together) must share as many with the
  topic and the title.

Terms are stemmed words without stopwords (`copydesk.qc.terms`; Chinese: character
bigrams). It sees a section about something else entirely; it cannot see a
section that uses the topic's words to say something wrong or empty. Soft.
"""

from __future__ import annotations

from collections.abc import Sequence

from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import content_terms
from copydesk.text import plain_text


def check_relevance(
    topic: str, title: str, sections: Sequence[tuple[str, str]], language: str, min_shared_terms: int
) -> CheckResult:
    topic_terms = content_terms(topic, language)
    if not topic_terms:
        return CheckResult("relevance", True, "soft", "the topic has no content words to compare", None)
    found = []
    title_terms = content_terms(title, language)
    if title and len(title_terms & topic_terms) < min_shared_terms:
        found.append(finding(None, None, title, where="title"))
    wanted = topic_terms | title_terms if title_terms & topic_terms else topic_terms
    for i, (heading, body) in enumerate(sections, start=1):
        terms = content_terms(heading + "\n" + plain_text(body, keep_code=False), language)
        if len(terms & wanted) < min_shared_terms:
            found.append(finding(i, heading, heading, where="section"))
    if not found:
        return CheckResult("relevance", True, "soft", "the title and every section relate to the topic", 0)
    first = found[0]
    what = f"the title \"{first['text']}\"" if first["section"] is None else place(first)
    detail = f"{what} shares no words with the topic {topic!r}"
    if len(found) > 1:
        detail += f" (+{len(found) - 1} more)"
    return CheckResult("relevance", False, "soft", detail, len(found), evidence=tuple(found))
