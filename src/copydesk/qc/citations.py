"""Unverifiable citations: claims credited to a study, survey, paper or report the text cannot show.

    "According to a 2021 study by the University of Cambridge, 73% of teams ..."
    "A 2019 survey by Stack Overflow found that 64 percent of developers ..."
    "As Smith et al. (2018) showed ..."      "根据2020年清华大学的一项研究，……"

Models invent such sources (and the statistics that come with them) more than any
other fact; an editor cannot publish them unchecked. Lexical: a sentence that credits
a dated or named study/survey/report/paper, or cites "Name et al.". It cannot
tell a real citation from an invented one — both go to review, so a pipeline that
wants cited facts should turn this check off (`qc.citations.enabled: false`). Prose
only (code is not read). Soft.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from copydesk.qc.check import BaseCheck, Draft
from copydesk.qc.content import CheckResult, findings_check
from copydesk.qc.evidence import finding, place
from copydesk.text import extract_prose, split_sentences

_SOURCE = r"(?:study|survey|report|paper|analysis|poll|research|experiment|white\s*paper|benchmark)"
_CITATION = re.compile(
    rf"""
    \baccording\s+to\s+(?:a|an|the)\s+(?:recent\s+)?(?:\d{{4}}\s+)?(?:[\w-]+\s+){{0,3}}{_SOURCE}\b
  | \b(?:a|an|the)\s+(?:recent\s+)?(?:\d{{4}}\s+)?{_SOURCE}\s+(?:by|from|conducted\s+by|published\s+(?:by|in))\s+[A-Z]
  | \b(?:in|from)\s+(?:a|an)\s+(?:\d{{4}}\s+)?{_SOURCE}\s+(?:published|conducted|released)\b
  | \b[A-Z][a-z]+\s+et\s+al\.
  | \b(?:studies|research|surveys)\s+(?:have\s+)?(?:show|shown|found|suggest)s?\s+that\s+[^.]{{0,60}}\d+\s*(?:%|percent)
  | (?:根据|据)(?:\d{{4}}年)?.{{0,20}}(?:的)?(?:一项|一份)?(?:研究|调查|报告|统计)
  | (?:研究|调查|报告)(?:表明|显示|发现).{{0,30}}\d+\s*%
    """,
    re.VERBOSE | re.IGNORECASE,
)


def citation_findings(sections: Sequence[tuple[str, str]]) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        for sentence in split_sentences(extract_prose(body).countable_text()):
            if _CITATION.search(sentence):
                found.append(finding(i, heading, sentence))
    return found


check_citations = findings_check(
    "citations", citation_findings, "no study, survey or paper cited",
    lambda first: f"cites a source that cannot be checked in {place(first)}: \"{first['text']}\"")


class CitationsCheck(BaseCheck, key="citations"):
    def run(self, draft: Draft) -> CheckResult:
        return check_citations(draft.sections)
