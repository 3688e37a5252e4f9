"""The article writer and the plain-asyncio run, against the fake API over loopback (no Prefect)."""

from __future__ import annotations

import itertools

import pandas as pd
from fake_openai import FakeOpenAI, default_reply

from copydesk.orchestration import run_batch
from copydesk.request import RunRequest
from copydesk.settings import Settings


def _settings(fake: FakeOpenAI) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01)


def _rows(summary) -> pd.DataFrame:
    return pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)


async def test_an_unusable_outline_is_asked_for_once_more(basic_spec, tmp_path):
    outlines = itertools.count()

    def reply(body):
        text = default_reply(body)
        if "Make an outline" in body["messages"][-1]["content"] and next(outlines) == 0:
            return "Sure, here you go."  # no headings at all
        return text

    with FakeOpenAI(reply=reply) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)),
                                  _settings(fake))
    row = _rows(summary).iloc[0]
    assert row["status"] == "published", row["reasons"]
    assert sum("Make an outline" in b["messages"][-1]["content"] for b in fake.state.requests) == 2


async def test_outline_unusable_twice_makes_only_that_article_incomplete(basic_spec, tmp_path):
    def reply(body):
        user = body["messages"][-1]["content"]
        if "Make an outline" in user and "broken" in user:
            return "Intro"
        return default_reply(body)

    with FakeOpenAI(reply=reply) as fake:
        summary = await run_batch(
            RunRequest(spec_path=str(basic_spec), topics=["fine topic", "broken topic"], out_dir=str(tmp_path)),
            _settings(fake),
        )
    rows = _rows(summary).set_index("topic")
    assert rows.loc["fine topic", "status"] == "published"
    assert rows.loc["broken topic", "status"] == "incomplete"
    assert "unusable outline" in rows.loc["broken topic", "reasons"]
    assert summary.exit_code == 0


async def test_a_400_keeps_the_partial_article_with_the_api_message(basic_spec, tmp_path):
    with FakeOpenAI() as fake:
        fake.inject("400")
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["x"], out_dir=str(tmp_path)),
                                  _settings(fake))
    row = _rows(summary).iloc[0]
    assert row["status"] == "incomplete"
    assert "maximum context length" in row["reasons"]
    assert row["path"] and (tmp_path / summary.run_id / row["path"]).is_file()


async def test_huge_and_chinese_topics(basic_spec, tmp_path):
    huge = "word " * 5000
    with FakeOpenAI() as fake:
        summary = await run_batch(
            RunRequest(spec_path=str(basic_spec), topics=[huge, "如何使用大模型写作"], out_dir=str(tmp_path)),
            _settings(fake),
        )
    rows = _rows(summary)
    assert len(rows) == 2
    # a huge topic is cut before it reaches a prompt
    assert all(len(b["messages"][-1]["content"]) < 2000 for b in fake.state.requests)
    assert all(len(slug) <= 80 and "/" not in slug for slug in rows["slug"])


async def test_missing_usage_and_malformed_answers_are_counted_conservatively(basic_spec, tmp_path):
    with FakeOpenAI() as fake:
        fake.inject("nousage", "malformed")
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["x"], out_dir=str(tmp_path)),
                                  _settings(fake))
    assert summary.by_status == {"published": 1}
    # the budget counted the upper bound of the two calls it could not see, so it
    # charged more than the API billed, never less
    assert summary.budget_spent > fake.total_tokens
    assert summary.total_tokens < fake.total_tokens  # the CSV counts only what the API reported
