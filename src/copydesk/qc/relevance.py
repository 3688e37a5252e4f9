"""Relevance: the title and each section relate to the topic, by shared content words.

    check_relevance("Retries in Prefect", "Retry policies that work", sections, "en-US",
                    min_shared_terms=1, min_article_overlap=0.05)

Lexical, deliberately simple and configurable (`qc.relevance`):

- the title must share `min_shared_terms` content terms with the topic;
- a section is off-topic when its heading and body share fewer than
  `min_shared_terms` terms with the topic and title *and* less than
  `min_article_overlap` of its terms appear anywhere else in the article.
  (Measured on the evaluation set: sections of real reference pages often never
  repeat the topic's words, "Event Objects" under "threading", so the topic alone
  cannot decide; the rest of the article is the better witness.)

- optionally (`min_topic_coverage`, default 0: off), at least that share of the
  topic's terms must appear somewhere in the headings and bodies.

Terms are stemmed words without stopwords (`copydesk.qc.terms`; Chinese: character
bigrams; Latin words inside Chinese text count as words). Words that say nothing about
a subject ("guide", "introduction", "overview", "tips", "explained", `GENERIC`) and the
spec's own `ignore_terms` (a brand that every title carries) do not count as shared:
"A practical guide to baking bread" shares nothing with the topic "a guide to retries". It sees a section about something else entirely that borrows no words
from the article; it cannot see one that shares the article's vocabulary while
being about something else, nor one that uses the topic's words to say something
wrong or empty. Soft.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import content_terms, stem
from copydesk.text import plain_text


#: Words of titles and headings that say nothing about the subject (stemmed like every term).
GENERIC = frozenset(
    stem(w) for w in """guide guides introduction intro overview tips tricks basics explained practical complete
    ultimate beginner beginners understanding primer tutorial essentials everything""".split()
)


def check_relevance(
    topic: str,
    title: str,
    sections: Sequence[tuple[str, str]],
    language: str,
    min_shared_terms: int,
    min_article_overlap: float = 0.05,
    *,
    min_topic_coverage: float = 0.0,
    ignore_terms: Sequence[str] = (),
) -> CheckResult:
    ignored = GENERIC | {t for word in ignore_terms for t in content_terms(word, language)}
    topic_terms = content_terms(topic, language) - ignored
    if not topic_terms:
        return CheckResult("relevance", True, "soft", "the topic has no content words to compare", None)
    found = []
    title_terms = content_terms(title, language) - ignored
    if title and len(title_terms & topic_terms) < min_shared_terms:
        found.append(finding(None, None, title, where="title"))
    wanted = topic_terms | title_terms if title_terms & topic_terms else topic_terms
    per_section = [content_terms(h + "\n" + plain_text(b, keep_code=False), language) - ignored for h, b in sections]
    for i, (heading, _body) in enumerate(sections):
        terms = per_section[i]
        if not terms or len(terms & wanted) >= min_shared_terms:
            continue
        rest = set().union(*(t for j, t in enumerate(per_section) if j != i))
        overlap = len(terms & rest) / len(terms)
        if overlap < min_article_overlap:
            found.append(finding(i + 1, heading, heading, where="section", article_overlap=round(overlap, 3)))
    covered = topic_terms & set().union(*per_section) if per_section else set()
    coverage = len(covered) / len(topic_terms)
    if min_topic_coverage > 0 and sections and coverage < min_topic_coverage:
        found.append(finding(None, None, ", ".join(sorted(topic_terms - covered)[:10]), where="article",
                             topic_coverage=round(coverage, 3)))
    if not found:
        return CheckResult("relevance", True, "soft", "the title and every section relate to the topic", 0)
    first = found[0]
    what = f"the title \"{first['text']}\"" if first["section"] is None else place(first)
    detail = f"{what} shares no words with the topic {topic!r}"
    if first.get("where") == "article":
        detail = (f"the article uses {first['topic_coverage']:.0%} of the topic's words {topic!r} "
                  f"(missing: {first['text']})")
    elif first["section"] is not None:
        detail = f"{what} shares no words with the topic {topic!r} and almost none with the rest of the article"
    return CheckResult.found("relevance", detail, found)


class RelevancePolicy(CheckPolicy):
    #: Content words (Chinese: character pairs) a title, or a section's heading and body, must share with the topic.
    min_shared_terms: int = Field(1, ge=1, le=20)
    #: A section sharing none with the topic is off-topic when less than this share of its terms is found
    #: anywhere else in the article.
    min_article_overlap: float = Field(0.05, ge=0.0, le=1.0)
    #: Share of the topic's terms the headings and bodies must use somewhere (0: not checked).
    min_topic_coverage: float = Field(0.0, ge=0.0, le=1.0)
    #: Words that never count as shared (a brand or series name every title carries).
    ignore_terms: list[str] = Field(default_factory=list)


class RelevanceCheck(BaseCheck, key="relevance", policy=RelevancePolicy):
    def applies(self, draft: Draft) -> bool:
        return bool(draft.topic)

    def run(self, draft: Draft) -> CheckResult:
        p = self.policy
        return check_relevance(draft.topic, draft.title, draft.sections, draft.language, p.min_shared_terms,
                               p.min_article_overlap, min_topic_coverage=p.min_topic_coverage,
                               ignore_terms=p.ignore_terms)
