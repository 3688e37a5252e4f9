"""Text handling in one place: Markdown to plain text, word counts, cutting text.

    prose = extract_prose(markdown)          # what LanguageTool reads, mapped back to the Markdown
    plain = plain_text(markdown)             # every readable word: moderation, repetition, headings
    line = strip_inline("**Title:** [x](u)") # one line without inline Markdown: titles, headings
    words = count_words(plain, "zh-CN")      # the count the CSV and the length check show

Markdown is read from markdown-it's tokens in `copydesk.prose` (one parse per text,
`copydesk.markup` holds the one parser); `extract_prose`, `plain_text` and `strip_inline`
are its views, re-exported here. `plain_text` keeps code and data: moderation must see
every word a reader could (repetition drops code).

Words (`count_words`, `words`): one definition for every caller.

- CJK ideographs (every Han block, and the marks 々 〇) count one word each in
  every language: Chinese and Japanese are written without spaces, and length
  in characters is their usual measure.
- In Japanese (`ja`), kana count one each too, for the same reason; in other
  languages a kana run is part of a whitespace word.
- Everything else counts per whitespace-separated word that holds at least one
  letter or digit ("well-known", "3.14", "e.g." are one word; "—" or "-" none).
  Korean is written with spaces: a Hangul word is one word. Thai, Lao, Khmer
  and Burmese are also written without spaces but are not segmented here: a
  run of them counts as one word (an undercount).
"""

from __future__ import annotations

import re
from functools import lru_cache

from copydesk.prose import Block, Prose, extract_prose, plain_text, strip_inline

__all__ = [
    "Block",
    "Prose",
    "alnum_runs",
    "count_words",
    "extract_prose",
    "is_cjk_language",
    "plain_text",
    "primary_language",
    "script_counts",
    "split_sentences",
    "strip_inline",
    "truncate",
    "words",
]

# =========================================================================== prose
# Markdown is read in copydesk.prose (markdown-it tokens, copydesk.markup); its views are re-exported here.

# =========================================================================== words

#: Han ideographs (CJK Unified Ideographs, extensions A to H, compatibility ideographs)
#: and the ideographic marks 々 〇 〡-〩 〸-〻: one word each, in every language.
_IDEOGRAPHS = "\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: Hiragana and katakana letters (not their punctuation ゠ ・): one word each in Japanese.
_KANA = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"

_PER_CHARACTER = {
    False: re.compile(f"[{_IDEOGRAPHS}]|[^\\s{_IDEOGRAPHS}]+"),
    True: re.compile(f"[{_IDEOGRAPHS}{_KANA}]|[^\\s{_IDEOGRAPHS}{_KANA}]+"),
}
_ALNUM = re.compile(r"[^\W_]")


def primary_language(language: str) -> str:
    """The primary subtag of a language tag, lower case: "zh-CN", "zh_cn" -> "zh"."""
    return re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()


def is_cjk_language(language: str) -> bool:
    """Chinese, Cantonese or Japanese: written without spaces between words."""
    return primary_language(language) in {"zh", "yue", "ja"}


_IDEOGRAPH_RE = re.compile(f"[{_IDEOGRAPHS}]")
_KANA_RE = re.compile(f"[{_KANA}]")
_LETTER_RE = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=256)  # the language check asks three times about each section
def script_counts(text: str) -> tuple[int, int, int]:
    """(Han ideographs, kana, letters of any script) in `text`: what a language check
    needs to tell Chinese or Japanese from text written in other scripts."""
    return len(_IDEOGRAPH_RE.findall(text)), len(_KANA_RE.findall(text)), len(_LETTER_RE.findall(text))


@lru_cache(maxsize=64)
def _is_japanese(language: str) -> bool:
    return primary_language(language) == "ja"


def words(text: str, language: str = "") -> list[str]:
    """The words of plain `text` in order, as `count_words` counts them (see the module
    docstring): single CJK characters, and whitespace words holding a letter or digit."""
    units = _PER_CHARACTER[_is_japanese(language)].findall(text)
    return [unit for unit in units if unit.isalnum() or _ALNUM.search(unit)]  # (isalnum: the quick yes)


#: The runs of letters and digits of `words`: a CJK character that is a letter, or a run of
#: letters and digits (`[^\W_]` is exactly `str.isalnum`) of other scripts.
_ALNUM_RUNS = {
    False: re.compile(f"(?=[^\\W_])[{_IDEOGRAPHS}]|[^\\W_{_IDEOGRAPHS}]+"),
    True: re.compile(f"(?=[^\\W_])[{_IDEOGRAPHS}{_KANA}]|[^\\W_{_IDEOGRAPHS}{_KANA}]+"),
}


def alnum_runs(text: str, language: str = "") -> list[str]:
    """Each word of `words(text, language)` split at every character that is not a letter or
    digit, in order, empty parts left out: `words("os.path don't 中文")` -> `["os.path", "don't",
    "中", "文"]`, `alnum_runs` of it -> `["os", "path", "don", "t", "中", "文"]`."""
    return _ALNUM_RUNS[_is_japanese(language)].findall(text)


def count_words(text: str, language: str = "") -> int:
    """How many words plain `text` holds, for an article in `language` (a BCP 47 tag such
    as "en-US", "zh-CN" or "ja"; "" for no particular language)."""
    return len(words(text, language))


# =========================================================================== sentences

# English sentence ends need a following space (so 3.14 stays whole); Chinese
# ones do not. Closing quotes and brackets stay with their sentence. Line breaks
# always end a sentence (headings, list items).
_SENTENCE_END = re.compile(r"""[.!?]["'”’)\]]*(?=\s)|[。！？；!?]["'”’」』）)\]]*""")


def split_sentences(text: str) -> list[str]:
    """Split plain text into sentences at . ! ? (followed by a space), 。！？； and line breaks."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            sentences.append(line[start : match.end()])
            start = match.end()
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, at a word boundary when there is one in its
    second half, plus "…" when anything was cut: at most `limit + 1` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-–—") + "…"
