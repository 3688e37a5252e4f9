"""Talk about the text itself or its request, anywhere in a section (English).

    "This is a blog post on how to read a stacktrace."           the text describing itself
    "Here's a sample of your writing with improved clarity and grammar:"
    "I hope to help you with any thing that might be helpful, I am a helper."
    "It sounds like you're sharing with someone who wants to improve their skills."
    "What do you think? Is there anything about this blog post that catches your eye?"
    "The text itself uses plain prose without headings or lists."   the instructions, paraphrased
    "#Python #TechTips"                                             a line of hashtags

`copydesk.qc.metatalk` cuts preambles and sign-offs addressed to the requester at a section's
edges; this check reads every sentence, for the text talking about itself, the request or the
writer (an AI disclaimer is `refusal`'s). Its repair (`trim: true`) cuts such a sentence where its
paragraph stands without it: two sentences or MIN_WORDS_LEFT words are left, and the next one does
not lean on it ("This ...", "It ..."); a line of hashtags is always cut; the instructions
paraphrased are never cut (a rewrite does better). What is left is a soft failure: the runner
writes the section again (`copydesk.qc.repair`), and holds the article if the new text still
talks about itself.

    qc:
      about_text:
        enabled: true
        trim: true
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft, Repair, repair_each
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.prose import document
from copydesk.text import extract_prose, primary_language, split_sentences

_TEXT = r"(?:blog\s+post|blog|article|post|piece|essay|write-?up|text|writing|draft|paragraphs?)"
_ABOUT = re.compile(
    rf"""(?:
        \b(?:this|the|my|our)\s+(?:[\w-]+\s+){{0,2}}?blog\s+posts?\b
      | \b(?:this|my|our)\s+(?:[\w-]+\s+){{0,1}}?(?:article|essay|write-?up|post)\b(?!-)
      | \bthe\s+article\b
      | \b(?:in|throughout)\s+this\s+(?:paragraph|text)\b
      | \bthis\s+(?:paragraph|text)\s+(?:will|covers?|discuss|explain|describe|focus|provide|highlight|is\s+about)
      | \byour\s+(?:[\w-]+\s+){{0,1}}?(?:writing|essay|article|blog|draft|text|prompt|question|paragraphs?)\b
      | \b(?:I\s+am|I'm|I’m)\s+(?:a|your)\s+(?:helper|assistant|chatbot)\b
      | \bI\s+hope\s+to\s+help\b | \bI(?:'m|’m|\s+am)\s+here\s+to\s+help\b
      | \bit\s+sounds\s+like\s+you\b | \byou(?:'re|’re|\s+are)\s+(?:sharing|asking|requesting)\b
      | \byou(?:'ve|’ve|\s+have)?\s+(?:asked|requested|shared|mentioned)\s+(?:me|for|about|that)\b
      | \b(?:sample|version|rewrite|revision)\s+of\s+your\b
      | \bimproved\s+(?:clarity|grammar|readability)\s+and\s+(?:clarity|grammar|readability|flow)\b
      | \b(?:rewritten|revised|edited|improved)\s+version\b
      | \b(?:stopped|ends?|ended|cut\s+off)\s+(?:abruptly|mid-?sentence)\b
      | \bwhat\s+do\s+you\s+think\b.{{0,40}}\? | \bcatch(?:es)?\s+your\s+eye\b
      | \b(?:any|your)\s+(?:thoughts|feedback)\b.{{0,40}}\?
      | \b(?:this|my)\s+{_TEXT}\b.{{0,80}}\?$
      | ^(?:Q|A|B)\s*:\s
      | \bhere(?:'s|’s|\s+is)\s+(?:a\s+)?(?:sample|example)\s+of\s+(?:what\s+I|my|writing|the\s+text)\b
      | \bcustomi[sz]e\s+(?:this|it)\s+to\s+(?:fit|suit)\s+your\s+needs\b
      | \bas\s+you\s+(?:mentioned|said|noted|requested)\b
      | \bin\s+this\s+piece\b | \bI\s+(?:will|'ll|’ll)\s+write\b
      | \bI(?:'m|’m|\s+am)\s+here\s+to\s+(?:assist|help)\b | \bI\s+made\s+a\s+few\s+changes\b
      | \b(?:rewritten|revised|edited|original)\s+text\b | \bgrammar\s+corrections\b
      | \bsample\s+of\s+(?:the\s+original|writing)\b
      | \b(?:the|this)\s+(?:content|text|writing)\s+is\s+(?:well|poorly|a\s+bit|too|very)\b
    )""",
    re.VERBOSE | re.IGNORECASE,
)
#: The instructions paraphrased: found, never trimmed (prompt_echo judges the same sentences,
#: and the section is better written again).
_INSTRUCTIONS = re.compile(
    r"""\bplain\s+prose\b | \bwithout\s+(?:any\s+)?headings\b | \bheadings\s+or\s+lists\b
      | \b(?:written|write|writing)\s+in\s+an?\s+\w+\s+tone\b""",
    re.VERBOSE | re.IGNORECASE,
)
_HASHTAGS = re.compile(r"^\s*(?:#[A-Za-z][\w-]*[\s,]*){1,}$")
#: A sentence opening that leans on the one before it.
_LEANS = re.compile(r"^\W*(?:this|that|these|those|it|its|they|their|such|so|thus|therefore|here|there|then)\b",
                    re.IGNORECASE)
#: Words a paragraph keeps, at least, to stand on its own with one sentence.
MIN_WORDS_LEFT = 20
_SENTENCE = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+""")
_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d{1,9}[.)]\s|#|\||>|    )")


def is_about_text(sentence: str) -> bool:
    """Whether the trim may cut `sentence` (instructions paraphrased are left for a rewrite)."""
    text = sentence.strip().lstrip("*_> ").strip()
    return bool(text) and not _INSTRUCTIONS.search(text) and bool(_ABOUT.search(text) or _HASHTAGS.match(text))


def about_findings(sections: Sequence[tuple[str, str]]) -> list[dict]:
    """One finding per sentence (of prose, list items included) that talks about the text or its request."""
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        hashtags = [line for line in body.split("\n") if _HASHTAGS.match(line)]
        for line in hashtags:
            found.append(finding(i, heading, line, where="body", kind="hashtags"))
        for sentence in split_sentences(extract_prose(body).countable_text()):
            text = sentence.strip().lstrip("*_> ")
            if _ABOUT.search(text) or _INSTRUCTIONS.search(text):
                found.append(finding(i, heading, sentence, where="body", kind="about_text"))
    return found


def _trim_paragraph(paragraph: str) -> tuple[str, list[str]]:
    """The paragraph without the sentences about the text that it stands without, and those cut."""
    sentences = [s for s in _SENTENCE.split(paragraph.strip()) if s.strip()]
    cut: list[str] = []
    kept = list(sentences)
    for sentence in sentences:
        if not is_about_text(sentence):
            continue
        at = kept.index(sentence)
        following = kept[at + 1] if at + 1 < len(kept) else ""
        rest = [s for s in kept if s is not sentence]
        stands = len(rest) >= 2 or sum(len(s.split()) for s in rest) >= MIN_WORDS_LEFT
        if stands and not _LEANS.match(following):
            kept.pop(at)
            cut.append(sentence.strip())
    return (" ".join(s.strip() for s in kept), cut) if cut else (paragraph, [])


def _fenced_lines(body: str) -> set[int]:
    """Line numbers (0-based) of `body`'s fenced code, fences included, from its one parse (copydesk.prose)."""
    doc = document(body)
    lines: set[int] = set()
    for first, (end, closed) in doc.fences.items():
        lines.update(range(doc.offset + first, doc.offset + end + (1 if closed else 0)))
    return lines


def trim_about_text(body: str) -> tuple[str, list[str]]:
    """`body` with hashtag lines cut, and sentences about the text cut from prose paragraphs
    where the paragraph stands without them (code, lists, tables and quotes are left alone)."""
    blocks = re.split(r"(\n\s*\n)", body)
    cut: list[str] = []
    fenced = _fenced_lines(body)
    line = 0  # the first line of blocks[n]
    for n in range(0, len(blocks), 2):
        block = blocks[n]
        lines = block.split("\n")
        first, line = line, line + len(lines) - 1 + (blocks[n + 1].count("\n") if n + 1 < len(blocks) else 0)
        if fenced.intersection(range(first, first + len(lines))):
            continue
        if all(_HASHTAGS.match(text) for text in lines if text.strip()):
            cut += [text.strip() for text in lines if text.strip()]
            blocks[n] = ""
            continue
        if _BLOCK_START.match(block):
            continue
        kept = [text for text in lines if not _HASHTAGS.match(text)]
        cut += [text.strip() for text in lines if _HASHTAGS.match(text)]
        paragraph, gone = _trim_paragraph("\n".join(kept)) if kept else ("", [])
        blocks[n] = paragraph
        cut += gone
    if not cut:
        return body, []
    text = "".join(blocks)
    return re.sub(r"\n{3,}", "\n\n", text).strip(), cut


class AboutTextPolicy(CheckPolicy):
    #: Cut a sentence about the text or its request where its paragraph stands without it.
    trim: bool = True


class AboutTextCheck(BaseCheck, key="about_text", policy=AboutTextPolicy):
    def applies(self, draft: Draft) -> bool:
        return primary_language(draft.language) == "en"

    def repair(self, draft: Draft) -> Repair | None:
        if not self.policy.trim or primary_language(draft.language) != "en":
            return None
        return repair_each(draft, trim_about_text, "trimmed", "talk about the text trimmed from {sections} section(s)")

    def run(self, draft: Draft) -> CheckResult:
        return CheckResult.from_findings(
            self.name, about_findings(draft.sections), "no talk about the text or its request",
            lambda first: f"talks about the text or its request in {place(first)}: \"{first['text']}\"",
            recorded=self.recorded(draft))
