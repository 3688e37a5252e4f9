"""Meta-talk: preambles and sign-offs addressed to the requester, not to the reader.

    "Sure! Here is section 2 of the article, written for engineers as you asked:"
    "I hope this helps! Let me know if you need anything else."
    "好的，以下是本节内容：" / "希望对您有所帮助。"

`trim_meta_talk(body)` cuts such sentences from the start of the first paragraph and
the end of the last one, sentence by sentence, and returns what it cut.
`check_meta_talk(sections)` fails (soft) for any meta-talk still present: in the
middle of a section, or everywhere when trimming is off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft, Repair, repair_each
from copydesk.qc.content import CheckResult, findings_check
from copydesk.qc.evidence import finding, place
from copydesk.text import extract_prose, split_sentences

_OPENER = re.compile(
    r"""^\W*(?:
        (?:sure|certainly|of\s+course|absolutely|okay|ok|great(?:\s+question)?|alright|got\s+it)\s*[!.,:]*\s*$
      | (?:sure|certainly|of\s+course|absolutely|okay|alright)[!.,]?\s+(?:here|below|i\b|let)
      | here(?:'s|’s|\s+is|\s+are)\s+(?:the\s+|a\s+|an\s+|your\s+|my\s+)?(?:[\w-]+\s+){0,3}
            (?:section|paragraphs?|article|draft|blog|text|content|version|outline|rewrite|expansion|response|answer)
      | (?:below|the\s+following)\s+is\s+(?:the\s+|a\s+|an\s+|your\s+)?(?:[\w-]+\s+){0,2}
            (?:section|paragraphs?|article|draft|text|content|version|response)
      | as\s+(?:you\s+)?requested\b | as\s+you\s+asked\b | per\s+your\s+request\b | as\s+instructed\b
      | note\s+(?:to|for)\s+(?:the\s+)?(?:editor|requester|user|reviewer)s?\b
      | in\s+this\s+section,?\s+(?:i|we)\s+will\s+(?:write|provide|expand)
      | (?:好的|当然|没问题)[，,！!。]
      | (?:以下|下面)(?:是|为)(?:本节|这一节|该节|第.{1,3}节|文章|段落|您|你|为您|扩写|正文|内容)
      | (?:根据|按照)(?:您|你)的要求
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_CLOSER = re.compile(
    r"""(?:
        \bI\s+hope\s+(?:this|that|these|it|you)\b.{0,40}\b(?:helps?|useful|find|enjoy)
      | \blet\s+me\s+know\s+if\b | \bfeel\s+free\s+to\s+(?:ask|reach|let|contact)
      | \bif\s+you\s+(?:need|have|would\s+like|want|'d\s+like)\s+(?:any\s+)?(?:more|further|additional|other)\s+
            (?:help|changes|revisions|examples|information|details|questions|assistance|sections?)\b
      | \bif\s+you\s+(?:need|have|would\s+like|want|'d\s+like)\s+(?:any\s+)?(?:changes|revisions|edits)\b
      | \bif\s+you(?:'d|\s+would)?\s+(?:like|want)\s+me\s+to\b
      | \bwould\s+you\s+like\s+me\s+to\b | \bhappy\s+to\s+help\b | \bshall\s+I\s+(?:continue|write|expand)
      | \b(?:do\s+not|don't|don’t)\s+hesitate\s+to\s+(?:ask|reach|contact)\b | \bas\s+instructed\b
      | \bnote\s+(?:to|for)\s+(?:the\s+)?(?:editor|requester|reviewer)s?\b
      | \bthe\s+user(?:'s|’s|s')?\s+(?:request|prompt|instructions?)\b
      | (?:欢迎|请)随时(?:提问|告诉我|联系|反馈) | 需要我.{0,15}吗 | (?:还有|有任何)(?:其他|别的)?问题.{0,6}(?:告诉我|问我|提问)
      | \bas\s+(?:you\s+)?requested\b | \bas\s+you\s+asked\b
      | 希望(?:这|以上|本节|本文|这些|以上内容)?.{0,8}(?:对(?:你|您)有(?:所)?帮助|有所帮助|能帮到)
      | 如(?:果)?(?:你|您)(?:还)?(?:有|需要)(?:其他|任何|更多|进一步)
      | (?:根据|按照)(?:您|你)的要求
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_FIRST_SENTENCE = re.compile(r"^\s*.*?(?:[.!?:。！？：](?=\s|$)|[。！？：]|$)", re.DOTALL)
_LAST_SENTENCE = re.compile(r"(?:^|(?<=[.!?:。！？：]))\s*[^.!?:。！？：]*[.!?:。！？：]*\s*$")


def _is_meta(sentence: str) -> bool:
    text = sentence.strip().lstrip("*_# >").strip()
    return bool(text) and bool(_OPENER.search(text) or _CLOSER.search(text))


def trim_meta_talk(body: str) -> tuple[str, list[str]]:
    """`body` without meta-talk sentences at its start and end, and the sentences cut.

    Only whole sentences are cut, only at the edges. If nothing of substance would be
    left, nothing is cut (an all-meta section is for the check to report)."""
    paragraphs = re.split(r"\n\s*\n", body.strip())
    cut: list[str] = []
    while paragraphs:
        first = paragraphs[0]
        match = _FIRST_SENTENCE.match(first)
        if not match or not match.group(0).strip() or not _is_meta(match.group(0)):
            break
        cut.append(match.group(0).strip())
        rest = first[match.end():].strip()
        if rest:
            paragraphs[0] = rest
        else:
            paragraphs.pop(0)
    while paragraphs:
        last = paragraphs[-1]
        match = _LAST_SENTENCE.search(last)
        if not match or not match.group(0).strip() or not _is_meta(match.group(0)):
            break
        cut.append(match.group(0).strip())
        rest = last[: match.start()].rstrip()
        if rest:
            paragraphs[-1] = rest
        else:
            paragraphs.pop()
    left = "\n\n".join(paragraphs)
    if not cut or not any(ch.isalnum() for ch in left) or len(left) < len(body.strip()) * 0.3:
        return body, []
    return left, cut


def meta_findings(sections: Sequence[tuple[str, str]]) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        if _is_meta(heading):
            found.append(finding(i, heading, heading, where="heading"))
        for sentence in split_sentences(extract_prose(body).countable_text()):
            if _is_meta(sentence):
                found.append(finding(i, heading, sentence, where="body"))
    return found


#: `check_meta_talk(sections, trimmed=())`: meta-talk left in the sections is a soft failure; what was
#: cut (`trimmed`) is recorded.
check_meta_talk = findings_check(
    "meta_talk", meta_findings, "no meta-talk",
    lambda first: f"talks to the requester in {place(first)}: \"{first['text']}\"")


class MetaTalkPolicy(CheckPolicy):
    #: Cut a preamble or sign-off addressed to the requester when what is left is clean text.
    trim: bool = True


class MetaTalkCheck(BaseCheck, key="meta_talk", policy=MetaTalkPolicy):
    def repair(self, draft: Draft) -> Repair | None:
        if not self.policy.trim:
            return None
        return repair_each(draft, trim_meta_talk, "trimmed", "meta-talk trimmed from {sections} section(s)")

    def run(self, draft: Draft) -> CheckResult:
        return check_meta_talk(draft.sections, self.recorded(draft),
                               repaired="trimmed meta-talk from {sections} section(s)")
