"""Grammar checking of Markdown articles: the prose it reads (copydesk.text.extract_prose, no
server) and the real LanguageTool."""

from __future__ import annotations

import pytest

from copydesk.errors import ServiceError
from copydesk.qc.grammar import GrammarChecker, GrammarReport
from copydesk.text import count_words, extract_prose

ERRORS = "He go to school yesterday and buyed a apple . Their is many error in this sentense."

ARTICLE = """---
title: "Teh recieve"
slug: teh-recieve
tags: [definately, wierd]
---
# Why local models matter

Local models are **cheap** and _fast_. They run on an ordinary laptop, see [the guide](https://example.com/teh-recieve) and the ![diagrm](img/teh.png) picture.
Install them with `pip install llama-cpp-python` and call the `init_modle` function first.

## Getting started

1. install the package
2. start the server
   with two threads

- small memory use
- quick start-up

> Teams often keep their drafts short.

```python
def recieve(teh):  # He go to school
    return teh
```

| model | speed |
|-------|-------|
| teh   | fast  |

A final paragraph that ends the article.
"""


# --------------------------------------------------------------------------- prose (no server)


def test_prose_drops_front_matter_code_tables_and_syntax() -> None:
    prose = extract_prose(ARTICLE)
    text = prose.text
    for gone in ("title:", "---", "#", "**", "](", "![", "diagrm", "def recieve", "| model", "```", "> "):
        assert gone not in text, gone
    assert "Local models are cheap and fast." in text
    assert "see the guide and the  picture." in text
    assert "install the package" in text and "start the server\nwith two threads" in text
    assert "Teams often keep their drafts short." in text
    kinds = [(b.kind, text[b.start : b.end]) for b in prose.blocks]
    assert kinds[0] == ("heading", "Why local models matter")
    assert ("heading", "Getting started") in kinds
    assert ("list", "small memory use") in kinds
    assert kinds[-1] == ("paragraph", "A final paragraph that ends the article.")
    # Inline code keeps its words in the sentence but is masked and not counted.
    assert [text[a:b] for a, b in prose.masked] == ["pip install llama-cpp-python", "init_modle"]
    assert "init_modle" not in prose.countable_text()


# --------------------------------------------------------------------------- the real server


@pytest.fixture
def english(languagetool_base_url: str):  # type: ignore[no-untyped-def]
    with GrammarChecker(languagetool_base_url, "en-US") as checker:
        yield checker


@pytest.mark.integration
def test_clean_prose_has_no_issues(english: GrammarChecker) -> None:
    report = english.check(
        "# A calm morning\n\nThe team met early and reviewed the plan. "
        "Everyone agreed that the first draft was clear, so they published it before lunch.\n"
    )
    assert isinstance(report, GrammarReport)
    assert report.issues == 0, report.matches
    assert report.words == 3 + 22
    assert report.issues_per_100_words == 0.0
    assert report.top_rules == [] and report.corrected_text is None


@pytest.mark.integration
def test_error_ridden_text_has_known_rules(english: GrammarChecker) -> None:
    report = english.check(ERRORS)
    rules = {m["rule_id"] for m in report.matches}
    assert {"HE_VERB_AGR", "EN_A_VS_AN", "THEIR_IS", "MORFOLOGIK_RULE_EN_US"} <= rules
    assert report.issues >= 6 and report.issues == len(report.matches)
    assert report.words == 16
    assert report.issues_per_100_words == pytest.approx(100 * report.issues / 16)
    assert report.top_rules[0] == ("MORFOLOGIK_RULE_EN_US", 2)
    assert len(report.top_rules) <= 5
    assert [c for _, c in report.top_rules] == sorted((c for _, c in report.top_rules), reverse=True)
    spelling = [m for m in report.matches if m["rule_id"] == "MORFOLOGIK_RULE_EN_US"]
    assert {m["text"] for m in spelling} == {"buyed", "sentense"}
    assert all(m["line"] == 1 and m["message"] and m["context"] for m in report.matches)


@pytest.mark.integration
def test_markdown_front_matter_and_code_are_not_counted(english: GrammarChecker) -> None:
    report = english.check(ARTICLE)
    # Misspellings in front matter, link targets, images, code and tables, and
    # lower-case list fragments and unpunctuated headings, raise nothing.
    assert report.issues == 0, report.matches
    prose_words = count_words(extract_prose(ARTICLE).countable_text(), "en-US")
    assert report.words == prose_words
    assert report.words < count_words(ARTICLE, "en-US")


@pytest.mark.integration
def test_issue_lines_point_into_the_markdown(english: GrammarChecker) -> None:
    source = "---\ntitle: x\n---\n# Heading\n\nA fine sentence.\n\nThis are wrong.\n"
    report = english.check(source)
    assert report.issues >= 1
    assert {m["line"] for m in report.matches} == {8}


@pytest.mark.integration
def test_ignore_rules_remove_a_rule(languagetool_base_url: str) -> None:
    with GrammarChecker(languagetool_base_url, "en-US", ignore_rules=["MORFOLOGIK_RULE_EN_US", "THEIR_IS"]) as checker:
        report = checker.check(ERRORS)
    rules = {m["rule_id"] for m in report.matches}
    assert not rules & {"MORFOLOGIK_RULE_EN_US", "THEIR_IS"}
    assert "HE_VERB_AGR" in rules
    assert report.ignored_rules == ("MORFOLOGIK_RULE_EN_US", "THEIR_IS")


@pytest.mark.integration
def test_autocorrect_fixes_unambiguous_misspellings_in_the_markdown(languagetool_base_url: str) -> None:
    source = (
        "# Notes\n\nI definately believe the **goverment** report is [wierd](https://example.com/wierd). "
        "Call `recieve_all` first. I will recieve it.\n"
    )
    with GrammarChecker(languagetool_base_url, "en-US", autocorrect=True) as checker:
        report = checker.check(source)
    assert report.corrected_text == (
        "# Notes\n\nI definitely believe the **government** report is [weird](https://example.com/wierd). "
        "Call `recieve_all` first. I will recieve it.\n"
    )
    assert report.corrections == 3
    # "recieve" has two suggestions (receive, relieve): left alone, and still counted.
    assert [m["text"] for m in report.matches] == ["recieve"]
    assert report.issues == 1


@pytest.mark.integration
def test_autocorrect_without_changes_returns_the_text(languagetool_base_url: str) -> None:
    with GrammarChecker(languagetool_base_url, "en-US", autocorrect=True) as checker:
        report = checker.check("All good here.")
    assert report.corrected_text == "All good here." and report.corrections == 0


@pytest.mark.integration
def test_chinese(languagetool_base_url: str) -> None:
    with GrammarChecker(languagetool_base_url, "zh-CN") as checker:
        report = checker.check("# 本地模型\n\n他们是非常好的朋友。我门今天去学校。\n")
    assert report.words == 4 + 9 + 7
    assert [m["text"] for m in report.matches] == ["门"]


@pytest.mark.integration
def test_unsupported_language_is_a_service_error(languagetool_base_url: str) -> None:
    with pytest.raises(ServiceError, match=r"does not support language 'fr-FR' \(it has: .*en-US.*COPYDESK_LANGUAGETOOL_URL"):
        GrammarChecker(languagetool_base_url, "fr-FR")


def test_unreachable_server_is_a_service_error() -> None:
    with pytest.raises(ServiceError, match="cannot reach the LanguageTool server at http://127.0.0.1:9"):
        GrammarChecker("http://127.0.0.1:9", "en-US")


@pytest.mark.integration
async def test_async_check(english: GrammarChecker) -> None:
    report = await english.acheck(ERRORS)
    assert report.issues >= 6
