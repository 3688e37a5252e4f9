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
from copydesk.errors import InputError, TopicError
from copydesk.orchestration import ARTICLES_PER_CALL_SLOT, RunHooks, execute_run, run_batch, run_folder_lock
from copydesk.request import MAX_TOPICS_PER_RUN, RunRequest, clean_topics, read_topics_file
from copydesk.runner import PipelineRun, RunSummary
from copydesk.settings import Settings


def _settings(fake: FakeOpenAI) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01)


class CountingHooks(RunHooks[RunSummary]):
    """The default steps, counting how many articles are in progress at once."""

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


async def test_at_most_n_articles_are_in_flight(basic_spec, tmp_path):
    topics = [f"topic {n}" for n in range(12)]
    hooks = CountingHooks()
    with FakeOpenAI(latency=0.01) as fake:
        summary = await execute_run(
            RunRequest(spec_path=str(basic_spec), topics=topics, out_dir=str(tmp_path)),
            hooks, settings=_settings(fake), articles_in_flight=3,
        )
    assert hooks.peak == 3  # bounded, and the pool was used to its bound
    assert hooks.order == list(range(12))  # articles start in topic order
    assert summary.by_status == {"published": 12}
    frame = pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert sorted(frame["topic"]) == sorted(topics)


async def test_the_default_bound_follows_the_concurrency(basic_spec, tmp_path):
    hooks = CountingHooks()
    with FakeOpenAI(latency=0.01) as fake:
        await execute_run(
            RunRequest(spec_path=str(basic_spec), topics=[f"t{n}" for n in range(10)], out_dir=str(tmp_path),
                       concurrency=2),
            hooks, settings=_settings(fake),
        )
    assert hooks.peak == ARTICLES_PER_CALL_SLOT * 2


async def test_the_plain_run_takes_the_run_folder_lock(basic_spec, tmp_path):
    request = RunRequest(spec_path=str(basic_spec), topics=["x"], out_dir=str(tmp_path), run_id="held")
    with FakeOpenAI() as fake:
        with run_folder_lock(tmp_path / "held", "held"):
            with pytest.raises(InputError, match="run held is already running"):
                await run_batch(request, _settings(fake))
        assert fake.state.requests == []  # refused before any call
        summary = await run_batch(request, _settings(fake))  # free again once released
    assert summary.by_status == {"published": 1}


class _ClosingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:  # pragma: no cover
        raise AssertionError("no call expected")

    async def aclose(self) -> None:
        self.closed = True


async def test_a_failed_open_closes_what_it_started_and_releases_the_lock(basic_spec, tmp_path, monkeypatch):
    def broken_gate(*args, **kwargs):
        raise RuntimeError("the gate cannot be built")

    monkeypatch.setattr(resources, "QualityGate", broken_gate)
    transport = _ClosingTransport()
    request = RunRequest(spec_path=str(basic_spec), topics=["x"], out_dir=str(tmp_path), run_id="broken")
    settings = Settings(OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    with pytest.raises(RuntimeError, match="gate cannot be built"):
        await run_batch(request, settings, transport=transport)
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


async def test_the_flow_hooks_go_through_the_same_bounded_pool_and_lock(basic_spec, tmp_path, monkeypatch):
    """copydesk_flows.pipeline.execute is the same orchestration: each article goes to its
    task (here a stand-in counting them) through the bounded pool, under the run-folder lock."""
    from copydesk_flows import pipeline

    current = peak = 0
    handles = set()

    async def counting_task(handle, article, artifacts):
        nonlocal current, peak
        handles.add(id(handle))
        current += 1
        peak = max(peak, current)
        try:
            return await handle.get().process(article)
        finally:
            current -= 1

    monkeypatch.setattr(pipeline, "article_task", counting_task)
    request = RunRequest(spec_path=str(basic_spec), topics=[f"t{n}" for n in range(9)], out_dir=str(tmp_path),
                         concurrency=1, run_id="flowish")
    with FakeOpenAI(latency=0.01) as fake:
        with run_folder_lock(tmp_path / "flowish", "flowish"):
            with pytest.raises(InputError, match="already running"):
                await pipeline.execute(request, settings=_settings(fake), artifacts=False)
        result = await pipeline.execute(request, settings=_settings(fake), artifacts=False)
    assert peak == ARTICLES_PER_CALL_SLOT * 1
    assert len(handles) == 1  # one LocalRun for the whole run
    assert result["by_status"] == {"published": 9} and result["exit_code"] == 0
