"""Content checks: length, outline coverage, repetition, truncation."""

from __future__ import annotations

import pytest

from copydesk.qc.content import (
    HARD_REPETITION,
    CheckResult,
    check_length,
    check_outline_coverage,
    check_repetition,
    check_truncation,
    normalize_heading,
    repetition_score,
)
from copydesk.text import count_words, plain_text, split_sentences

EN_PROSE = """\
## Why retries matter

A flaky network call should not fail a whole pipeline. Prefect lets a task declare
how many times it is retried and how long it waits between attempts. The defaults
are conservative, so most teams tune them once they see real failure rates.

## Configuring backoff

Start with a delay of one second and double it on every attempt. Cap the delay so
that a long outage does not stall the run for hours. Record every retry in the logs,
because a task that only succeeds on its fifth attempt is a warning sign.

```python
from prefect import task

@task(retries=3, retry_delay_seconds=[1, 2, 4])
def fetch(): ...

@task(retries=3, retry_delay_seconds=[1, 2, 4])
def store(): ...
```

## Budgets

Token budgets protect the monthly bill. Reserve the worst case before each call and
settle the real usage afterwards, so concurrent calls can never overshoot the cap.
"""

ZH_PROSE = """\
## 为什么需要重试

网络调用偶尔失败，不应该让整个流水线停下来。任务可以声明重试次数和两次尝试之间的等待时间。

## 配置退避

第一次等待一秒，之后每次加倍。为等待时间设置上限，避免长时间故障拖住整个运行。每次重试都要写入日志。
"""


# --------------------------------------------------------------------------- helpers


def test_plain_text_drops_markdown_but_keeps_words() -> None:
    md = "# Title\n\n- **bold** item\n1. [link text](http://x.test)\n> quote\n\n| a | b |\n|---|---|\n```py\nx = 1\n```"
    text = plain_text(md)
    assert "#" not in text and "**" not in text and "http" not in text and "---" not in text
    for word in ("Title", "bold", "item", "link text", "quote", "x = 1"):
        assert word in text
    assert "x = 1" not in plain_text(md, keep_code=False)


def test_split_sentences_english_and_chinese() -> None:
    assert split_sentences("Pi is 3.14 today. Is it? Yes!\nNew line") == [
        "Pi is 3.14 today.",
        "Is it?",
        "Yes!",
        "New line",
    ]
    assert split_sentences("你好。我很好！真的吗？“是的。”好") == ["你好。", "我很好！", "真的吗？", "“是的。”", "好"]


def test_words_of_markdown() -> None:
    assert count_words(plain_text("# Hello world\n\nIt's a **well-known** fact."), "en") == 6
    assert count_words(plain_text("你好，世界"), "zh") == 4
    assert count_words(plain_text("使用 ChatGPT API"), "zh") == 4
    assert count_words(plain_text(""), "en") == 0


# --------------------------------------------------------------------------- length


def test_length() -> None:
    assert check_length(450, 300, None).passed
    assert check_length(450, 300, 500).passed
    short = check_length(120, 300, None)
    assert (short.passed, short.severity, short.value) == (False, "soft", 120)
    assert "fewer than min_words 300" in short.detail
    long = check_length(900, 300, 800)
    assert (long.passed, long.severity) == (False, "soft") and "max_words 800" in long.detail
    empty = check_length(0, 300, None)
    assert (empty.passed, empty.severity) == (False, "hard")
    assert check_length(0, 0, None).severity == "hard"  # an empty article is never fine


# --------------------------------------------------------------------------- outline coverage


def test_coverage_all_sections_present() -> None:
    outline = ["1. Why retries matter", "2. Configuring backoff", "3. Budgets"]
    sections = [("Why Retries Matter", "Because."), ("Configuring backoff:", "Double it."), ("**Budgets**", "Cap.")]
    result = check_outline_coverage(outline, sections)
    assert result.passed and result.value == 1.0


def test_coverage_one_missing_is_soft_and_named() -> None:
    outline = ["Intro", "Setup", "Usage", "Deploy"]
    sections = [("Intro", "text"), ("Setup", "text"), ("Usage", "text")]
    result = check_outline_coverage(outline, sections)
    assert (result.passed, result.severity, result.value) == (False, "soft", 0.75)
    assert "'Deploy'" in result.detail and "missing" in result.detail


def test_coverage_empty_bodies_count_as_missing() -> None:
    outline = ["Intro", "Setup", "Usage", "Deploy"]
    sections = [("Intro", "text"), ("Setup", "  \n"), ("Usage", "**  **"), ("Deploy", "text")]
    result = check_outline_coverage(outline, sections)
    assert (result.passed, result.severity) == (False, "soft")
    assert "empty: 'Setup', 'Usage'" in result.detail


def test_coverage_most_sections_missing_is_hard() -> None:
    outline = ["Intro", "Setup", "Usage", "Deploy", "FAQ"]
    result = check_outline_coverage(outline, [("Intro", "text"), ("Setup", "text")])
    assert (result.passed, result.severity) == (False, "hard")
    assert check_outline_coverage([], []).severity == "hard"


def test_coverage_chinese_headings() -> None:
    outline = ["一、为什么需要重试", "二、配置退避"]
    sections = [("为什么需要重试", "网络调用偶尔失败。"), ("配置退避：", "第一次等待一秒。")]
    assert check_outline_coverage(outline, sections).passed
    assert normalize_heading("第一章：简介") == normalize_heading("简介")


# --------------------------------------------------------------------------- repetition


def test_natural_prose_has_low_repetition() -> None:
    assert repetition_score(EN_PROSE, "en-US") < 0.1  # the repeated decorator lines are code
    assert repetition_score(ZH_PROSE, "zh-CN") < 0.1


def test_a_loop_scores_high() -> None:
    loop = "The scheduler retries failed tasks with exponential backoff, starting at one second. " * 30
    assert repetition_score(loop, "en-US") > 0.9
    zh_loop = "重试会从一秒开始指数退避，直到达到上限为止。" * 30
    assert repetition_score(zh_loop, "zh-CN") > 0.9


def test_partial_loop_scores_in_between() -> None:
    looped = EN_PROSE + "\n" + "Record every retry in the logs, because it helps. " * 10
    score = repetition_score(looped, "en-US")
    assert 0.25 < score < 0.9


def test_repeated_sentences_count_even_when_ngrams_do_not() -> None:
    # Sentences of exactly 4 words have no 5-grams inside them, but repeat as sentences.
    text = "Retries are very useful. Budgets are hard limits. Retries are very useful. Logs are cheap insurance."
    assert repetition_score(text, "en-US") == pytest.approx(0.25)


def test_short_text_scores_zero() -> None:
    assert repetition_score("", "en") == 0.0
    assert repetition_score("Yes. Yes. Yes.", "en") == 0.0  # too short to be a loop


def test_check_repetition_levels() -> None:
    assert check_repetition(EN_PROSE, "en", 0.25).passed
    some = EN_PROSE + "\n" + "Record every retry in the logs, because it helps. " * 10
    soft = check_repetition(some, "en", 0.25)
    assert (soft.passed, soft.severity) == (False, "soft")
    loop = "The scheduler retries failed tasks with exponential backoff. " * 30
    hard = check_repetition(loop, "en", 0.25)
    assert (hard.passed, hard.severity) == (False, "hard") and hard.value >= HARD_REPETITION
    # A policy more tolerant than the hard level moves the hard level with it.
    assert check_repetition(some, "en", 0.95).passed


# --------------------------------------------------------------------------- truncation


def test_truncation() -> None:
    assert check_truncation(["stop", "stop", None]).passed
    assert check_truncation([]).passed
    cut = check_truncation(["stop", "length", "length"], ["Intro", "Setup", "Usage"])
    assert (cut.passed, cut.severity, cut.value) == (False, "soft", 2)
    assert "'Setup', 'Usage'" in cut.detail
    unnamed = check_truncation(["length", "stop"], ["only one label"])
    assert "#1" in unnamed.detail
    filtered = check_truncation(["stop", "content_filter"])
    assert (filtered.passed, filtered.severity) == (False, "hard") and "content filter" in filtered.detail


def test_check_result_flags() -> None:
    assert CheckResult("x", False, "hard", "d").failed_hard
    assert CheckResult("x", False, "soft", "d").failed_soft
    not_run = CheckResult.not_run("grammar", "server down")
    assert not not_run.ran and not not_run.failed_soft and not not_run.failed_hard


def test_repetition_is_judged_per_section():
    from copydesk.qc.content import check_section_repetition

    paragraph = ("Good tests describe what the code should do. They run quickly and fail for one reason. "
                 "A clear name tells you what broke.")
    same_text_everywhere = [(f"Part {i}", paragraph) for i in range(4)]
    assert check_section_repetition(same_text_everywhere, "en-US", 0.25).passed

    looping = "The cache is fast. " * 12
    result = check_section_repetition([("Intro", paragraph), ("Caching", looping)], "en-US", 0.25)
    assert not result.passed and result.severity == "hard" and "'Caching'" in result.detail
