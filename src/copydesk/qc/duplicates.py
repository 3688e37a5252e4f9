"""A section that repeats another section of the same article.

    check_section_duplicates(sections, "en-US", max_overlap=0.5)

Each section's word 5-grams (character 8-grams in Chinese and Japanese) are compared
with every earlier section's: the share of a section's n-grams already written
earlier (containment) above `max_overlap` fails the later section (soft). A copied
section scores 1.0; sections on one topic that share a phrase or two score under 0.1.
Code blocks are left out (set-up code recurs legitimately).

Headings are compared too: a heading whose content terms (stemmed, `copydesk.qc.terms`)
are those of an earlier heading, or share HEADING_OVERLAP of what they add to the topic's
terms (Jaccard, 2+ terms; "Security best practices for feature flags" does not repeat
"Best practices for feature flags" in an article on feature flags),
repeats it ("Listing Cached Query List" after "Listing Cache Query List": a small model's
outline). Such a finding is on the heading (the outline), not the section's body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import content_terms, shingle_size, shingles, tokens
from copydesk.text import plain_text

#: Sections with fewer n-grams than this are too short to call a copy.
MIN_SHINGLES = 8
#: Share of two headings' terms in common (Jaccard) at which the later repeats the earlier.
HEADING_OVERLAP = 0.75


def heading_repeats(headings: Sequence[str], language: str, topic: str = "") -> list[tuple[int, int]]:
    """(later, earlier) 0-based pairs of headings that say the same thing: the same terms, or
    HEADING_OVERLAP of what they add to the topic's own terms (every heading may repeat those)."""
    terms = [content_terms(h, language) for h in headings]
    common = content_terms(topic, language) if topic else set()
    pairs = []
    for j in range(len(headings)):
        for i in range(j):
            a, b = terms[i] - common, terms[j] - common
            if terms[i] and terms[i] == terms[j]:
                pairs.append((j, i))
                break
            if not a or not b:
                continue
            if a == b or (len(a | b) >= 2 and len(a & b) / len(a | b) >= HEADING_OVERLAP):
                pairs.append((j, i))
                break
    return pairs


def check_section_duplicates(
    sections: Sequence[tuple[str, str]], language: str, max_overlap: float, topic: str = ""
) -> CheckResult:
    n = shingle_size(language)
    grams = [shingles(tokens(plain_text(body, keep_code=False), language), n) for _, body in sections]
    found = []
    for j, (heading, body) in enumerate(sections):
        if len(grams[j]) < MIN_SHINGLES:
            continue
        for i in range(j):
            if not grams[i]:
                continue
            overlap = len(grams[j] & grams[i]) / len(grams[j])
            if overlap > max_overlap:
                found.append(finding(j + 1, heading, body, copies_section=i + 1,
                                     copies_heading=sections[i][0], overlap=round(overlap, 3)))
                break
    for j, i in heading_repeats([h for h, _ in sections], language, topic):
        found.append(finding(j + 1, sections[j][0], sections[j][0], where="heading", copies_section=i + 1,
                             copies_heading=sections[i][0], overlap=1.0))
    return CheckResult.from_findings("duplication", found, "no section repeats another", _describe)


def _describe(first: dict[str, Any]) -> str:
    if first.get("where") == "heading":
        return f"{place(first)} repeats the heading of section {first['copies_section']} {first['copies_heading']!r}"
    return (f"{place(first)} repeats section {first['copies_section']} {first['copies_heading']!r} "
            f"({first['overlap']:.0%} of its wording)")


class DuplicationPolicy(CheckPolicy):
    #: Share of a section's word 5-grams found in another section of the same article.
    max_section_overlap: float = Field(0.5, gt=0.0, le=1.0)


class DuplicationCheck(BaseCheck, key="duplication", policy=DuplicationPolicy):
    def run(self, draft: Draft) -> CheckResult:
        return check_section_duplicates(draft.sections, draft.language, self.policy.max_section_overlap, draft.topic)
