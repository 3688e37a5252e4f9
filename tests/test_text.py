"""copydesk.text: the one Markdown reader, word counts, sentences, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

import copydesk

from copydesk.text import (
    count_words,
    extract_prose,
    is_cjk_language,
    plain_text,
    primary_language,
    strip_inline,
    truncate,
    words,
)

# --------------------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Local models are cheap, and fast.", "en-US", 6),
        ("本地模型很便宜。", "zh-CN", 7),
        ("使用 ChatGPT API 写文章", "zh-CN", 2 + 2 + 3),
        ("", "en-US", 0),
        # Whitespace words that hold a letter or digit; punctuation alone is no word.
        ("e.g. 3.14 — well-known input/output", "en", 4),
        ("- * | — ...", "en", 0),
        # Ideographs of the supplementary planes (extension B) are ideographs too.
        ("𠮷𠮷𠮷", "zh", 3),
        # Korean is written with spaces: a Hangul word is one word, not one per syllable.
        ("한국어 문장입니다", "ko", 2),
        # Ideographs count one each whatever the article's language.
        ("Tokyo 東京 trip", "en", 4),
    ],
)
def test_count_words(text: str, language: str, expected: int) -> None:
    assert count_words(text, language) == expected


def test_count_words_honours_the_language() -> None:
    # Japanese is written without spaces, so its kana count one each; elsewhere a kana
    # run is a word like any other.
    assert count_words("コーヒーを飲む", "ja-JP") == 7
    assert count_words("コーヒーを飲む", "ja") == 7
    assert count_words("コーヒーを飲む", "en-US") == 1 + 2  # 飲 alone, then "コーヒーを" and "む"
    assert count_words("コーヒーを飲む", "zh_CN") == 3


def test_words_are_in_text_order() -> None:
    assert words("用 Python 写代码, fast.", "zh") == ["用", "Python", "写", "代", "码", "fast."]


def test_is_cjk_language() -> None:
    assert is_cjk_language("zh-CN") and is_cjk_language("ja") and is_cjk_language("ZH_tw")
    assert not is_cjk_language("ko") and not is_cjk_language("en-US") and not is_cjk_language("")
    assert [primary_language(t) for t in ("zh-CN", "zh_cn", "EN-us", "ja", "")] == ["zh", "zh", "en", "ja", ""]


# --------------------------------------------------------------------------- Markdown


MARKDOWN = """\
# Title

- **bold** item
1. [link text](http://x.test)

| cell one | cell two |
|---|---|
| cell three | `cell four` |

```py
x = 1
```

    indented_code()

<!-- hidden remark -->
![alt words](img.png) after the image
"""


def test_plain_text_keeps_every_readable_word() -> None:
    text = plain_text(MARKDOWN)
    for word in ("Title", "bold item", "link text", "cell one cell two", "cell three cell four", "x = 1",
                 "indented_code()", "hidden remark", "alt words after the image"):
        assert word in text, word
    for syntax in ("#", "**", "http", "---", "|", "```", "<!--", "!["):
        assert syntax not in text, syntax


def test_plain_text_without_code() -> None:
    text = plain_text(MARKDOWN, keep_code=False)
    assert "x = 1" not in text and "indented_code" not in text
    assert "cell three" in text and "alt words" in text


def test_prose_for_grammar_keeps_prose_only() -> None:
    text = extract_prose(MARKDOWN).text
    assert "bold item" in text and "link text" in text and "after the image" in text
    for gone in ("cell", "x = 1", "indented_code", "hidden", "alt words"):
        assert gone not in text, gone


def test_kept_data_maps_back_to_the_markdown() -> None:
    prose = extract_prose(MARKDOWN, keep_code=True, keep_data=True)
    for word in ("cell three", "alt words", "hidden remark", "x = 1"):
        start = prose.text.index(word)
        assert prose.source_span(start, start + len(word)) == (MARKDOWN.index(word), MARKDOWN.index(word) + len(word))
    kinds = {b.kind for b in prose.blocks}
    assert {"heading", "list", "table", "code", "comment", "paragraph"} <= kinds


def test_prose_maps_back_to_the_markdown() -> None:
    source = "# Title\n\nSome **bold** text and a [link](http://x).\n"
    prose = extract_prose(source)
    start = prose.text.index("bold")
    assert prose.source_span(start, start + 4) == (source.index("bold"), source.index("bold") + 4)
    assert prose.source_line(start) == 3
    # "text and" spans only copied characters, "Title\n\nSome" spans an inserted break.
    t = prose.text.index("text and")
    assert prose.source_span(t, t + 8) is not None
    assert prose.source_span(0, prose.text.index("Some") + 4) is None


def test_setext_headings_indented_code_and_html() -> None:
    source = "Heading one\n===========\n\nText here.\n\n    code block line\n\n<div>\n\n<!-- a\ncomment -->\nMore <b>bold</b> text.<br>Next.\n"
    prose = extract_prose(source)
    assert [b.kind for b in prose.blocks] == ["heading", "paragraph", "paragraph"]
    assert "code block" not in prose.text and "comment" not in prose.text
    assert "More bold text. Next." in prose.text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("## **Intro** to [asyncio](https://x.test)", "Intro to asyncio"),
        ("#Title", "Title"),
        ("Why __init__ and snake_case matter", "Why init and snake_case matter"),
        ("5 * 3 tricks with `map()`", "5 * 3 tricks with map()"),
        ("~~old~~ new", "old new"),
        ("Vec<T> and <b>bold</b> stay", "Vec<T> and <b>bold</b> stay"),
    ],
)
def test_strip_inline(line: str, expected: str) -> None:
    assert strip_inline(line) == expected


def test_truncate() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("one two three four", 12) == "one two…"
    assert len(truncate("x" * 50, 10)) == 11


def test_one_definition_of_cjk_and_of_markdown_syntax() -> None:
    """No module but copydesk.text carries its own CJK ranges or Markdown link stripping."""
    markers = ("\\u4e00", "\\u3040", "!?\\[([^\\]]*)\\]\\(")
    package = Path(copydesk.__file__).parent
    copies = [
        f"{path.relative_to(package)}: {marker}"
        for path in package.rglob("*.py")
        if path.name != "text.py" or path.parent != package
        for marker in markers
        if marker in path.read_text(encoding="utf-8")
    ]
    assert copies == []
