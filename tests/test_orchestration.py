"""copydesk.orchestration: the one run sequence both paths share (no Prefect here), against
the fake API over loopback: bounded articles in flight, the run-folder lock, clean-up."""

from __future__ import annotations

import asyncio

import httpx
import pandas as pd
import pytest
from fake_openai import FakeOpenAI

from copydesk import resources
from copydesk.article import Article
from copydesk.article_pipeline import ArticlePipeline
from copydesk.errors import InputError, TopicError
from copydesk.orchestration import (
    ARTICLES_CHECKED_PER_CALL_SLOT,
    ARTICLES_PER_CALL_SLOT,
    RunHooks,
    execute_run,
    run_batch,
    run_folder_lock,
)
from copydesk.request import MAX_TOPICS_PER_RUN, RunRequest, clean_topics, read_topics_file
from copydesk.runner import PipelineRun, RunSummary
from copydesk.settings import Settings


def _settings(fake: FakeOpenAI) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01)


class CountingHooks(RunHooks[RunSummary]):
    """The default steps, counting how many articles are in progress (written or checked) at once."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.order: list[int] = []

    async def article(self, run: PipelineRun, article: Article) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)
        self.order.append(article.index)
        try:
            await super().article(run, article)
        finally:
            self.current -= 1


@pytest.fixture
def counted_writes(monkeypatch):
    """ArticlePipeline.write, counting the articles being written (making their calls) at once."""
    counts = {"now": 0, "peak": 0}
    write = ArticlePipeline.write

    async def counting_write(self, article):
        counts["now"] += 1
        counts["peak"] = max(counts["peak"], counts["now"])
        try:
            return await write(self, article)
        finally:
            counts["now"] -= 1

    monkeypatch.setattr(ArticlePipeline, "write", counting_write)
    return counts


async def test_at_most_n_articles_are_in_flight(basic_spec, tmp_path, counted_writes):
    topics = [f"topic {n}" for n in range(12)]
    hooks = CountingHooks()
    with FakeOpenAI(latency=0.01) as fake:
        summary = await execute_run(
            RunRequest(spec_path=str(basic_spec), topics=topics, out_dir=str(tmp_path)),
            hooks, settings=_settings(fake), articles_in_flight=3,
        )
    assert counted_writes["peak"] == 3  # bounded, and the pool was used to its bound
    assert hooks.order == list(range(12))  # articles start in topic order
    assert summary.by_status == {"published": 12}
    frame = pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert sorted(frame["topic"]) == sorted(topics)


async def test_the_default_bound_follows_the_concurrency(basic_spec, tmp_path, counted_writes):
    with FakeOpenAI(latency=0.01) as fake:
        await execute_run(
            RunRequest(spec_path=str(basic_spec), topics=[f"t{n}" for n in range(10)], out_dir=str(tmp_path),
                       concurrency=2),
            CountingHooks(), settings=_settings(fake),
        )
    assert counted_writes["peak"] == ARTICLES_PER_CALL_SLOT * 2


async def test_a_slow_check_does_not_hold_up_the_next_articles_calls(basic_spec, tmp_path, monkeypatch,
                                                                     counted_writes):
    """A written article gives its writing slot back before its checks: while checks are slow
    (LanguageTool on a busy machine), later articles keep making their calls, and the backlog
    of articles waiting for their checks stays bounded."""
    checking = {"now": 0}
    release = asyncio.Event()
    check = ArticlePipeline.check

    async def slow_check(self, article):
        checking["now"] += 1
        try:
            await release.wait()  # no check ends until the test says so
            return await check(self, article)
        finally:
            checking["now"] -= 1

    monkeypatch.setattr(ArticlePipeline, "check", slow_check)
    writing, backlog = 2, ARTICLES_CHECKED_PER_CALL_SLOT * 1  # concurrency 1 in basic_spec's run below
    hooks = CountingHooks()
    with FakeOpenAI(latency=0.01) as fake:
        task = asyncio.create_task(execute_run(
            RunRequest(spec_path=str(basic_spec), topics=[f"t{n}" for n in range(12)], out_dir=str(tmp_path),
                       concurrency=1),
            hooks, settings=_settings(fake), articles_in_flight=writing,
        ))
        async with asyncio.timeout(20):
            while checking["now"] < writing + backlog:  # every article the bounds allow is written
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        # more articles were written than there are writing slots, none of them checked yet; and no more
        # started than the two bounds allow
        assert checking["now"] == writing + backlog
        assert hooks.peak == writing + backlog
        assert counted_writes["now"] == 0
        release.set()
        summary = await asyncio.wait_for(task, 20)
    assert summary.by_status == {"published": 12}
    assert hooks.order == list(range(12))


async def test_the_plain_run_takes_the_run_folder_lock(basic_spec, tmp_path):
    request = RunRequest(spec_path=str(basic_spec), topics=["x"], out_dir=str(tmp_path), run_id="held")
    with FakeOpenAI() as fake:
        with run_folder_lock(tmp_path / "held", "held"):
            with pytest.raises(InputError, match="run held is already running"):
                await run_batch(request, _settings(fake))
        assert fake.state.requests == []  # refused before any call
        summary = await run_batch(request, _settings(fake))  # free again once released
    assert summary.by_status == {"published": 1}


class _ClosingTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def test_a_gate_that_cannot_be_built_fails_the_run_and_closes_what_it_started(basic_spec, tmp_path,
                                                                                   monkeypatch):
    """The gate is built while the first calls run; if building it fails (an internal error, not
    a checker that is unavailable), the first check raises it, the run stops, its client is
    closed and the run folder's lock released."""
    def broken_gate(*args, **kwargs):
        raise RuntimeError("the gate cannot be built")

    monkeypatch.setattr(resources, "QualityGate", broken_gate)
    transport = _ClosingTransport()
    request = RunRequest(spec_path=str(basic_spec), topics=["x", "y"], out_dir=str(tmp_path), run_id="broken")
    with FakeOpenAI() as fake:
        with pytest.raises(RuntimeError, match="gate cannot be built"):
            await run_batch(request, _settings(fake), transport=transport)
    assert transport.closed  # the client built before the failure was closed
    with run_folder_lock(tmp_path / "broken", "broken"):  # and the lock was released
        pass


async def test_an_internal_error_in_one_article_stops_the_others_and_propagates(basic_spec, tmp_path):
    class Exploding(RunHooks[RunSummary]):
        def __init__(self) -> None:
            self.cancelled = 0

        async def article(self, run: PipelineRun, article: Article) -> None:
            if article.index == 0:
                await asyncio.sleep(0.05)
                raise RuntimeError("boom")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    hooks = Exploding()
    with FakeOpenAI() as fake:
        async with asyncio.timeout(10):
            with pytest.raises(RuntimeError, match="boom"):
                await execute_run(
                    RunRequest(spec_path=str(basic_spec), topics=["a", "b", "c"], out_dir=str(tmp_path)),
                    hooks, settings=_settings(fake), articles_in_flight=3,
                )
    assert hooks.cancelled == 2


# ------------------------------------------------------------------------------ the topic limit


def test_the_topic_limit_is_inclusive():
    assert len(clean_topics(f"t{n}" for n in range(MAX_TOPICS_PER_RUN))) == MAX_TOPICS_PER_RUN
    with pytest.raises(TopicError, match="more than 10,000 topics"):
        clean_topics(f"t{n}" for n in range(MAX_TOPICS_PER_RUN + 1))


def test_a_topics_file_over_the_limit_names_the_file_and_line(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("# a comment\n\n" + "".join(f"topic {n}\n" for n in range(MAX_TOPICS_PER_RUN + 5)))
    with pytest.raises(TopicError, match=rf"topics.txt, line {MAX_TOPICS_PER_RUN + 3}: more than 10,000 topics"):
        read_topics_file(path)
    path.write_text("".join(f"topic {n}\n" for n in range(MAX_TOPICS_PER_RUN)))
    assert len(read_topics_file(path)) == MAX_TOPICS_PER_RUN


def test_a_topics_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_bytes("\ufefffirst\nsecond\n".encode() + b"bad \xff byte\n")
    with pytest.raises(TopicError, match=r"topics.txt, line 3: not UTF-8 text"):
        read_topics_file(path)
    path.write_bytes("\ufefffirst\nsecond\n".encode())
    assert read_topics_file(path) == ["first", "second"]


async def test_the_flow_hooks_go_through_the_same_bounded_pool_and_lock(basic_spec, tmp_path, counted_writes):
    """copydesk_flows.pipeline.execute is the same orchestration: the articles go through the
    bounded pool, under the run-folder lock (each article is not a task run of its own)."""
    from copydesk_flows import pipeline

    request = RunRequest(spec_path=str(basic_spec), topics=[f"t{n}" for n in range(9)], out_dir=str(tmp_path),
                         concurrency=1, run_id="flowish")
    with FakeOpenAI(latency=0.01) as fake:
        with run_folder_lock(tmp_path / "flowish", "flowish"):
            with pytest.raises(InputError, match="already running"):
                await pipeline.execute(request, settings=_settings(fake), artifacts=False)
        result = await pipeline.execute(request, settings=_settings(fake), artifacts=False)
    assert counted_writes["peak"] == ARTICLES_PER_CALL_SLOT * 1
    assert result["by_status"] == {"published": 9} and result["exit_code"] == 0




class KeepingHooks(RunHooks[RunSummary]):
    """The default steps, keeping the run for the test to look at after it finished."""

    run: PipelineRun | None = None

    async def finished(self, run: PipelineRun, summary: RunSummary) -> RunSummary:
        self.run = run
        return summary


async def test_exported_articles_release_their_text_and_keep_their_word_count(basic_spec, tmp_path):
    """Issue 25: a 10,000-topic run kept every article's section bodies to the end; once an
    article's file is written the run keeps its row's figures only, and the CSV is unchanged."""
    from copydesk.text import count_words

    hooks = KeepingHooks()
    with FakeOpenAI(latency=0.0) as fake:
        summary = await execute_run(
            RunRequest(spec_path=str(basic_spec), topics=["alpha", "beta", "gamma"], out_dir=str(tmp_path)),
            hooks, settings=_settings(fake),
        )
    assert hooks.run is not None and summary.by_status == {"published": 3}
    frame = pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)
    for article, row in zip(hooks.run.articles, frame.itertuples(), strict=True):
        assert article.sections and all(s.body == "" and s.prompt == "" for s in article.sections)
        assert article.outline_prompt == ""
        with pytest.raises(RuntimeError, match="released"):
            article.body_markdown()
        text = (tmp_path / summary.run_id / row.path).read_text(encoding="utf-8")
        bodies = [part.split("\n", 1)[1] for part in text.split("\n## ")[1:]]  # each section's body
        assert row.word_count == article.word_count == count_words("\n".join(b.strip() for b in bodies), "en-US") > 0
        assert row.sections == len(article.sections)
