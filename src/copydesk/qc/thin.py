"""Thin sections: far shorter than the slot their max_tokens gives them.

    check_thin_sections(sections, "en-US", max_tokens=157, min_share=0.2, min_words=40)
    -> a 16-word section fails: max_tokens 157 allows ~118 words, 16 is under 20 % of that
       and under 40 words

Both conditions must hold, so a terse but complete section in a generous slot (60
words where 600 tokens allow 450) passes. Words per token: 0.75 in English and
other space-separated languages, 1.0 character per token in Chinese and Japanese
(the usual figures for OpenAI's tokenizers). A thin section is a soft failure.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.text import count_words, is_cjk_language, plain_text


def slot_words(max_tokens: int, language: str) -> float:
    """About how many words `max_tokens` tokens hold in `language`."""
    return max_tokens * (1.0 if is_cjk_language(language) else 0.75)


def check_thin_sections(
    sections: Sequence[tuple[str, str]], language: str, max_tokens: int, min_share: float, min_words: int
) -> CheckResult:
    slot = slot_words(max_tokens, language)
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        n = count_words(plain_text(body), language)
        if n < min_share * slot and n < min_words:
            found.append(finding(i, heading, body, words=n, slot_words=round(slot)))
    return CheckResult.from_findings(
        "thin_sections", found, f"no section under {min_words} words",
        lambda first: f"{place(first)} has {first['words']} words where max_tokens {max_tokens} allows ~{round(slot)}")


class ThinSectionsPolicy(CheckPolicy):
    #: A section is thin when it is shorter than this share of what its max_tokens allows...
    min_share: float = Field(0.2, ge=0.0, le=1.0)
    #: ...and shorter than this many words (characters in Chinese and Japanese).
    min_words: int = Field(40, ge=0, le=100_000)


class ThinSectionsCheck(BaseCheck, key="thin_sections", policy=ThinSectionsPolicy):
    def applies(self, draft: Draft) -> bool:
        return draft.section_max_tokens is not None

    def run(self, draft: Draft) -> CheckResult:
        return check_thin_sections(draft.sections, draft.language, draft.section_max_tokens or 0,
                                   self.policy.min_share, self.policy.min_words)
