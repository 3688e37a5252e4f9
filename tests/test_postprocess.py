"""copydesk.postprocess: what each stage makes of the model's text (pure functions)."""

from __future__ import annotations

import pytest

from copydesk.postprocess import MAX_HEADING_CHARS, MAX_TITLE_CHARS, clean_section, clean_title, parse_outline

# ----------------------------------------------------------------------------- clean_title


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Async Python in Practice"', "Async Python in Practice"),
        ("'Async Python in Practice'", "Async Python in Practice"),
        ("“Async Python in Practice”", "Async Python in Practice"),
        ('""Doubly quoted""', "Doubly quoted"),
        ("**Async Python in Practice**", "Async Python in Practice"),
        ("__Async Python__", "Async Python"),
        ("# Async Python", "Async Python"),
        ("Title: Async Python", "Async Python"),
        ("title:   Async Python", "Async Python"),
        ("**Title:** Async Python", "Async Python"),
        ('Title: "Async Python"', "Async Python"),
        ('"Title: Async Python"', "Async Python"),
        ("Headline: Async Python", "Async Python"),
        ("Async Python.", "Async Python"),
        ("  Async   Python  ", "Async Python"),
        ("1. Async Python", "Async Python"),
        ("- Async Python", "Async Python"),
        ("《异步编程指南》", "异步编程指南"),
        ("标题：异步编程指南", "异步编程指南"),
        ("标题：《异步编程指南》", "异步编程指南"),
        ("「异步编程」", "异步编程"),
        ("Don't Panic: Python's Asyncio", "Don't Panic: Python's Asyncio"),
        ("5 Ways to Tame Asyncio", "5 Ways to Tame Asyncio"),
        ("Python 3.12 Is Here", "Python 3.12 Is Here"),
    ],
)
def test_clean_title(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('"Async Python".', "Async Python"), ('Title: "Async Python".', "Async Python"), ("《异步编程》。", "异步编程")],
)
def test_clean_title_quoted_title_with_trailing_full_stop(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected


def test_clean_title_keeps_only_the_first_line() -> None:
    assert clean_title("Async Python\nA second line of commentary\nAnd a third") == "Async Python"


def test_clean_title_skips_blank_lines() -> None:
    assert clean_title("\n\n   \nAsync Python\n") == "Async Python"


@pytest.mark.parametrize(
    "raw",
    [
        "Here is a title:\nAsync Python",
        "Here's a catchy title:\n\n\"Async Python\"",
        "Sure, here is a title for your post:\n**Async Python**",
        "Certainly! Here are some titles:\n1. Async Python\n2. Another",
        "Below is my suggestion:\nAsync Python",
        "以下是标题：\n《Async Python》",
    ],
)
def test_clean_title_skips_preamble_lines(raw: str) -> None:
    assert clean_title(raw) == "Async Python"


def test_preamble_words_inside_a_real_title_are_kept() -> None:
    # Only a line that introduces the answer (ends with a colon) is skipped.
    assert clean_title("Here Is Why Asyncio Matters") == "Here Is Why Asyncio Matters"


@pytest.mark.parametrize("raw", ["Sure!\n\nAsync Python", "Certainly!\nAsync Python", "Sure.\nAsync Python"])
def test_clean_title_skips_a_bare_interjection_line(raw: str) -> None:
    assert clean_title(raw) == "Async Python"


def test_clean_title_empty_answer() -> None:
    assert clean_title("") == ""
    assert clean_title('\n  ""  \n') == ""


def test_clean_title_caps_long_titles_at_a_word_boundary() -> None:
    title = clean_title("word " * 100)
    assert len(title) <= MAX_TITLE_CHARS
    assert title.endswith("…")
    assert title[:-1].split(" ")[-1] == "word"  # no word cut in half


@pytest.mark.parametrize("raw", ["x" * 300, "标题" * 150])
def test_clean_title_caps_long_titles_without_spaces(raw: str) -> None:
    title = clean_title(raw)
    assert title.endswith("…")
    assert len(title) <= MAX_TITLE_CHARS


# ----------------------------------------------------------------------------- parse_outline


def outline(raw: str, *, min_sections: int = 1, max_sections: int = 10) -> list[str]:
    return parse_outline(raw, min_sections=min_sections, max_sections=max_sections)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["Intro", "Setup", "Wrap-up"]', ["Intro", "Setup", "Wrap-up"]),
        ('{"sections": ["Intro", "Setup"]}', ["Intro", "Setup"]),
        ('{"outline": ["Intro", "Setup"]}', ["Intro", "Setup"]),
        ('{"title": "X", "sections": [{"title": "Intro"}, {"heading": "Setup"}]}', ["Intro", "Setup"]),
        ('```json\n["Intro", "Setup"]\n```', ["Intro", "Setup"]),
        ('Here is the outline:\n```json\n{"sections": ["Intro", "Setup"]}\n```\nHope it helps!', ["Intro", "Setup"]),
        ("1. Intro\n2. Setup\n3. Wrap-up", ["Intro", "Setup", "Wrap-up"]),
        ("1) Intro\n2) Setup", ["Intro", "Setup"]),
        ("- Intro\n- Setup", ["Intro", "Setup"]),
        ("* Intro\n* Setup", ["Intro", "Setup"]),
        ("- Intro\n* Setup\n+ Wrap-up", ["Intro", "Setup", "Wrap-up"]),
        ("## Intro\n## Setup", ["Intro", "Setup"]),
        ("### Intro\n### Setup", ["Intro", "Setup"]),
        ("一、背景\n二、方法\n三、结论", ["背景", "方法", "结论"]),
        ("1. 为什么要异步\n2. 怎么开始", ["为什么要异步", "怎么开始"]),
        ("Intro\nSetup\nWrap-up", ["Intro", "Setup", "Wrap-up"]),
        ("- **Intro**\n- `asyncio` basics\n- [Links](http://x)", ["Intro", "asyncio basics", "Links"]),
        ('1. "Intro"\n2. “Setup”', ["Intro", "Setup"]),
        ("1. Intro:\n2. Setup.", ["Intro", "Setup"]),
    ],
)
def test_parse_outline_formats(raw: str, expected: list[str]) -> None:
    assert outline(raw) == expected


def test_nested_bullets_are_ignored() -> None:
    raw = "1. Intro\n   - why it matters\n   - who it is for\n2. Setup\n    * install\n3. Wrap-up"
    assert outline(raw) == ["Intro", "Setup", "Wrap-up"]


def test_nested_bullets_under_bullets_are_ignored() -> None:
    raw = "- Intro\n  - detail\n- Setup\n  - detail two"
    assert outline(raw) == ["Intro", "Setup"]


def test_duplicates_removed_case_insensitively_keeping_the_first() -> None:
    assert outline("1. Intro\n2. intro\n3. INTRO\n4. Setup\n5. setup") == ["Intro", "Setup"]


def test_duplicates_in_json_are_removed() -> None:
    assert outline('["Intro", "intro", "Setup"]') == ["Intro", "Setup"]


def test_clamped_to_max_sections() -> None:
    raw = "\n".join(f"{i}. Section number {i}" for i in range(1, 13))
    result = outline(raw, min_sections=3, max_sections=7)
    assert result == [f"Section number {i}" for i in range(1, 8)]


def test_fewer_than_min_sections_is_returned_as_is() -> None:
    assert outline("1. Only one", min_sections=3, max_sections=7) == ["Only one"]


@pytest.mark.parametrize(
    "raw",
    [
        "Here is the outline:\n1. Intro\n2. Setup",
        "Here is the outline:\nIntro\nSetup",
        "Sure! Here is the outline:\n\n- Intro\n- Setup",
        "Outline:\nIntro\nSetup",
        "以下是大纲：\n一、Intro\n二、Setup",
    ],
)
def test_preamble_line_is_skipped(raw: str) -> None:
    assert outline(raw) == ["Intro", "Setup"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1. Section 1: Intro\n2. Section 2: Setup", ["Intro", "Setup"]),
        ("Section 1: Intro\nSection 2: Setup", ["Intro", "Setup"]),
        ("- Part 1 - Intro\n- Part 2 - Setup", ["Intro", "Setup"]),
        ("1. Step 1. Install\n2. Step 2. Run", ["Install", "Run"]),
    ],
)
def test_section_labels_are_stripped(raw: str, expected: list[str]) -> None:
    assert outline(raw) == expected


def test_long_description_after_a_colon_is_dropped() -> None:
    raw = "1. Intro: a long sentence that describes what this section will be about in detail\n2. Setup"
    assert outline(raw) == ["Intro", "Setup"]


def test_headings_are_capped() -> None:
    (heading,) = outline("1. " + "word " * 60)
    assert len(heading) <= MAX_HEADING_CHARS


def test_empty_answer_gives_no_sections() -> None:
    assert outline("") == []
    assert outline("   \n\n") == []


def test_brackets_inside_a_line_list_are_not_json() -> None:
    assert outline("1. What changed [2023]\n2. Setup\n3. Wrap-up") == ["What changed [2023]", "Setup", "Wrap-up"]


def test_numbered_markdown_headings() -> None:
    assert outline("## 1. Intro\n## 2. Setup") == ["Intro", "Setup"]


# ----------------------------------------------------------------------------- clean_section


def test_repeated_heading_is_removed() -> None:
    assert clean_section("## Intro\n\nBody text here.", "Intro") == "Body text here."


@pytest.mark.parametrize(
    "raw",
    ["Intro\n\nBody text here.", "**Intro:**\nBody text here.", "# Intro\nBody text here.", "### intro\nBody text here."],
)
def test_repeated_heading_variants_are_removed(raw: str) -> None:
    assert clean_section(raw, "Intro") == "Body text here."


def test_body_starting_with_other_text_is_kept() -> None:
    raw = "Intro material comes first in this paragraph.\n\nMore."
    assert clean_section(raw, "Intro") == raw


def test_inner_headings_are_demoted() -> None:
    raw = "## Intro\nFirst paragraph.\n\n## Details\nMore.\n\n# Top\nEnd.\n\n### Already small\nx"
    assert clean_section(raw, "Intro") == (
        "First paragraph.\n\n### Details\nMore.\n\n### Top\nEnd.\n\n### Already small\nx"
    )


def test_text_that_merely_contains_hashes_is_untouched() -> None:
    assert clean_section("Use C# and #hashtags ## here.", "X") == "Use C# and #hashtags ## here."


def test_blank_runs_collapsed_and_crlf_normalised() -> None:
    assert clean_section("Para one.\r\n\r\n\r\n\r\nPara two.\r\n", "X") == "Para one.\n\nPara two."


def test_chinese_section() -> None:
    assert clean_section("## 背景\n\n异步编程很重要。\n## 小结\n好。", "背景") == "异步编程很重要。\n### 小结\n好。"


def test_numbered_items_of_a_json_outline_lose_their_numbers():
    from copydesk.postprocess import parse_outline

    raw = '{"headings": ["1. Introduction", "2. What is a flame graph?", "3) Reading one", "2024 in review"]}'
    assert parse_outline(raw, min_sections=3, max_sections=6) == [
        "Introduction", "What is a flame graph?", "Reading one", "2024 in review"]


def test_headings_without_a_letter_are_dropped():
    from copydesk.postprocess import parse_outline

    assert parse_outline('{"headings": ["1", "2", "3"]}', min_sections=3, max_sections=6) == []
    assert parse_outline("1. Intro\n2. —\n3. Setup\n4. 2024 plans", min_sections=3, max_sections=6) == [
        "Intro", "Setup", "2024 plans"]


def test_a_heading_n_label_is_dropped_from_outline_headings():
    from copydesk.postprocess import parse_outline

    assert parse_outline("1. Heading 1: Why it matters\n2. Heading 2: How\n3. Heading 3: Next", min_sections=3,
                         max_sections=6) == ["Why it matters", "How", "Next"]
