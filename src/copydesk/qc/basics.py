"""The article-level text checks as components: length, outline coverage, repetition.

Their settings are the `qc:` section's plain keys (`min_words`, `max_words`,
`require_outline_coverage`, `max_repetition`), as they always were; the checks themselves are
the pure functions of `copydesk.qc.content`.
"""

from __future__ import annotations

from pydantic import Field

from copydesk.qc.check import BaseCheck, Draft
from copydesk.qc.content import (
    CheckResult,
    check_length,
    check_outline_coverage,
    check_repetition,
    check_section_repetition,
)
from copydesk.text import count_words, plain_text


class LengthCheck(BaseCheck):
    name = "length"
    phase = "text"
    fields = {"min_words": (int, Field(300, ge=0)), "max_words": (int | None, Field(None, ge=1))}

    def enabled(self) -> bool:
        return True

    def run(self, draft: Draft) -> CheckResult:
        words = count_words(plain_text(draft.markdown), self.env.language)
        return check_length(words, self.qc.min_words, self.qc.max_words)


class OutlineCoverageCheck(BaseCheck):
    name = "outline_coverage"
    phase = "text"
    fields = {"require_outline_coverage": (bool, Field(True))}

    def enabled(self) -> bool:
        return bool(self.qc.require_outline_coverage)

    def run(self, draft: Draft) -> CheckResult:
        return check_outline_coverage(list(draft.outline), list(draft.sections))


class RepetitionCheck(BaseCheck):
    name = "repetition"
    phase = "text"
    fields = {"max_repetition": (float, Field(0.25, ge=0.0, le=1.0))}

    def enabled(self) -> bool:
        return True

    def run(self, draft: Draft) -> CheckResult:
        if draft.sections:
            return check_section_repetition(list(draft.sections), self.env.language, self.qc.max_repetition)
        return check_repetition(draft.markdown, self.env.language, self.qc.max_repetition)
