"""Comparable terms of a text, for the editorial checks that compare wording.

    tokens("Listing five short headings", "en")  -> ["list", "five", "short", "heading"]
    content_terms("Configuring the retries", "en") -> {"configur", "retri"}
    shingles(tokens, 5)                           -> {("a", "b", "c", "d", "e"), ...}

Words come from `copydesk.text.words` (one definition of a word for the project):
compared without case or punctuation, with a crude English suffix stripper so that
"Listing" matches "List" and "retries" matches "retry". Chinese and Japanese
characters are one token each; `content_terms` pairs them into bigrams, the
usual unit of Chinese lexical overlap.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from copydesk.text import alnum_runs, is_cjk_language, script_counts

_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "ly", "s", "y", "e")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my no nor not
    now of off on once only or other our ours out over own same she should so some such than that the their
    them then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours one two use used using how get make new way
    also may many much well""".split()
)
#: Number words compare as digits ("five headings" echoes "5 headings").
_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_CJK_STOP = frozenset("的了是在和与及或也都就而把被对为以于这那个中上下不有要会可能我你他它们之其")


def stem(token: str) -> str:
    """A token without a common English inflection (crude, symmetric: both sides get it)."""
    if len(token) <= 4 or not token.isascii():
        return token
    for suffix in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)]
    return token


def tokens(text: str, language: str = "") -> list[str]:
    """The words of plain `text`, normalised (NFKC, case-folded, alphanumerics only) and stemmed.
    Punctuation inside a whitespace word separates (`postmaster：PostgreSQL`, `os.path` are two
    words each), bar apostrophes (`don't` stays one).

    The checks of one article tokenize the same sentences, sections and prompt text several
    times: the last TOKEN_CACHE results are kept."""
    return list(_tokens(text, language))


#: Texts whose tokens are kept (sentences, sections, prompt segments of a few articles).
TOKEN_CACHE = 2048


@lru_cache(maxsize=TOKEN_CACHE)
def _tokens(text: str, language: str) -> tuple[str, ...]:
    # Apostrophes are neither space nor CJK: dropping them before the split into words joins
    # only what the same word held ("don't" -> "dont"), as dropping them word by word did.
    text = unicodedata.normalize("NFKC", text).replace("'", "").replace("’", "")
    return tuple(map(_token, alnum_runs(text, language)))


@lru_cache(maxsize=1 << 15)
def _token(part: str) -> str:
    token = part.casefold()
    return _NUMBERS.get(token) or stem(token)


def content_terms(text: str, language: str = "") -> set[str]:
    """Terms that carry meaning: stemmed words that are not stopwords nor numbers; for runs
    of Chinese/Japanese characters, bigrams of the characters that are not function words."""
    terms: set[str] = set()
    run: list[str] = []

    def flush() -> None:
        if len(run) == 1:
            terms.add(run[0])
        terms.update(a + b for a, b in zip(run, run[1:]))
        run.clear()

    for token in tokens(text, language):
        if len(token) == 1 and _cjk_character(token):
            if token in _CJK_STOP:
                flush()
            else:
                run.append(token)
            continue
        if run:  # (flushing no run adds nothing)
            flush()
        if len(token) > 1 and token not in STOPWORDS and not token.isdigit():
            terms.add(token)
    flush()
    return terms


@lru_cache(maxsize=8192)
def _cjk_character(ch: str) -> bool:
    """A Han ideograph or kana (`copydesk.text.script_counts`)."""
    return bool(sum(script_counts(ch)[:2]))


def shingles(seq: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The set of n-grams of `seq`; a sequence shorter than n gives itself as one shingle."""
    if not seq:
        return set()
    if len(seq) < n:
        return {tuple(seq)}
    return {tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)}


def shingle_size(language: str) -> int:
    """Word 5-grams; character 8-grams for Chinese and Japanese (about five words' worth)."""
    return 8 if is_cjk_language(language) else 5
