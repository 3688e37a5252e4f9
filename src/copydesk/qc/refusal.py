"""Refusals and AI disclaimers: text in which the model talks about itself instead of the topic.

    check_refusal(sections) -> CheckResult("refusal", ...)

English and Chinese, the languages of the example pipelines. Two kinds:

    refusal     "I'm sorry, but I cannot help with that", "我无法提供" -> hard: the section
                has no content, there is nothing for an editor to fix
    disclaimer  "As an AI language model, I don't have personal opinions",
                "as of my knowledge cutoff", "作为一个人工智能" -> soft

Inline code and code blocks are not read (a string in an example is not the model speaking).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from copydesk.qc.check import BaseCheck, Draft
from copydesk.qc.content import CheckResult, Severity
from copydesk.qc.evidence import finding, place
from copydesk.text import extract_prose, split_sentences

_REFUSAL = re.compile(
    r"""
    \bI(?:'m|\s+am|’m)\s+(?:sorry|afraid),?\s+(?:but\s+)?I\s+(?:can(?:not|'t|’t)|am\s+(?:unable|not\s+able)|won't)
  | \bI\s+(?:can(?:not|'t|’t)|am\s+(?:unable|not\s+able)\s+to|won't)\s+(?:help|assist|comply|fulfil+|provide|write|generate|create|complete|do\s+that)
  | \bI(?:'m|\s+am|’m)\s+(?:unable|not\s+able)\s+to\s+(?:help|assist|comply|fulfil+|provide|write|generate|create|complete)
  | \bI\s+(?:won't|won’t|will\s+not)\s+be\s+able\s+to\s+(?:help|assist|comply|fulfil+|provide|write|generate|create|complete|do\s+that)
  | \bI\s+must\s+(?:decline|refuse)
  | (?:抱歉|对不起|很遗憾)[，,。！!]?\s*(?:我|但我)(?:无法|不能|没法|不可以)
  | 我(?:无法|不能|没法)(?:为你|为您|帮你|帮您)?(?:提供|帮助|协助|完成|撰写|编写|回答|生成|满足)
    """,
    re.VERBOSE | re.IGNORECASE,
)
_DISCLAIMER = re.compile(
    r"""
    \bas\s+an?\s+(?:AI|artificial\s+intelligence)(?:\s+(?:language\s+)?(?:model|assistant|system))?\b
  | \bas\s+a\s+(?:large\s+)?language\s+model\b
  | \bI(?:'m|\s+am|’m)\s+(?:just\s+|only\s+)?an?\s+(?:AI|language\s+model|large\s+language\s+model|chatbot)\b
  | \bI\s+(?:do\s+not|don't|don’t)\s+have\s+(?:personal|real-time|access\s+to\s+(?:the\s+internet|real-time|current))
  | \b(?:my|the)\s+(?:knowledge|training(?:\s+data)?)\s+cut-?off\b
  | \bas\s+of\s+my\s+(?:last\s+)?(?:knowledge\s+|training\s+)?(?:update|cut-?off)\b
  | \bthis\s+(?:article|section|text|content)\s+(?:was|has\s+been|is)\s+(?:generated|written)\s+by\s+(?:an?\s+)?AI\b
  | 作为(?:一[个名种])?(?:AI|人工智能|语言模型|大型语言模型)(?:语言模型|助手|模型)?
  | 我(?:只是|是)(?:一[个名])?(?:AI|人工智能|语言模型)
  | 截至我的(?:知识|训练)
  | 我(?:没有|无法访问)(?:个人|实时|互联网)
    """,
    re.VERBOSE | re.IGNORECASE,
)


def refusal_findings(sections: Sequence[tuple[str, str]]) -> list[tuple[str, dict]]:
    """(kind, evidence) for every refusal or disclaimer sentence; kind is "refusal" or "disclaimer"."""
    found: list[tuple[str, dict]] = []
    for i, (heading, body) in enumerate(sections, start=1):
        prose = extract_prose(body).countable_text()
        for sentence in split_sentences(prose):
            if _REFUSAL.search(sentence):
                found.append(("refusal", finding(i, heading, sentence, kind="refusal")))
            elif _DISCLAIMER.search(sentence):
                found.append(("disclaimer", finding(i, heading, sentence, kind="disclaimer")))
        for kind, pattern in (("refusal", _REFUSAL), ("disclaimer", _DISCLAIMER)):
            if pattern.search(heading):
                found.append((kind, finding(i, heading, heading, kind=kind, where="heading")))
    return found


def check_refusal(sections: Sequence[tuple[str, str]]) -> CheckResult:
    """A refusal is hard, an AI disclaimer soft; the evidence quotes each sentence."""
    found = refusal_findings(sections)
    if not found:
        return CheckResult("refusal", True, "hard", "no refusal or AI disclaimer", 0)
    severity: Severity = "hard" if any(kind == "refusal" for kind, _ in found) else "soft"
    kind, first = next((k, e) for k, e in found if severity == "soft" or k == "refusal")
    detail = f"{kind} in {place(first)}: \"{first['text']}\""
    return CheckResult.found("refusal", detail, found, severity=severity, evidence=[e for _, e in found])


class RefusalCheck(BaseCheck, key="refusal"):
    def run(self, draft: Draft) -> CheckResult:
        return check_refusal(draft.sections)
