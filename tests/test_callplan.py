"""The CallPlan (copydesk.callplan): the one description of a run's calls, which the writer
executes, `copydesk plan` sums and batch mode reads. The requests on the wire are checked by
tests/test_writer.py, test_cli_run.py, test_structured_outline.py and test_batch*.py; these
check that the writer sends exactly the plan's calls and that the plan's worst case bounds them."""

from __future__ import annotations

import json
from collections import Counter

import yaml

from copydesk.article import Article
from copydesk.budget import call_token_bound
from copydesk.callplan import MAX_TOPIC_CHARS, OUTLINE_ATTEMPTS, REPAIR_PART, CallPlan
from copydesk.calls import CallResult
from copydesk.client import Completion, Usage
from copydesk.plan import make_plan
from copydesk.prompts import STAGE_CONTEXT, PromptLibrary
from copydesk.qc.repair import MAX_NOTE_CHARS
from copydesk.spec import load_spec
from copydesk.store import call_key
from copydesk.writer import ArticleWriter


class _Recorder:
    """A stand-in for the call gateway: records what the writer sends, answers each stage with a fixed text."""

    fallback_model = None

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, dict, str, int]] = []  # stage, payload, call key, part

    async def complete(self, stage, request, key, site=None):
        self.sent.append((stage, request.payload(), key, site.part))
        return CallResult(Completion(self.answers[stage], "stop", Usage(1, 1, 2), request.model), cached=False)


def _writer(spec, answers, overrides=None):
    prompts = PromptLibrary(spec)
    gateway = _Recorder(answers)
    return ArticleWriter(spec, prompts, gateway, overrides), prompts, gateway  # type: ignore[arg-type]


async def test_the_writer_sends_exactly_the_plans_calls(basic_spec):
    spec = load_spec(basic_spec)
    answers = {"title": "A Title", "outline": json.dumps({"headings": ["Alpha", "Beta", "Gamma"]}),
               "expansion": "Some text."}
    writer, prompts, gateway = _writer(spec, answers, {"audience": "operators"})
    article = Article(0, "topic words " * 100, "key-1")
    await writer.write(article)
    await writer.rewrite_section(article, 1, "Say it again, shorter.", 1)

    calls = CallPlan.of(spec).topic(prompts, article.topic, {"audience": "operators"})
    headings = ["Alpha", "Beta", "Gamma"]
    outline_form = writer.outline_formats.forms[0]
    expected = [calls.title(), calls.outline("A Title", 0),
                *(calls.section("A Title", headings, headings, i) for i in range(3)),
                calls.section("A Title", headings, headings, 1, note="Say it again, shorter.", rewrite=1)]
    wanted = []
    for call in expected:
        messages, _ = call.render(prompts)
        request = call.request(messages, outline_form if call.stage == "outline" else None)
        wanted.append((call.stage, request.payload(), call_key("key-1", call.stage, call.part, request), call.part))
    assert gateway.sent == wanted
    # what that description says, read from the wire
    assert [part for *_, part in gateway.sent] == [0, 0, 1, 2, 3, REPAIR_PART + 2]
    title_payload = gateway.sent[0][1]
    assert {k: v for k, v in title_payload.items() if k not in ("model", "messages")} == \
        spec.stages.title.sampling_params()
    user = title_payload["messages"][-1]["content"]
    assert "operators" in user and len(user) < MAX_TOPIC_CHARS + 100  # the topic is cut before the prompt
    assert gateway.sent[1][1]["response_format"] == outline_form
    assert "Write the section 2/3: Beta." in gateway.sent[3][1]["messages"][-1]["content"]
    rewrite = gateway.sent[-1][1]["messages"][-1]["content"]
    assert rewrite == gateway.sent[3][1]["messages"][-1]["content"] + "\n\nSay it again, shorter."
    assert "Say it again" not in article.sections[1].prompt  # the recorded prompt leaves the note out


async def test_the_worst_case_bounds_every_call_the_writer_makes(basic_spec):
    """Answers at their longest (four-byte characters, more headings than max_sections), the topic
    at its longest, a rewrite with the longest note: no call is larger than the plan's largest of
    its stage, and no stage makes more calls than the plan counts."""
    spec = load_spec(basic_spec)
    wide = "\U0001d525"  # a four-byte letter
    outline = [chr(ord("A") + i) + wide * 500 for i in range(spec.stages.outline.max_sections + 3)]
    answers = {"title": wide * 1000, "outline": json.dumps({"headings": outline}), "expansion": "Text."}
    writer, prompts, gateway = _writer(spec, answers)
    topic = wide * (MAX_TOPIC_CHARS * 2)
    article = Article(0, topic, "key-2")
    await writer.write(article)
    assert len(article.sections) == spec.stages.outline.max_sections
    await writer.rewrite_section(article, 0, wide * MAX_NOTE_CHARS, 1)

    worst = list(writer.plan.topic(prompts, topic).worst_case())
    largest: Counter[str] = Counter()
    for call in worst:
        messages, _ = call.render(prompts)
        largest[call.stage] = max(largest[call.stage], call_token_bound(messages, call.max_tokens))
    for stage, payload, _, _ in gateway.sent:
        assert call_token_bound(payload["messages"], payload["max_tokens"]) <= largest[stage], stage
    made = Counter(stage for stage, *_ in gateway.sent)
    counted = Counter(call.stage for call in worst)
    assert all(made[stage] <= counted[stage] for stage in made)


def test_each_call_takes_what_its_template_may_ask_for(basic_spec):
    """Every call's context is the topic's shared context plus exactly its stage's variables
    (copydesk.prompts.STAGE_CONTEXT, what `validate` checks templates against); the counts and
    call-store parts of the worst case; `make_plan` counts the same calls."""
    spec = load_spec(basic_spec)
    plan = CallPlan.of(spec)
    prompts = PromptLibrary(spec)
    calls = plan.topic(prompts, "alpha")
    worst = list(calls.worst_case())
    for call in worst:
        assert set(call.context) == set(calls.base) | set(STAGE_CONTEXT[call.stage])
    rewrites = spec.qc.repair.max_attempts
    sections = spec.stages.outline.max_sections
    parts = {stage: [c.part for c in worst if c.stage == stage] for stage in plan.stages}
    assert parts["title"] == [0, 1]  # a cut-off title is asked again (qc.truncated_title.reask)
    assert parts["outline"] == list(range(OUTLINE_ATTEMPTS))
    assert sorted(parts["expansion"]) == sorted(
        i + 1 + REPAIR_PART * r for i in range(sections) for r in range(rewrites + 1))
    assert [c.note is not None for c in worst if c.stage == "expansion"] == [False, *[True] * rewrites] * sections
    summed = make_plan(spec, ["alpha", "beta"])
    assert {s: p.calls for s, p in summed.stages.items()} == {s: 2 * len(parts[s]) for s in plan.stages}


def test_stage_models_and_batch_models(gateway_spec):
    spec = load_spec(gateway_spec)
    plan = CallPlan.of(spec)
    assert {s.stage: s.model for s in plan.stages.values()} == {
        "title": "gpt-4o-mini", "outline": "gw-outliner", "expansion": "gpt-4o-mini"}
    assert plan.batch_models() == {"title": "up-writer", "outline": "up-writer", "expansion": "up-writer-long"}
    assert {s.stage: s.params for s in plan.stages.values()} == {
        name: stage.sampling_params() for name, stage in spec.stages.items()}
    local = CallPlan.of(spec, "local")
    assert {s.model for s in local.stages.values()} == {"local"}
    assert [s.batch_model for s in local.stages.values()] == ["up-writer", "up-writer", "up-writer-long"]
    data = yaml.safe_load(gateway_spec.read_text(encoding="utf-8"))
    data.pop("batch")
    gateway_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert CallPlan.of(load_spec(gateway_spec)).batch_models() == {"expansion": "up-writer-long"}
