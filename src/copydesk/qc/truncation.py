"""Trimming a section that max_tokens cut off, back to its last complete sentence.

    trim_incomplete("Retries help. They hide short outa")  -> ("Retries help.", "They hide short outa")

`qc.truncation: trim` applies it to every section whose generation ended with
finish_reason "length"; the default, `review`, leaves the text and sends the article
to review (`copydesk.qc.content.check_truncation`). Nothing is trimmed when no complete
sentence would be left, or when the cut would leave less than half of the section.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from copydesk.qc.check import BaseCheck, Draft, Repair
from copydesk.qc.content import CheckResult, check_truncation, findings_check
from copydesk.qc.evidence import excerpt, finding, place

#: The end of a sentence: . ! ? (then closing quotes/brackets) before whitespace or the end;
#: Chinese 。！？ anywhere.
_END = re.compile(r"""[.!?]["'”’)\]]*(?=\s|$)|[。！？]["'”’」』）)\]]*""")
#: Share of a section that trimming may remove, at most.
MAX_CUT_SHARE = 0.5


def trim_incomplete(body: str) -> tuple[str, str]:
    """`body` up to its last complete sentence, and what was cut ("" when nothing was)."""
    text = body.rstrip()
    ends = list(_END.finditer(text))
    if not ends:
        return body, ""
    last = ends[-1].end()
    if last >= len(text):
        return body, ""
    kept, cut = text[:last].rstrip(), text[last:].strip()
    if len(kept) < len(text) * (1 - MAX_CUT_SHARE):
        return body, ""
    return kept, cut


#: How a finished section may end: a sentence end, a colon before a list or code, a closing
#: bracket/quote after one, or the end of a code block, list item, table row or heading.
_FINISHED = re.compile(r"""(?:[.!?:;。！？：；…]["'”’」』）)\]*_`]*|[)\]）】」』"'”’*_`|>]|```|~~~)\s*$""")


def unfinished_findings(sections: Sequence[tuple[str, str]]) -> list[dict]:
    """Sections whose text stops mid-sentence although the server said it was done ("stop"):
    the last line of prose ends in a letter or digit or a comma, not a sentence end."""
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        lines = [line for line in body.rstrip().split("\n") if line.strip()]
        if not lines:
            continue
        last = lines[-1].rstrip()
        if last.lstrip().startswith(("#", "|", "-", "*", "+", "    ", ">")) or re.match(r"\s*\d+[.)]\s", last):
            continue
        if not _FINISHED.search(last):
            found.append(finding(i, heading, last[-80:], where="end"))
    return found


class TruncationCheck(BaseCheck):
    """Sections cut off by max_tokens (soft) or stopped by the content filter (hard); with
    `qc.truncation: trim` the cut-off ones are first trimmed to their last complete sentence."""

    name = "truncation"
    phase = "text"
    fields = {"truncation": (Literal["review", "trim"], Field(
        "review", description="A section cut off by max_tokens: review (keep it, hold the article) or trim "
        "(cut it back to its last complete sentence, recorded)."))}

    def enabled(self) -> bool:
        return True

    def repair(self, draft: Draft) -> Repair | None:
        if self.qc.truncation != "trim" or len(draft.finish_reasons) != len(draft.sections):
            return None
        sections, reasons = list(draft.sections), list(draft.finish_reasons)
        found: list[dict[str, Any]] = []
        for i, ((heading, body), reason) in enumerate(zip(sections, reasons)):
            if reason != "length":
                continue
            kept, cut = trim_incomplete(body)
            if cut:
                sections[i], reasons[i] = (heading, kept), "stop"
                found.append({"section": i + 1, "heading": heading, "action": "trimmed to the last sentence",
                              "text": excerpt(cut)})
        repaired = dataclasses.replace(draft, sections=sections, finish_reasons=reasons)
        return Repair(repaired, tuple(found), f"{len(found)} cut-off section(s) trimmed to the last complete sentence")

    def run(self, draft: Draft) -> CheckResult:
        result = check_truncation(list(draft.finish_reasons), [heading for heading, _ in draft.sections])
        trimmed = self.recorded(draft)
        if not trimmed:
            return result
        detail = f"{result.detail}; trimmed {len(trimmed)} cut-off section(s) to their last sentence"
        return dataclasses.replace(result, detail=detail, evidence=tuple(trimmed))


class UnfinishedCheck(BaseCheck, key="unfinished"):
    def run(self, draft: Draft) -> CheckResult:
        return check_unfinished(draft.sections)


#: A section that ends mid-sentence (the server said it stopped, not that max_tokens cut it:
#: that is the truncation check's). Soft.
check_unfinished = findings_check(
    "unfinished", unfinished_findings, "every section ends with a complete sentence",
    lambda first: f"{place(first)} stops mid-sentence: \"…{first['text']}\"")
