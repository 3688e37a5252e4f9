"""Prompt echo: headings or sentences that copy the prompt's own instructions.

    check_prompt_echo(outline, outline_prompt, sections, section_prompts, fills,
                      heading_words=4, sentence_words=8)

The *instructions* of a rendered prompt are its text with the values the pipeline
filled in cut out (`fills`: topic and title; for section prompts also the outline's
headings, which were filled into them), so that repeating the
topic is not an echo but "Listing five short section headings for it, numbered 1
to 5" is, for the prompt "List five short section headings for it, numbered 1 to 5".
Words are compared stemmed and case-folded (`copydesk.qc.terms`); a run of
`heading_words` words shared with the outline prompt's instructions makes a heading
an echo, a run of `sentence_words` words shared with its own section prompt makes
a sentence one (Chinese and Japanese: twice as many characters). A sentence also
echoes when `sentence_share` or more of its words sit in 3-word phrases of the
instructions (a paraphrase: "This part is written for engineers who already know the
basics, in full paragraphs" for "...for engineers who already know the basics; use full
paragraphs..."; sentences of 6+ words). Soft.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import shingles, tokens
from copydesk.text import extract_prose, is_cjk_language, split_sentences, strip_inline


#: The phrase length (words) of the coverage measure.
PHRASE = 3


def instruction_shingles(prompt: str, fills: Sequence[str], n: int, language: str) -> set[tuple[str, ...]]:
    """n-grams of the prompt's instruction text, never spanning a filled-in value."""
    grams: set[tuple[str, ...]] = set()
    for seq in _instruction_segments(prompt, tuple(fills), language):
        if len(seq) >= n:
            grams |= shingles(seq, n)
    return grams


@lru_cache(maxsize=64)
def _instruction_segments(prompt: str, fills: tuple[str, ...], language: str) -> tuple[tuple[str, ...], ...]:
    """The tokens of each piece of `prompt` between filled-in values (kept: the check reads every
    section prompt twice, for two n-gram sizes)."""
    text = prompt
    for value in sorted({f.strip() for f in fills if f and f.strip()}, key=len, reverse=True):
        text = _cut(text, value)
    return tuple(tuple(tokens(segment, language)) for segment in text.split(_MARK))


_MARK = "\u241e"


def _cut(text: str, value: str) -> str:
    """`text` with every occurrence of `value`, in any case, replaced by a line holding _MARK:
    `re.sub(re.escape(value), "\\n" + _MARK + "\\n", text, flags=re.IGNORECASE)`, without compiling
    a pattern for each value when both are ASCII (then the same matches: ASCII letters match
    their other case only, and no ASCII character matches _MARK; `lower` keeps offsets)."""
    if value.isascii() and text.replace(_MARK, "").isascii():
        lowered, key = text.lower(), value.lower()
        parts, pos = [], 0
        while (found := lowered.find(key, pos)) != -1:
            parts += [text[pos:found], "\n" + _MARK + "\n"]
            pos = found + len(key)
        return "".join([*parts, text[pos:]])
    return re.sub(re.escape(value), "\n" + _MARK + "\n", text, flags=re.IGNORECASE)


def _echoes(text: str, grams: set[tuple[str, ...]], n: int, language: str) -> bool:
    return _seq_echoes(tokens(text, language), grams, n)


def _seq_echoes(seq: list[str], grams: set[tuple[str, ...]], n: int) -> bool:
    return len(seq) >= n and any(tuple(seq[i : i + n]) in grams for i in range(len(seq) - n + 1))


def _covered(text: str, grams: set[tuple[str, ...]], n: int, language: str) -> float:
    """Share of `text`'s words inside an n-gram it shares with the instructions (a paraphrase
    that reuses the prompt's phrases in another order or with words changed)."""
    return _seq_covered(tokens(text, language), grams, n)


def _seq_covered(seq: list[str], grams: set[tuple[str, ...]], n: int) -> float:
    if len(seq) < max(6, 2 * n):
        return 0.0
    hit = [False] * len(seq)
    for i in range(len(seq) - n + 1):
        if tuple(seq[i : i + n]) in grams:
            hit[i : i + n] = [True] * n
    return sum(hit) / len(seq)


def check_prompt_echo(
    outline: Sequence[str],
    outline_prompt: str | None,
    sections: Sequence[tuple[str, str]],
    section_prompts: Sequence[str | None],
    fills: Sequence[str],
    language: str,
    heading_words: int,
    sentence_words: int,
    sentence_share: float = 1.0,
) -> CheckResult:
    if is_cjk_language(language):  # one token per character: about two characters a word
        heading_words, sentence_words = 2 * heading_words, 2 * sentence_words
    found = []
    if outline_prompt:
        grams = instruction_shingles(outline_prompt, fills, heading_words, language)
        for i, heading in enumerate(outline, start=1):
            if _echoes(strip_inline(heading), grams, heading_words, language):
                found.append(finding(i, heading, heading, where="heading", prompt="outline"))
    for i, ((heading, body), prompt) in enumerate(zip(sections, section_prompts), start=1):
        if not prompt:
            continue
        grams = instruction_shingles(prompt, [*fills, *outline], sentence_words, language)
        short = instruction_shingles(prompt, [*fills, *outline], PHRASE, language)
        for sentence in split_sentences(extract_prose(body).countable_text()):
            seq = tokens(sentence, language)
            if _seq_echoes(seq, grams, sentence_words) or (
                    sentence_share < 1.0 and _seq_covered(seq, short, PHRASE) >= sentence_share):
                found.append(finding(i, heading, sentence, where="body", prompt="expansion"))
    return CheckResult.from_findings(
        "prompt_echo", found, "no heading or sentence copies the prompt",
        lambda first: f"{place(first)} {first['where']} copies the {first['prompt']} prompt: \"{first['text']}\"")


class PromptEchoPolicy(CheckPolicy):
    #: A heading sharing a run of this many words with the prompt's own instructions echoes it.
    heading_words: int = Field(4, ge=2, le=20)
    #: A sentence sharing a run of this many words with the instructions echoes it.
    sentence_words: int = Field(8, ge=3, le=50)
    #: ...or has this share of its words in 3-word phrases of the instructions (1.0: off).
    sentence_share: float = Field(0.5, gt=0.0, le=1.0)


class PromptEchoCheck(BaseCheck, key="prompt_echo", policy=PromptEchoPolicy):
    def applies(self, draft: Draft) -> bool:
        return bool(draft.outline_prompt or any(draft.section_prompts))

    def run(self, draft: Draft) -> CheckResult:
        p = self.policy
        return check_prompt_echo(draft.outline, draft.outline_prompt, draft.sections, draft.section_prompts,
                                 draft.fills, draft.language, p.heading_words, p.sentence_words, p.sentence_share)
