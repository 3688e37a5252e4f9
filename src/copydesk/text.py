"""Counting words the same way everywhere (CSV, QC, reports)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*", re.UNICODE)


def count_words(text: str, language: str = "en") -> int:
    """Words of running text. CJK characters count one each (the usual measure of
    Chinese and Japanese length); other scripts count runs of letters and digits."""
    cjk = len(_CJK.findall(text))
    rest = _CJK.sub(" ", text)
    return cjk + len(_WORD.findall(rest))
