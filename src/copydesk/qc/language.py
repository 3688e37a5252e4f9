"""Language of each section: a Chinese section in an en-US article is caught offline.

    detector = LanguageDetector()          # py3langid's model, shipped inside its package
    detector.detect("网络调用偶尔失败……")   -> ("zh", 1.0)
    check_language(sections, "en-US", detector, min_chars=60)

Three signals, the script first because it is certain and free:

- the share of CJK characters among letters: a section of an en-US article that is
  more than 30 % Han/kana is not English; a section of a zh-CN article that is less
  than 20 % Han is not Chinese (Chinese technical prose keeps English terms, so the
  bar is low);
- a switch into another script mid-section: MIN_FOREIGN_RUN or more letters in a row
  of a script the language is not written in ("并且它会自动处理" inside an English
  sentence, Cyrillic or kana inside Chinese; Latin is always allowed, for technical terms);
- otherwise py3langid (a naive Bayes model over byte n-grams, 97 languages): the
  section fails when the model names another language with probability >= 0.9.

Why py3langid: `bench/language_bench.py` measured it against LanguageTool's own
detection on the evaluation set (see bench/README.md); it needs no server, answers
in well under a millisecond per section once loaded (~1.5 s, once per process), and
ships its model. Sections with fewer than `min_chars` letters are not judged (too
short to tell). Inline code and code blocks are not read.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pydantic import Field

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.text import extract_prose, primary_language, script_counts

#: Probability at which py3langid's answer overrides the spec's language.
CONFIDENT = 0.9
#: py3langid labels that stand for the same language as a spec's primary subtag.
_SAME = {"zh": {"zh"}, "nb": {"nb", "no", "nn"}, "no": {"nb", "no", "nn"}, "ms": {"ms", "id"}}


class LanguageDetector:
    """py3langid's identifier, loaded on first use (thread-safe), probabilities normalised."""

    def __init__(self) -> None:
        self._identifier: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier  # noqa: PLC0415 - 1.5 s

                self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return self._identifier

    def detect(self, text: str) -> tuple[str, float]:
        """The most likely language's code (ISO 639-1 mostly) and its probability."""
        han, kana, letters = script_counts(text)
        if (han + kana) / max(1, letters) > 0.3:
            return ("ja" if kana > 0.1 * (han + kana) else "zh"), 1.0
        label, prob = self.load().classify(text)
        return str(label), float(prob)


def _script_mismatch(text: str, expected: str) -> str | None:
    han, kana, letters = script_counts(text)
    cjk = (han + kana) / max(1, letters)
    if expected in ("zh", "ja", "yue"):
        if cjk < 0.2:
            return "Latin-script text"
        if expected == "zh" and kana > 0.1 * (han + kana):
            return "ja"
        if expected == "ja" and kana == 0 and han > 20:
            return "zh"
        return None
    if cjk > 0.3:
        return "ja" if kana > 0.1 * (han + kana) else "zh"
    return None


#: Scripts a language's prose is written in, besides Latin (technical terms): what a mid-sentence
#: switch into another script is measured against. Languages not listed are not checked for it.
_SCRIPTS = {
    "en": set(), "de": set(), "fr": set(), "es": set(), "it": set(), "pt": set(), "nl": set(), "pl": set(),
    "sv": set(), "da": set(), "nb": set(), "no": set(), "fi": set(), "cs": set(), "tr": set(), "id": set(),
    "zh": {"CJK"}, "yue": {"CJK"}, "ja": {"CJK", "HIRAGANA", "KATAKANA"}, "ko": {"HANGUL", "CJK"},
    "ru": {"CYRILLIC"}, "uk": {"CYRILLIC"}, "bg": {"CYRILLIC"}, "el": {"GREEK"},
}
#: Letters of another script in a row (spaces and punctuation between them allowed) that make a switch.
MIN_FOREIGN_RUN = 4


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def _letter_script(ch: str) -> str:
    """The script `foreign_run` reads a letter as: half- and full-width forms are CJK."""
    s = _script(ch)
    return "CJK" if s in ("CJK", "HALFWIDTH", "FULLWIDTH") and not ch.isascii() else s


def _foreign(ch: str, allowed: set[str]) -> bool:
    s = _letter_script(ch)
    return s not in allowed and s != ""


def foreign_run(text: str, expected: str) -> str | None:
    """The first run of MIN_FOREIGN_RUN+ letters in a script `expected`'s prose does not use
    ("并且它会自动处理" inside an English sentence, Cyrillic inside Chinese), else None.
    Greek is let through (symbols in formulas)."""
    allowed = _SCRIPTS.get(expected)
    if allowed is None:
        return None
    allowed = allowed | {"LATIN", "GREEK", "CJK" if expected in ("ja", "zh", "yue", "ko") else "LATIN"}
    if not any(_foreign(ch, allowed) for ch in set(text) if ch.isalpha() and not ch.isascii()):
        return None  # no letter of another script (ASCII letters are Latin): no run can start
    start, count, script = -1, 0, ""
    for i, ch in enumerate(text + "\0"):
        if ch.isalpha():
            s = _letter_script(ch)
            if s not in allowed and s != "":
                if count and s != script:
                    count = 0
                if not count:
                    start, script = i, s
                count += 1
                continue
        elif count and (ch.isspace() or unicodedata.category(ch).startswith("P")) and ch != "\0":
            continue
        if count >= MIN_FOREIGN_RUN:
            return text[start:i].strip()
        count = 0
    return None


def section_language(body: str, language: str, detector: LanguageDetector, min_chars: int) -> tuple[str, float] | None:
    """The language a section is in when it is not `language` (a BCP 47 tag), else None."""
    text = extract_prose(body).countable_text()
    if script_counts(text)[2] < min_chars:
        switch = foreign_run(text, primary_language(language))
        return None if switch is None else (f"a switch into another script: {switch[:40]!r}", 1.0)
    expected = primary_language(language)
    mismatch = _script_mismatch(text, expected)
    if mismatch is not None:
        return mismatch, 1.0
    switch = foreign_run(text, expected)
    if switch is not None:
        return f"a switch into another script: {switch[:40]!r}", 1.0
    if expected in ("zh", "ja", "yue"):
        return None
    label, prob = detector.detect(text)
    if label in _SAME.get(expected, {expected}) or prob < CONFIDENT:
        return None
    return label, prob


def check_language(
    sections: Sequence[tuple[str, str]], language: str, detector: LanguageDetector, min_chars: int
) -> CheckResult:
    """Soft failure for every section that is not in the article's language."""
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        wrong = section_language(body, language, detector, min_chars)
        if wrong is not None:
            found.append(finding(i, heading, body, detected=wrong[0], probability=round(wrong[1], 3)))
    return CheckResult.from_findings(
        "language", found, f"every section reads as {language}",
        lambda first: f"{place(first)} is not in {language} (detected {first['detected']})")


class LanguagePolicy(CheckPolicy):
    #: Sections with fewer letters than this are too short to identify and are not judged.
    min_chars: int = Field(60, ge=1, le=10_000)


class LanguageCheck(BaseCheck, key="language", policy=LanguagePolicy):
    def run(self, draft: Draft) -> CheckResult:
        return check_language(draft.sections, draft.language, self.env.detector, self.policy.min_chars)
