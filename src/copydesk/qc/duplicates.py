"""A section that repeats another section of the same article.

    check_section_duplicates(sections, "en-US", max_overlap=0.5)

Each section's word 5-grams (character 8-grams in Chinese and Japanese) are compared
with every earlier section's: the share of a section's n-grams already written
earlier (containment) above `max_overlap` fails the later section (soft). A copied
section scores 1.0; sections on one topic that share a phrase or two score under 0.1.
Code blocks are left out (set-up code recurs legitimately).
"""

from __future__ import annotations

from collections.abc import Sequence

from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import shingle_size, shingles, tokens
from copydesk.text import plain_text

#: Sections with fewer n-grams than this are too short to call a copy.
MIN_SHINGLES = 8


def check_section_duplicates(sections: Sequence[tuple[str, str]], language: str, max_overlap: float) -> CheckResult:
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
    if not found:
        return CheckResult("duplication", True, "soft", "no section repeats another", 0)
    first = found[0]
    detail = (f"{place(first)} repeats section {first['copies_section']} {first['copies_heading']!r} "
              f"({first['overlap']:.0%} of its wording)")
    if len(found) > 1:
        detail += f" (+{len(found) - 1} more)"
    return CheckResult("duplication", False, "soft", detail, len(found), evidence=tuple(found))
