"""The editorial checks one by one, on the failures issue 12 lists, and their clean counterparts."""

from __future__ import annotations

import pytest

from copydesk.qc.duplicates import check_section_duplicates
from copydesk.qc.echo import check_prompt_echo
from copydesk.qc.editorial import Draft, run_editorial
from copydesk.qc.language import LanguageDetector, check_language
from copydesk.qc.links import check_links, find_urls, strip_links
from copydesk.qc.markdown import check_markdown, demote_headings
from copydesk.qc.metatalk import check_meta_talk, trim_meta_talk
from copydesk.qc.placeholders import check_placeholders
from copydesk.qc.refusal import check_refusal
from copydesk.qc.relevance import check_relevance
from copydesk.qc.thin import check_thin_sections
from copydesk.spec import QCSpec

CLEAN_A = (
    "A flaky network call should not fail a whole pipeline. Prefect lets a task declare how many times it is "
    "retried and how long it waits between attempts. The defaults are conservative, so most teams tune them "
    "once they have seen real failure rates in production."
)
CLEAN_B = (
    "Start with a delay of one second and double it on every attempt. Cap the delay so that a long outage does "
    "not stall the run for hours, and add a little jitter so that many workers do not wake up at the same moment."
)
CLEAN_ZH = (
    "网络调用偶尔失败，不应该让整个流水线停下来。任务可以声明重试次数和两次尝试之间的等待时间。"
    "默认值比较保守，团队通常在看到真实的失败率之后再调整。"
)
OUTLINE_PROMPT = "I am writing a blog post about retries in Prefect. List five short section headings for it, numbered 1 to 5."
SECTION_PROMPT = ('Write two paragraphs for the section "{h}" of a blog post about retries in Prefect. Write plain '
                  "prose for working software developers in a practical tone, without headings or lists.")


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


# -- refusals -------------------------------------------------------------------------------


def test_refusal_is_hard_and_quoted():
    result = check_refusal([("Intro", CLEAN_A), ("Backoff", "I'm sorry, but as an AI language model I cannot help "
                                                            "with writing this section.")])
    assert not result.passed and result.severity == "hard"
    assert result.evidence[0]["section"] == 2 and "I'm sorry" in result.evidence[0]["text"]
    assert "section 2 'Backoff'" in result.detail


def test_disclaimer_is_soft_and_chinese_refusal_is_caught():
    soft = check_refusal([("Intro", "As an AI language model, I don't have personal opinions. " + CLEAN_A)])
    assert not soft.passed and soft.severity == "soft"
    zh = check_refusal([("介绍", "抱歉，我无法为您撰写这一节的内容。")])
    assert not zh.passed and zh.severity == "hard"


def test_clean_text_and_code_are_not_refusals():
    code = "```python\nprint(\"I'm sorry, but I cannot help\")\n```"
    assert check_refusal([("Intro", CLEAN_A), ("Code", CLEAN_B + "\n\n" + code), ("中文", CLEAN_ZH)]).passed


# -- meta-talk ------------------------------------------------------------------------------


def test_preamble_and_signoff_are_trimmed_and_recorded():
    body = ("Sure! Here is section 2 of the article, written for engineers as you asked:\n\n" + CLEAN_A
            + " I hope this helps! Let me know if you need any changes.")
    trimmed, cut = trim_meta_talk(body)
    assert trimmed == CLEAN_A
    assert cut[0] == "Sure!" and any("hope this helps" in c for c in cut)
    outcome = run_editorial(Draft("retries", "Retries", ["Why"], [("Why", body)], "en-US"), QCSpec())
    assert outcome.bodies == [CLEAN_A] and outcome.repairs
    meta = next(c for c in outcome.checks if c.name == "meta_talk")
    assert meta.passed and "trimmed" in meta.detail and meta.evidence[0]["action"] == "trimmed"


def test_meta_talk_in_the_middle_or_with_trim_off_fails():
    middle = CLEAN_A + " As you requested, this section keeps it short. " + CLEAN_B
    assert trim_meta_talk(middle) == (middle, [])
    assert not check_meta_talk([("Why", middle)]).passed
    policy = QCSpec.model_validate({"meta_talk": {"trim": False}})
    outcome = run_editorial(Draft("t", "T", ["Why"], [("Why", "Sure! Here is the section:\n\n" + CLEAN_A)], "en-US"),
                            policy)
    assert outcome.bodies[0].startswith("Sure!")
    assert not next(c for c in outcome.checks if c.name == "meta_talk").passed


def test_chinese_meta_talk_and_plain_if_you_prose():
    assert trim_meta_talk("好的！以下是本节的内容：" + CLEAN_ZH)[0] == CLEAN_ZH
    # "if you need other datatypes" addresses the reader, not the requester
    assert check_meta_talk([("Types", "If you need other datatypes, convert them yourself. " + CLEAN_A)]).passed


# -- placeholders ---------------------------------------------------------------------------


@pytest.mark.parametrize("residue", [
    "[Insert a real-world example here]", "{{ example_code }}", "TODO: add numbers.", "Lorem ipsum dolor sit amet.",
    "Call XXX for support.", "【在此插入实际示例】", "[Your Company Name]",
])
def test_placeholders_are_caught(residue):
    result = check_placeholders([("Intro", CLEAN_A + " " + residue)])
    assert not result.passed and result.evidence[0]["section"] == 1


def test_placeholder_lookalikes_pass():
    ok = CLEAN_A + " Weak references (reference counting aside) matter. Use `{{ name }}` in a Jinja template."
    assert check_placeholders([("Intro", ok), ("Links", "See [the docs](https://docs.python.org/3/).")]).passed


# -- Markdown -------------------------------------------------------------------------------


def test_unclosed_fence_is_held_with_its_line():
    result = check_markdown([("Setup", CLEAN_A + "\n\n```python\nimport asyncio\n")])
    assert not result.passed and result.evidence[0]["problem"] == "unclosed code fence"
    assert result.evidence[0]["line"] == 3
    assert check_markdown([("Setup", CLEAN_A + "\n\n```python\nimport asyncio\n```\n")]).passed


def test_extra_headings_are_demoted_or_held():
    body = CLEAN_A + "\n\n## Conclusion\n\nDone.\n\nSetext\n------\n\n```\n# a comment, not a heading\n```"
    demoted, changed = demote_headings(body)
    assert "### Conclusion" in demoted and "### Setext" in demoted and "------" not in demoted
    assert "# a comment, not a heading" in demoted and changed == ["## Conclusion", "Setext"]
    held = run_editorial(Draft("t", "T", ["A"], [("A", body)], "en-US"),
                         QCSpec.model_validate({"markdown": {"extra_headings": "review"}}))
    assert not next(c for c in held.checks if c.name == "markdown").passed and held.bodies == [body]


def test_hidden_markup_is_held():
    for bad in ("<!-- TODO: verify -->", '<div class="x">note</div>', "<p>Text</p>", '<Note kind="x">'):
        assert not check_markdown([("A", CLEAN_A + "\n\n" + bad)]).passed, bad
    fine = CLEAN_A + " Use `List<String>`, List<String>, <b>bold</b> and <https://python.org>."
    assert check_markdown([("A", fine)]).passed


# -- language -------------------------------------------------------------------------------


def test_chinese_section_in_an_english_article(detector):
    result = check_language([("Why", CLEAN_A), ("How", CLEAN_ZH)], "en-US", detector, 60)
    assert not result.passed and result.evidence[0]["section"] == 2 and result.evidence[0]["detected"] == "zh"


def test_english_section_in_a_chinese_article_and_french_in_english(detector):
    assert not check_language([("为什么", CLEAN_ZH), ("How", CLEAN_A + " " + CLEAN_B)], "zh-CN", detector, 60).passed
    french = ("Un appel réseau instable ne doit pas faire échouer tout le pipeline. Prefect permet à une tâche "
              "de déclarer combien de fois elle est relancée et combien de temps elle attend entre deux essais.")
    assert not check_language([("Why", french)], "en-US", detector, 60).passed


def test_matching_languages_pass(detector):
    assert check_language([("Why", CLEAN_A), ("How", CLEAN_B)], "en-US", detector, 60).passed
    assert check_language([("为什么", CLEAN_ZH + " 使用 `asyncio.sleep` 等待。")], "zh-CN", detector, 60).passed


# -- duplication ----------------------------------------------------------------------------


def test_copied_section_is_caught_and_distinct_sections_pass():
    result = check_section_duplicates([("A", CLEAN_A), ("B", CLEAN_B), ("C", CLEAN_A)], "en-US", 0.5)
    assert not result.passed and result.evidence[0]["section"] == 3 and result.evidence[0]["copies_section"] == 1
    assert check_section_duplicates([("A", CLEAN_A), ("B", CLEAN_B)], "en-US", 0.5).passed


# -- links ----------------------------------------------------------------------------------


def test_links_outside_the_allowlist_are_listed_or_stripped():
    body = (CLEAN_A + " See [the guide](https://www.pythontips-guide.io/retries) and https://docs.python.org/3/ "
            "or www.made-up.net/x.")
    assert find_urls(body) == ["https://www.pythontips-guide.io/retries", "https://docs.python.org/3/",
                               "www.made-up.net/x"]
    result = check_links([("Why", body)], ["docs.python.org"])
    assert not result.passed and {e["text"] for e in result.evidence} == {
        "https://www.pythontips-guide.io/retries", "www.made-up.net/x"}
    stripped, removed = strip_links(body, ["python.org"])
    assert "the guide" in stripped and "pythontips" not in stripped and "made-up" not in stripped
    assert "https://docs.python.org/3/" in stripped and len(removed) == 2
    outcome = run_editorial(Draft("t", "T", ["Why"], [("Why", body)], "en-US"),
                            QCSpec.model_validate({"links": {"policy": "strip", "allow": ["python.org"]}}))
    links = next(c for c in outcome.checks if c.name == "links")
    assert links.passed and "stripped 2" in links.detail


# -- thin sections --------------------------------------------------------------------------


def test_sixteen_words_in_a_157_token_slot_is_thin():
    sixteen = "Retries help. They hide short outages from users and keep the pipeline running when networks fail."
    result = check_thin_sections([("A", CLEAN_A), ("B", sixteen)], "en-US", 157, 0.2, 40)
    assert not result.passed and result.evidence[0]["section"] == 2 and result.evidence[0]["words"] == 16
    # a terse but complete section in a generous slot is not thin
    assert check_thin_sections([("A", CLEAN_A)], "en-US", 600, 0.2, 40).passed


# -- relevance ------------------------------------------------------------------------------


def test_off_topic_title_and_section():
    off = ("Sourdough needs a lively starter, flour, water and salt. Knead the dough, let it rise overnight in a "
           "cool kitchen, then bake it in a very hot oven until the crust turns deep brown.")
    result = check_relevance("retries in Prefect", "Baking bread at home", [("A", CLEAN_A), ("Bread", off)], "en-US", 1)
    assert not result.passed
    assert [e["section"] for e in result.evidence] == [None, 2]
    assert check_relevance("retries in Prefect", "Retries that work", [("A", CLEAN_A), ("B", CLEAN_B)], "en-US",
                           1).passed


# -- prompt echo ----------------------------------------------------------------------------


def test_heading_echoing_the_outline_prompt():
    outline = ["Listing five short section headings for it, numbered 1 to 5", "Configuring backoff"]
    sections = [(h, CLEAN_A) for h in outline]
    prompts = [SECTION_PROMPT.format(h=h) for h in outline]
    result = check_prompt_echo(outline, OUTLINE_PROMPT, sections, prompts, ["retries in Prefect", "Retries"],
                               "en-US", 4, 8)
    assert not result.passed and result.evidence[0]["where"] == "heading" and result.evidence[0]["section"] == 1


def test_sentence_echoing_the_section_prompt_but_not_the_topic():
    outline = ["Why retries matter"]
    prompts = [SECTION_PROMPT.format(h=outline[0])]
    echo = "Write plain prose for working software developers in a practical tone. " + CLEAN_A
    bad = check_prompt_echo(outline, OUTLINE_PROMPT, [(outline[0], echo)], prompts, ["retries in Prefect"],
                            "en-US", 4, 8)
    assert not bad.passed and bad.evidence[0]["where"] == "body"
    # repeating the topic and the heading (values the pipeline filled in) is not an echo
    fine = "This section of a blog post about retries in Prefect explains why retries matter. " + CLEAN_A
    assert check_prompt_echo(outline, OUTLINE_PROMPT, [(outline[0], fine)], prompts, ["retries in Prefect"],
                             "en-US", 4, 8).passed


def test_chinese_heading_echo():
    prompt = "我正在写一篇关于重试机制的技术文章。请列出五个简短的小节标题，用数字 1 到 5 编号。"
    outline = ["请列出五个简短的小节标题", "配置退避"]
    result = check_prompt_echo(outline, prompt, [(h, CLEAN_ZH) for h in outline], [None, None], ["重试机制"],
                               "zh-CN", 4, 8)
    assert not result.passed and result.evidence[0]["heading"] == "请列出五个简短的小节标题"


# -- the suite ------------------------------------------------------------------------------


def test_a_check_that_raises_is_not_run_never_passed(monkeypatch):
    import copydesk.qc.language as language_check

    def broken(*args, **kwargs):
        raise RuntimeError("model file missing")

    monkeypatch.setattr(language_check, "check_language", broken)
    outcome = run_editorial(Draft("t", "T", ["A"], [("A", CLEAN_A)], "en-US"), QCSpec())
    language = next(c for c in outcome.checks if c.name == "language")
    assert not language.ran and "model file missing" in language.detail


def test_checks_needing_context_are_skipped_without_it():
    outcome = run_editorial(Draft("", "", ["A"], [("A", CLEAN_A)], "en-US"), QCSpec())
    assert {"prompt_echo", "thin_sections", "relevance"} <= set(outcome.skipped)
