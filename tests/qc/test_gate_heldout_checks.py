"""The checks added after the held-out evaluation: each on the failure it is for, and not on clean text."""

from __future__ import annotations

from copydesk.qc.citations import check_citations
from copydesk.qc.echo import check_prompt_echo
from copydesk.qc.editorial import check_unfinished
from copydesk.qc.language import LanguageDetector, check_language
from copydesk.qc.markdown import check_markdown, demote_headings
from copydesk.qc.metatalk import check_meta_talk
from copydesk.qc.placeholders import check_placeholders
from copydesk.qc.refusal import check_refusal
from copydesk.qc.relevance import check_relevance
from copydesk.qc.terms import content_terms, tokens

CLEAN = ("Retries hide short outages from the people who use a service. A client that retries with a growing "
         "delay gives a struggling server room to recover, and a cap on attempts keeps one slow call from "
         "holding a worker forever.")
CLEAN_ZH = "重试可以掩盖短暂的网络故障。客户端在每次失败后等待更长的时间再重试，给服务器留出恢复的余地，同时限制重试次数，避免一个慢请求长期占用工作线程。"


def test_chat_template_tokens_and_label_headings_are_template_residue():
    for residue in ("<|im_end|>\n<|im_start|>assistant", "### Response:", "[/INST]", "</s>", "<|eot_id|>"):
        result = check_placeholders([("Retries", CLEAN + "\n" + residue)])
        assert not result.passed, residue
    assert not check_placeholders([("Section 3", CLEAN)]).passed
    assert not check_placeholders([("第3节", CLEAN_ZH)]).passed
    # a label inside a real heading, and a token inside code, are fine
    assert check_placeholders([("Section 3 of the HTTP spec, read closely", CLEAN)]).passed
    assert check_placeholders([("Retries", CLEAN + "\n\n```\nprint('<|im_end|>')\n```")]).passed


def test_a_hash_heading_is_a_second_title_held_not_demoted():
    body = CLEAN + "\n\n# Retries that work"
    assert demote_headings(body) == (body, [])
    result = check_markdown([("Retries", body)])
    assert not result.passed and "second title" in result.detail
    demoted, changed = demote_headings(CLEAN + "\n\n## Conclusion")
    assert changed == ["## Conclusion"] and "### Conclusion" in demoted


def test_a_section_written_inside_a_code_block():
    assert not check_markdown([("Retries", "```markdown\n" + CLEAN + "\n```")]).passed
    assert not check_markdown([("Retries", "```\n" + CLEAN + "\n```")]).passed
    assert check_markdown([("Retries", CLEAN + "\n\n```python\nretry(call, attempts=3)\n```\n\n" + CLEAN)]).passed


def test_a_switch_into_another_script_mid_sentence():
    detector = LanguageDetector()
    mixed = CLEAN.replace("a growing delay", "a growing 并且它会自动处理 delay")
    assert not check_language([("Retries", mixed)], "en-US", detector, 60).passed
    assert not check_language([("重试", CLEAN_ZH.replace("客户端", "客户端 это работает "))], "zh-CN", detector, 60).passed
    # Latin terms in Chinese, a Greek letter in English, are fine
    assert check_language([("重试", CLEAN_ZH.replace("客户端", "HTTP client "))], "zh-CN", detector, 60).passed
    assert check_language([("Retries", CLEAN + " The delay grows by a factor α each time.")], "en-US", detector,
                          60).passed


def test_cited_studies_and_surveys():
    for claim in ("According to a 2021 study by the University of Cambridge, 73% of teams saw fewer outages.",
                  "A 2019 survey by Stack Overflow found that 64 percent of developers had hit this.",
                  "As Smith et al. (2018) showed, the gain is threefold.",
                  "根据2020年清华大学的一项研究，超过70%的运维人员每天都会用到这个命令。"):
        assert not check_citations([("Retries", CLEAN + " " + claim)]).passed, claim
    assert check_citations([("Retries", CLEAN + " The study of failure modes is older than computing.")]).passed


def test_a_section_that_stops_mid_sentence():
    assert not check_unfinished([("Retries", CLEAN + " A client that retr")]).passed
    assert not check_unfinished([("重试", CLEAN_ZH + "客户端在每次失败")]).passed
    for ending in ("", "\n\n```python\nretry()\n```", "\n\n- one\n- two", " (see below).", "\n\n| a | b |"):
        assert check_unfinished([("Retries", CLEAN + ending)]).passed, ending


def test_new_meta_talk_and_refusal_wordings():
    for line in ("As instructed, I have avoided bullet points in this part.",
                 "Note to the editor: this paragraph can be shortened.",
                 "If you have any further questions, don't hesitate to ask!",
                 "如果还有其他问题，欢迎随时提问！", "需要我再补充一些示例吗？"):
        assert not check_meta_talk([("Retries", CLEAN + "\n\n" + line)]).passed, line
    assert not check_refusal([("Retries", "I won't be able to help with that.")]).passed


def test_echo_by_phrase_coverage_and_number_words():
    prompt = ('You are drafting the part "Retries" of the article "Retries that work". Explain it clearly for '
              "engineers who already know the basics; use full paragraphs and avoid bullet points.")
    paraphrase = "This part is written for engineers who already know the basics, in full paragraphs and without bullet points."
    args = (["Retries"], None, [("Retries", CLEAN + " " + paraphrase)], [prompt], ["retries", "Retries that work"],
            "en-US", 4, 8)
    assert not check_prompt_echo(*args, 0.5).passed
    assert check_prompt_echo(*args, 1.0).passed  # coverage off: no 8-word run is shared
    assert check_prompt_echo(["Retries"], None, [("Retries", CLEAN)], [prompt], ["retries"], "en-US", 4, 8, 0.5).passed
    assert tokens("five short section headings") == tokens("5 short section headings")


def test_terms_split_at_inner_punctuation_and_keep_latin_in_chinese():
    assert tokens("postmaster")[0] in content_terms("postmaster：PostgreSQL多用户数据库服务器", "zh-CN")
    assert {"os", "path"} <= content_terms("os.path joins", "en")
    result = check_relevance("postmaster：PostgreSQL多用户数据库服务器", "postmaster 使用指南", [("概述", CLEAN_ZH)], "zh-CN", 1)
    assert not any(e["section"] is None for e in result.evidence)


def test_relevance_generic_words_ignore_terms_and_topic_coverage():
    sections = [("Why retry", CLEAN)]
    # "guide" alone does not make a title relevant
    result = check_relevance("a guide to retries", "A practical guide to baking bread", sections, "en-US", 1)
    assert not result.passed and result.evidence[0]["section"] is None
    # a brand every title carries does not count either, when the spec says so
    assert check_relevance("Acme retries", "Acme bread", sections, "en-US", 1).passed
    assert not check_relevance("Acme retries", "Acme bread", sections, "en-US", 1, ignore_terms=["Acme"]).passed
    # coverage: opt-in
    body = [("Backoff", CLEAN.replace("Retries", "Waiting").replace("retries", "waits")), ("Why retry", CLEAN)]
    assert check_relevance("retries and idempotency keys", "Retries", body, "en-US", 1).passed
    off = check_relevance("retries and idempotency keys", "Retries", body, "en-US", 1, min_topic_coverage=0.5)
    assert not off.passed and off.evidence[-1]["where"] == "article"


def test_headings_that_repeat_an_earlier_heading():
    from copydesk.qc.duplicates import check_section_duplicates

    other = ("A timeout says how long a caller is willing to wait. Without one, a hung server holds every "
             "connection that reaches it, and the pool empties long before anyone notices the outage.")
    sections = [("Listing Cache Query List", CLEAN), ("Why timeouts matter", other),
                ("Listing Cached Query List", "Caches keep answers close to the code that asks for them.")]
    result = check_section_duplicates(sections, "en-US", 0.5)
    assert not result.passed and result.evidence[0]["where"] == "heading"
    assert result.evidence[0]["section"] == 3 and result.evidence[0]["copies_section"] == 1
    assert check_section_duplicates([("Retries", CLEAN), ("Retry budgets", other)], "en-US", 0.5).passed
    assert not check_meta_talk([("Retries", CLEAN + " The last paragraph was added at the user's request.")]).passed


def test_headings_are_compared_beyond_the_topics_own_words():
    from copydesk.qc.duplicates import heading_repeats

    heads = ["Best practices for using feature flags", "Feature flags and security best practices"]
    assert heading_repeats(heads, "en-US", "Using feature flags safely") == []
    assert heading_repeats(heads + ["Best practice for feature flags"], "en-US", "Using feature flags safely") == [
        (2, 0)]
    assert heading_repeats(["Caching database queries", "Caching database queries"], "en-US",
                           "Caching database queries") == [(1, 0)]
