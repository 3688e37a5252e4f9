"""A cut-off title is asked for once more, with REASK_FACTOR times the title's max_tokens, before
the gate holds the article (copydesk.qc.title); `copydesk plan` counts that call."""

from __future__ import annotations

import json

import yaml

from copydesk.article import Article
from copydesk.calls import CallResult
from copydesk.client import Completion, Usage
from copydesk.plan import make_plan
from copydesk.prompts import PromptLibrary
from copydesk.qc.title import REASK_FACTOR
from copydesk.spec import load_spec
from copydesk.writer import ArticleWriter

OUTLINE = json.dumps({"headings": ["Alpha", "Beta", "Gamma"]})


class _Titles:
    """Answers the title calls in turn from `titles` ((text, finish reason), ...), every other stage fixed."""

    fallback_model = None

    def __init__(self, titles):
        self.titles = list(titles)
        self.title_calls: list[tuple[int, int]] = []  # (part, max_tokens)

    async def complete(self, stage, request, key, site=None):
        if stage == "title":
            self.title_calls.append((site.part, request.payload()["max_tokens"]))
            text, reason = self.titles.pop(0)
        else:
            text, reason = (OUTLINE if stage == "outline" else "Some text."), "stop"
        return CallResult(Completion(text, reason, Usage(1, 1, 2), request.model), cached=False)


async def _write(spec, titles):
    gateway = _Titles(titles)
    writer = ArticleWriter(spec, PromptLibrary(spec), gateway)  # type: ignore[arg-type]
    article = await writer.write(Article(0, "retries", "k"))
    return article, gateway.title_calls


async def test_a_cut_off_title_is_asked_again_with_more_room(basic_spec):
    spec = load_spec(basic_spec)
    size = spec.stages.title.max_tokens
    article, calls = await _write(spec, [("A Guide to Retries for Your Team's", "length"),
                                         ("A Guide to Retries for Your Team", "stop")])
    assert calls == [(0, size), (1, size * REASK_FACTOR)]
    assert (article.title, article.title_finish_reason) == ("A Guide to Retries for Your Team", "stop")
    assert article.generated


async def test_a_second_cut_off_answer_keeps_the_first_and_a_complete_title_is_not_asked_again(basic_spec):
    spec = load_spec(basic_spec)
    article, calls = await _write(spec, [("Retries and", "stop"), ("Retries for the", "stop")])
    assert [part for part, _ in calls] == [0, 1] and article.title == "Retries and"
    article, calls = await _write(spec, [("Retries in Practice", "stop")])
    assert [part for part, _ in calls] == [0] and article.title == "Retries in Practice"


async def test_off_no_reask_and_plan_counts_it_only_when_on(basic_spec):
    spec = load_spec(basic_spec)
    on = make_plan(spec, ["alpha"]).stages["title"]
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data.setdefault("qc", {})["truncated_title"] = {"reask": False}
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    spec = load_spec(basic_spec)
    off = make_plan(spec, ["alpha"]).stages["title"]
    assert (on.calls, off.calls) == (2, 1)
    assert on.worst_case_tokens > off.worst_case_tokens + spec.stages.title.max_tokens * REASK_FACTOR - 1
    article, calls = await _write(spec, [("Retries and", "length")])
    assert [part for part, _ in calls] == [0] and article.title == "Retries and"
