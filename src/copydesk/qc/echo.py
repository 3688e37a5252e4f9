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

from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.qc.terms import shingles, tokens
from copydesk.text import extract_prose, is_cjk_language, split_sentences, strip_inline


#: The phrase length (words) of the coverage measure.
PHRASE = 3


def instruction_shingles(prompt: str, fills: Sequence[str], n: int, language: str) -> set[tuple[str, ...]]:
    """n-grams of the prompt's instruction text, never spanning a filled-in value."""
    text = prompt
    for value in sorted({f.strip() for f in fills if f and f.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(value), "\n\u241e\n", text, flags=re.IGNORECASE)
    grams: set[tuple[str, ...]] = set()
    for segment in text.split("\u241e"):
        seq = tokens(segment, language)
        if len(seq) >= n:
            grams |= shingles(seq, n)
    return grams


def _echoes(text: str, grams: set[tuple[str, ...]], n: int, language: str) -> bool:
    seq = tokens(text, language)
    return len(seq) >= n and bool(shingles(seq, n) & grams)


def _covered(text: str, grams: set[tuple[str, ...]], n: int, language: str) -> float:
    """Share of `text`'s words inside an n-gram it shares with the instructions (a paraphrase
    that reuses the prompt's phrases in another order or with words changed)."""
    seq = tokens(text, language)
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
            if _echoes(sentence, grams, sentence_words, language) or (
                    sentence_share < 1.0 and _covered(sentence, short, PHRASE, language) >= sentence_share):
                found.append(finding(i, heading, sentence, where="body", prompt="expansion"))
    if not found:
        return CheckResult("prompt_echo", True, "soft", "no heading or sentence copies the prompt", 0)
    first = found[0]
    detail = f"{place(first)} {first['where']} copies the {first['prompt']} prompt: \"{first['text']}\""
    if len(found) > 1:
        detail += f" (+{len(found) - 1} more)"
    return CheckResult("prompt_echo", False, "soft", detail, len(found), evidence=tuple(found))
