"""Batch mode (copydesk.batch) against tests/fake_batch.py over real HTTP on loopback:
stage-by-stage batches, exact per-stage parameters on every line, token accounting to
the batch output's usage, failed lines retried in a follow-up batch, budget splits and
refusals, servers without a Batch API, cancellation and resume."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from fake_batch import FakeBatchAPI

from copydesk.errors import InputError
from copydesk.orchestration import run_batch
from copydesk.request import RunRequest
from copydesk.settings import Settings
from copydesk.spec import load_spec
from copydesk.store import CallStore
from copydesk.writer import outline_formats


def _settings(fake: FakeBatchAPI, **extra: object) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, backoff_initial=0.01, batch_poll_seconds=0.02, **extra)


def _request(spec: Path, tmp_path: Path, topics: list[str], **kw: object) -> RunRequest:
    return RunRequest(spec_path=str(spec), topics=topics, out_dir=str(tmp_path / "out"), mode="batch", **kw)


def _csv(summary) -> pd.DataFrame:
    return pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)


STAGE_OF = re.compile(r"^a(\d+)-(title|outline|expansion)-(\d+)-[0-9a-f]{12}$")


async def test_a_batch_run_goes_stage_by_stage_with_each_stages_parameters(basic_spec, tmp_path):
    topics = ["unit tests", "code review", "logging"]
    with FakeBatchAPI(cached_share=0.25) as fake:
        summary = await run_batch(_request(basic_spec, tmp_path, topics), _settings(fake))
    assert fake.state.requests == []  # not one direct chat call
    assert summary.mode == "batch"
    assert summary.by_status == {"published": 3}
    # one batch per stage: titles, outlines, sections
    stages = [{STAGE_OF.match(line["custom_id"]).group(2) for line in upload} for upload in fake.uploads]
    assert stages == [{"title"}, {"outline"}, {"expansion"}]
    assert [len(u) for u in fake.uploads] == [3, 3, 12]
    assert fake.upload_purposes == ["batch"] * 3
    assert all(b["endpoint"] == "/v1/chat/completions" and b["completion_window"] == "24h" for b in fake.created)
    spec = load_spec(basic_spec)
    for line in fake.batch_lines:
        article, stage, _ = STAGE_OF.match(line["custom_id"]).groups()
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        body = dict(line["body"])
        assert body.pop("model") == "gpt-4o-mini"
        body.pop("messages")
        expected = getattr(spec.stages, stage).sampling_params()  # exactly the stage's own values
        if stage == "outline":  # structured outlines: OpenAI's form first (writer.outline_formats)
            outline = spec.stages.outline
            expected["response_format"] = outline_formats(outline.structured, outline.min_sections, outline.max_sections)[0]
        assert body == expected
        assert topics[int(article) - 1] in json.dumps(line["body"], ensure_ascii=False)
    ids = [line["custom_id"] for line in fake.batch_lines]
    assert len(ids) == len(set(ids))
    # tokens: the CSV adds up to the batch output's usage, line for line
    frame = _csv(summary)
    usage = fake.usage_by_custom_id
    for n, row in enumerate(frame.itertuples(), 1):
        mine = [u for cid, u in usage.items() if cid.startswith(f"a{n}-")]
        assert row.prompt_tokens == sum(u["prompt_tokens"] for u in mine)
        assert row.completion_tokens == sum(u["completion_tokens"] for u in mine)
        assert row.total_tokens == sum(u["total_tokens"] for u in mine)
        assert row.cached_prompt_tokens == sum(u["prompt_tokens_details"]["cached_tokens"] for u in mine)
    assert summary.budget_spent == sum(u["total_tokens"] for u in usage.values()) == summary.total_tokens
    assert summary.cached_prompt_tokens == sum(u["prompt_tokens_details"]["cached_tokens"] for u in usage.values())
    assert set(summary.batches) == {b["id"] for b in fake.created}
    assert all(b["status"] == "completed" for b in summary.batches.values())


async def test_failed_lines_are_retried_in_a_follow_up_batch_then_the_article_is_incomplete(basic_spec, tmp_path):
    with FakeBatchAPI() as fake:
        fake.line_faults = {"a1-title": ["error"], "a2-title": ["500"] * 10}
        summary = await run_batch(_request(basic_spec, tmp_path, ["one", "two", "three"]),
                                  _settings(fake, max_attempts=3))
    assert fake.state.requests == []
    titles = [[line["custom_id"] for line in upload if "-title-" in line["custom_id"]] for upload in fake.uploads]
    # first batch: all three; a1 and a2 again with the outline of a3; then a2 a third (last) time
    assert [len(t) for t in titles[:3]] == [3, 2, 1]
    assert all(t == [] for t in titles[3:])
    frame = _csv(summary).set_index("topic")
    assert frame.loc["one", "status"] == "published"
    assert frame.loc["two", "status"] == "incomplete"
    assert "HTTP 500" in frame.loc["two", "reasons"] and "a2-title" in frame.loc["two", "reasons"]
    assert frame.loc["three", "status"] == "published"
    assert summary.retries == 3  # a1 once, a2 twice
    # a failed line costs nothing: the budget holds exactly what the output files reported
    assert summary.budget_spent == sum(u["total_tokens"] for u in fake.usage_by_custom_id.values())


async def test_a_bad_request_line_is_not_retried(basic_spec, tmp_path):
    with FakeBatchAPI() as fake:
        fake.line_faults = {"a1-title": ["400"]}
        summary = await run_batch(_request(basic_spec, tmp_path, ["one"]), _settings(fake))
    assert len(fake.uploads) == 1
    assert summary.by_status == {"incomplete": 1}


async def test_a_batch_that_does_not_fit_is_split_and_one_that_never_fits_is_refused(basic_spec, tmp_path):
    # room for about two title lines' upper bound at a time, not three
    with FakeBatchAPI() as fake:
        summary = await run_batch(_request(basic_spec, tmp_path, ["one", "two", "three"], budget=450),
                                  _settings(fake))
    assert fake.state.requests == []
    assert [len(u) for u in fake.uploads] == [2, 1]  # two titles fit, the third waited for their usage
    assert summary.stopped_by_budget and summary.exit_code == 3
    assert summary.budget_spent <= 450
    frame = _csv(summary)
    assert set(frame["status"]) == {"incomplete"}
    assert all("budget" in r for r in frame["reasons"])

    with FakeBatchAPI() as fake:
        summary = await run_batch(_request(basic_spec, tmp_path, ["one"], budget=50), _settings(fake))
    assert fake.uploads == [] and fake.created == []  # refused before anything was sent
    assert summary.exit_code == 3 and summary.budget_spent == 0


async def test_batch_mode_against_a_server_without_a_batch_api(basic_spec, tmp_path):
    with FakeBatchAPI(batch_api=False) as fake:
        with pytest.raises(InputError, match=r"mode: batch .*" + re.escape(fake.url)):
            await run_batch(_request(basic_spec, tmp_path, ["one"]), _settings(fake))
        assert fake.state.requests == []
        summary = await run_batch(_request(basic_spec, tmp_path, ["one"]).model_copy(update={"mode": "auto"}),
                                  _settings(fake))
    assert summary.mode == "realtime" and summary.by_status == {"published": 1}
    assert len(fake.state.requests) >= 5  # title, outline, sections: realtime calls


async def test_a_cancelled_run_cancels_its_batch_and_a_rerun_collects_it(basic_spec, tmp_path):
    request = _request(basic_spec, tmp_path, ["one", "two"], run_id="cancel-me")
    with FakeBatchAPI() as fake:
        fake.hold.set()
        fake.cancel_completed = 1
        task = asyncio.create_task(run_batch(request, _settings(fake)))
        while not fake.polls or fake.batches[fake.polls[-1]]["status"] != "in_progress":
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fake.cancels == [fake.created[0]["id"]]
        fake.hold.clear()
        summary = await run_batch(request, _settings(fake))
    assert summary.by_status == {"published": 2}
    titles = [[line["custom_id"] for line in u if "-title-" in line["custom_id"]] for u in fake.uploads]
    # the cancelled batch answered one title before the cancel: only the other was sent again
    assert len(titles[0]) == 2 and len(titles[1]) == 1


def test_the_store_keeps_batch_records_across_a_reopen(tmp_path):
    store = CallStore(tmp_path / "calls.jsonl")
    store.put_batch({"ref": "r1", "file_id": "file-1", "lines": {"a1-title-0-x": "k"}})
    store.put_batch({"ref": "r1", "batch_id": "batch-1"})
    store.close()
    again = CallStore(tmp_path / "calls.jsonl")
    assert again.batches == {"r1": {"ref": "r1", "file_id": "file-1", "lines": {"a1-title-0-x": "k"},
                                    "batch_id": "batch-1"}}
    assert len(again) == 0


async def test_a_budget_stop_cancels_the_batch_in_flight(basic_spec, tmp_path):
    """Something else closes the budget (a shared allowance spent by another run) while a batch
    waits: the batch is cancelled, what it finished is kept, the run ends stopped by the budget."""
    from copydesk.orchestration import RunHooks, execute_run
    from copydesk.runner import RunSummary

    class Capture(RunHooks[RunSummary]):
        run = None

        async def article(self, run, article):
            Capture.run = run
            await super().article(run, article)

    with FakeBatchAPI() as fake:
        fake.hold.set()
        fake.cancel_completed = 1
        task = asyncio.create_task(execute_run(_request(basic_spec, tmp_path, ["one", "two"]), Capture(),
                                               settings=_settings(fake)))
        while not fake.polls or fake.batches[fake.polls[-1]]["status"] != "in_progress":
            await asyncio.sleep(0.02)
        Capture.run.budget.close("shared allowance content-team is spent")
        summary = await asyncio.wait_for(task, 30)
    assert fake.cancels == [fake.created[0]["id"]]
    assert len(fake.created) == 1
    assert summary.stopped_by_budget and summary.exit_code == 3
    assert summary.by_status == {"incomplete": 2}
    assert summary.budget_spent == sum(u["total_tokens"] for u in fake.usage_by_custom_id.values()) > 0


@pytest.mark.parametrize("pipeline", ["tech-blog", "zh-tech-blog"])
def test_the_shipped_section_prompts_put_the_static_part_first(pipeline):
    """Prompt caching hits a prefix: the sections of one article share everything up to the
    section's own heading (system prompt, topic, title, outline, vars), which comes last."""
    from copydesk.prompts import PromptLibrary

    spec = load_spec(Path(__file__).parents[1] / "pipelines" / f"{pipeline}.yaml")
    prompts = PromptLibrary(spec)
    outline = ["Why it matters", "How it works", "Common mistakes"]
    base = prompts.context("observability", title="Seeing inside your services", outline=outline,
                           section_count=3)
    texts = ["\n".join(m["content"] for m in prompts.prompt("expansion", {**base, "section": h, "section_index": i})
                       .messages()) for i, h in enumerate(outline, 1)]
    common = texts[0]
    for text in texts[1:]:
        while not text.startswith(common):
            common = common[:-1]
    for text, heading in zip(texts, outline, strict=True):
        assert heading in text[len(common):]  # the varying part comes after the shared prefix
        assert len(common) >= 0.6 * len(text)
    assert "observability" in common
    if "title" in spec.stages.expansion.prompt or pipeline.startswith("zh"):
        assert "Seeing inside your services" in common and all(h in common for h in outline)


def test_cached_tokens_are_read_from_the_usage():
    import httpx

    from copydesk.client import parse_completion

    def answer(usage):
        return parse_completion(httpx.Response(200, json={
            "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}], "usage": usage}), "m")

    assert answer({"prompt_tokens": 2000, "completion_tokens": 5, "total_tokens": 2005,
                   "prompt_tokens_details": {"cached_tokens": 1792}}).usage.cached_prompt_tokens == 1792
    assert answer({"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}).usage.cached_prompt_tokens == 0
    assert answer({"prompt_tokens": 20, "completion_tokens": 5,
                   "prompt_tokens_details": {"cached_tokens": "junk"}}).usage.cached_prompt_tokens == 0


async def test_realtime_calls_record_cached_prompt_tokens_too(basic_spec, tmp_path):
    with FakeBatchAPI(cached_share=0.5) as fake:
        summary = await run_batch(_request(basic_spec, tmp_path, ["one"]).model_copy(update={"mode": None}),
                                  _settings(fake))
    assert summary.mode == "realtime" and fake.uploads == []
    expected = sum(int((sum(len(m["content"].split()) + 4 for m in body["messages"]) + 3) * 0.5)
                   for body in fake.state.requests)
    assert summary.cached_prompt_tokens == expected > 0
    assert _csv(summary)["cached_prompt_tokens"].sum() == expected
    metrics = (Path(summary.run_dir) / "metrics.prom").read_text()
    assert f'copydesk_cached_prompt_tokens_total{{model="gpt-4o-mini",pipeline="basic",stage="title"}}' in metrics


@pytest.mark.parametrize("limit", [1_000_000, 450])
async def test_a_shared_allowance_is_reserved_per_batch_and_settled_to_usage(basic_spec, tmp_path, limit):
    import contextlib

    from test_shared_allowance import MemoryStore

    from copydesk.allowance import Allowance
    from copydesk.orchestration import RunHooks, execute_run
    from copydesk.runner import RunSummary

    store = MemoryStore(Allowance(name="team", max_tokens=limit, period="day", timezone="UTC"))

    class Shared(RunHooks[RunSummary]):
        def allowance_store(self, run):
            return contextlib.nullcontext(store)

    basic_spec.write_text(basic_spec.read_text().replace(
        "budget:\n  max_total_tokens: 60000",
        f"budget:\n  max_total_tokens: 60000\n  shared: {{name: team}}"))
    with FakeBatchAPI() as fake:
        summary = await execute_run(_request(basic_spec, tmp_path, ["one", "two", "three"]), Shared(),
                                    settings=_settings(fake))
    (limit_, used, reserved) = next(iter(store.counters.values()))
    assert reserved == 0 and used <= limit
    assert used == summary.budget_spent == sum(u["total_tokens"] for u in fake.usage_by_custom_id.values())
    if limit == 450:
        assert [len(u) for u in fake.uploads] == [2, 1] and summary.exit_code == 3
    else:
        assert summary.by_status == {"published": 3}


def test_mode_batch_without_any_api_exits_2_before_the_local_model_starts(basic_spec, tmp_path, monkeypatch):
    from copydesk.runner import PipelineRun

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match=r"mode: batch .*embedded local model") as info:
        PipelineRun.prepare(_request(basic_spec, tmp_path, ["one"]), Settings())
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()  # nothing written
    assert PipelineRun.prepare(_request(basic_spec, tmp_path, ["one"]).model_copy(update={"mode": "auto"}),
                               Settings()).mode == "auto"


async def test_a_run_killed_before_recording_its_batch_id_finds_the_batch_by_its_file(basic_spec, tmp_path):
    request = _request(basic_spec, tmp_path, ["one", "two"], run_id="lost-id")
    with FakeBatchAPI() as fake:
        fake.hold.set()
        fake.cancel_completed = 2  # the whole title batch answers, even once cancelled
        task = asyncio.create_task(run_batch(request, _settings(fake)))
        while not fake.polls or fake.batches[fake.polls[-1]]["status"] != "in_progress":
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store = tmp_path / "out" / "lost-id" / "calls.jsonl"
        rows = [json.loads(line) for line in store.read_text().splitlines() if line.strip()]
        assert any("batch_id" in r.get("batch", {}) for r in rows)
        # as if killed between POST /batches and recording the id
        store.write_text("".join(json.dumps(r) + "\n" for r in rows if "batch_id" not in r.get("batch", {})))
        fake.hold.clear()
        summary = await run_batch(request, _settings(fake))
    assert summary.by_status == {"published": 2}
    titles = [b for b in fake.created if any("-title-" in line["custom_id"] for line in fake._lines(b["input_file_id"]))]
    assert len(titles) == 1 and len(fake.uploads) == 3  # found by its input file: no second title batch
