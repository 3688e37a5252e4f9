"""RunMetrics: values after recording, the textfile, the cumulative file and /metrics."""

from __future__ import annotations

import multiprocessing
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from copydesk.metrics import (
    ARTICLE_STATUSES,
    OUTCOMES,
    RunMetrics,
    TextfileCollector,
    metric_names,
    serve_metrics,
    textfile_registry,
)

MINI = "gpt-4o-mini"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(parsed: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in parsed.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def value(m: RunMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# A run's API calls: (stage, model, prompt_tokens, completion_tokens).
CALLS = [
    ("title", MINI, 41, 9),
    ("outline", MINI, 130, 212),
    ("expansion", "gpt-4.1", 410, 598),
    ("expansion", "gpt-4.1", 395, 600),
    ("expansion", "gpt-4.1", 402, 377),
]


def recorded_run(pipeline: str = "tech-blog") -> RunMetrics:
    m = RunMetrics(pipeline)
    for stage, model, prompt, completion in CALLS:
        m.record_usage(stage, model, prompt, completion)
        m.record_request(stage, model, "ok", 0.8)
    return m


# --------------------------------------------------------------------------- recording


def test_usage_counts_tokens_per_stage_model_and_pipeline() -> None:
    m = recorded_run()
    assert value(m, "copydesk_prompt_tokens_total", stage="title", model=MINI, pipeline="tech-blog") == 41
    assert value(m, "copydesk_completion_tokens_total", stage="outline", model=MINI, pipeline="tech-blog") == 212
    assert value(m, "copydesk_prompt_tokens_total", stage="expansion", model="gpt-4.1", pipeline="tech-blog") == 1207
    assert value(m, "copydesk_completion_tokens_total", stage="expansion", model="gpt-4.1", pipeline="tech-blog") == 1575
    assert m.token_totals() == (41 + 130 + 1207, 9 + 212 + 1575)
    assert m.token_totals("expansion") == (1207, 1575)
    assert m.token_totals().total == sum(p + c for _, _, p, c in CALLS)


def test_token_counters_stay_exact_integers_for_large_totals() -> None:
    m = RunMetrics("big")
    big = 2**40 + 1  # far beyond any run, still exact in the float a counter holds
    m.record_usage("expansion", MINI, big, 1)
    m.record_usage("expansion", MINI, 3, big)
    assert m.token_totals() == (big + 3, big + 1)
    parsed = samples(m.render().decode())
    assert int(total(parsed, "copydesk_prompt_tokens_total")) == big + 3


@pytest.mark.parametrize("bad", [1.5, -1, True, None, "12"])
def test_usage_rejects_anything_but_non_negative_integers(bad: object) -> None:
    m = RunMetrics("tech-blog")
    with pytest.raises(ValueError, match="prompt_tokens"):
        m.record_usage("title", MINI, bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="completion_tokens"):
        m.record_usage("title", MINI, 1, bad)  # type: ignore[arg-type]
    assert m.token_totals() == (0, 0), "a rejected call must not count half of its usage"


def test_unknown_stage_outcome_and_status_are_errors() -> None:
    m = RunMetrics("tech-blog")
    with pytest.raises(ValueError, match="stage must be one of title, outline, expansion"):
        m.record_usage("summary", MINI, 1, 1)
    with pytest.raises(ValueError, match="outcome must be one of ok, retried, rate_limited, failed"):
        m.record_request("title", MINI, "timeout", 1.0)
    with pytest.raises(ValueError, match="status must be one of"):
        m.record_article("done")
    with pytest.raises(ValueError, match="seconds"):
        m.record_request("title", MINI, "ok", -0.1)
    with pytest.raises(ValueError, match="seconds"):
        m.observe_qc(float("nan"))
    with pytest.raises(ValueError, match="model"):
        m.record_usage("title", "", 1, 1)
    with pytest.raises(ValueError, match="pipeline"):
        RunMetrics("")


def test_request_outcomes_and_durations() -> None:
    m = RunMetrics("tech-blog")
    m.record_request("expansion", MINI, "rate_limited", 0.2)
    m.record_request("expansion", MINI, "rate_limited", 0.3)
    m.record_request("expansion", MINI, "retried", 30.0)
    m.record_request("expansion", MINI, "ok", 4.0)
    m.record_request("title", MINI, "failed", 120.0)
    labels = {"stage": "expansion", "model": MINI, "pipeline": "tech-blog"}
    assert value(m, "copydesk_llm_requests_total", **labels, outcome="rate_limited") == 2
    assert value(m, "copydesk_llm_requests_total", **labels, outcome="retried") == 1
    assert value(m, "copydesk_llm_requests_total", **labels, outcome="ok") == 1
    assert value(m, "copydesk_llm_requests_total", stage="title", model=MINI, pipeline="tech-blog", outcome="failed") == 1
    assert value(m, "copydesk_llm_request_duration_seconds_count", **labels, outcome="rate_limited") == 2
    assert value(m, "copydesk_llm_request_duration_seconds_sum", **labels, outcome="rate_limited") == pytest.approx(0.5)
    assert value(m, "copydesk_llm_request_duration_seconds_bucket", **labels, outcome="ok", le="2.5") == 0
    assert value(m, "copydesk_llm_request_duration_seconds_bucket", **labels, outcome="ok", le="5.0") == 1


def test_budget_gauges() -> None:
    m = RunMetrics("tech-blog")
    m.set_budget(60_000, 60_000)
    m.set_budget(60_000, 11_500)
    assert value(m, "copydesk_budget_limit_tokens", pipeline="tech-blog") == 60_000
    assert value(m, "copydesk_budget_remaining_tokens", pipeline="tech-blog") == 11_500
    assert value(m, "copydesk_budget_spent_tokens", pipeline="tech-blog") == 48_500
    with pytest.raises(ValueError, match="cannot exceed the limit"):
        m.set_budget(100, 101)
    with pytest.raises(ValueError, match="remaining"):
        m.set_budget(100, 1.5)  # type: ignore[arg-type]


def test_budget_overrun_is_exported_not_refused() -> None:
    """An API that ignores max_tokens can push spent past the limit; metrics must show it
    rather than crash the run."""
    m = RunMetrics("tech-blog")
    m.set_budget(1_000, -250)
    assert value(m, "copydesk_budget_spent_tokens", pipeline="tech-blog") == 1_250
    assert value(m, "copydesk_budget_remaining_tokens", pipeline="tech-blog") == -250


def test_articles_moderation_and_qc() -> None:
    m = RunMetrics("zh-news")
    # Every status exists from the start, at zero, so increase() sees the first article.
    for status in ARTICLE_STATUSES:
        assert value(m, "copydesk_articles_total", pipeline="zh-news", status=status) == 0
    assert value(m, "copydesk_moderation_flagged_total", pipeline="zh-news") == 0
    m.record_article("published")
    m.record_article("published")
    m.record_article("rejected")
    m.record_moderation_flag()
    m.observe_qc(0.7)
    m.observe_qc(3.0)
    assert value(m, "copydesk_articles_total", pipeline="zh-news", status="published") == 2
    assert value(m, "copydesk_articles_total", pipeline="zh-news", status="rejected") == 1
    assert value(m, "copydesk_articles_total", pipeline="zh-news", status="incomplete") == 0
    assert value(m, "copydesk_moderation_flagged_total", pipeline="zh-news") == 1
    assert value(m, "copydesk_qc_seconds_count", pipeline="zh-news") == 2
    assert value(m, "copydesk_qc_seconds_sum", pipeline="zh-news") == pytest.approx(3.7)


def test_prepare_creates_zero_series() -> None:
    m = RunMetrics("tech-blog")
    m.prepare("outline", MINI)
    labels = {"stage": "outline", "model": MINI, "pipeline": "tech-blog"}
    assert value(m, "copydesk_prompt_tokens_total", **labels) == 0
    assert value(m, "copydesk_completion_tokens_total", **labels) == 0
    assert value(m, "copydesk_estimated_cost_usd_total", **labels) == 0
    for outcome in OUTCOMES:
        assert value(m, "copydesk_llm_requests_total", **labels, outcome=outcome) == 0
    m.prepare("outline", "my-local-llama")  # no price: no cost series, and no error
    assert value(m, "copydesk_estimated_cost_usd_total", stage="outline", model="my-local-llama", pipeline="tech-blog") is None


def test_estimated_cost_follows_the_price_table_and_overrides() -> None:
    m = RunMetrics("tech-blog", prices={"house-model": {"input": 1.0, "output": 2.0}})
    m.record_usage("expansion", MINI, 1_000_000, 1_000_000)  # 0.15 + 0.60
    m.record_usage("expansion", "house-model", 500_000, 250_000)  # 0.5 + 0.5
    m.record_usage("expansion", "unknown-model", 10, 10)
    cost = {"stage": "expansion", "pipeline": "tech-blog"}
    assert value(m, "copydesk_estimated_cost_usd_total", **cost, model=MINI) == pytest.approx(0.75)
    assert value(m, "copydesk_estimated_cost_usd_total", **cost, model="house-model") == pytest.approx(1.0)
    assert value(m, "copydesk_estimated_cost_usd_total", **cost, model="unknown-model") is None
    # Its tokens are counted all the same.
    assert value(m, "copydesk_prompt_tokens_total", **cost, model="unknown-model") == 10


def test_runs_do_not_share_a_registry_or_touch_the_global_one() -> None:
    before = REGISTRY.get_sample_value("copydesk_prompt_tokens_total", {"stage": "title", "model": MINI, "pipeline": "tech-blog"})
    a, b = RunMetrics("tech-blog"), RunMetrics("tech-blog")
    a.record_usage("title", MINI, 5, 5)
    assert a.registry is not b.registry
    assert b.token_totals() == (0, 0)
    assert before is None
    assert REGISTRY.get_sample_value("copydesk_prompt_tokens_total", {"stage": "title", "model": MINI, "pipeline": "tech-blog"}) is None


def test_runs_may_share_an_explicit_registry() -> None:
    shared = CollectorRegistry()
    a, b = RunMetrics("tech-blog", shared), RunMetrics("zh-news", shared)
    a.record_usage("title", MINI, 5, 1)
    b.record_usage("title", MINI, 7, 2)
    c = RunMetrics("tech-blog", shared)  # same pipeline again: same series, no duplicate error
    c.record_usage("title", MINI, 1, 1)
    assert a.token_totals() == (6, 2)
    assert b.token_totals() == (7, 2)


# --------------------------------------------------------------------------- textfile


def test_textfile_parses_and_its_totals_equal_what_was_recorded(tmp_path: Path) -> None:
    m = recorded_run()
    m.set_budget(60_000, 60_000 - sum(p + c for _, _, p, c in CALLS))
    m.record_article("published")
    path = m.write_textfile(tmp_path / "run-1" / "metrics.prom")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["metrics.prom"], "no temporary file is left behind"

    parsed = samples(path.read_text(encoding="utf-8"))
    assert total(parsed, "copydesk_prompt_tokens_total") == sum(p for _, _, p, _ in CALLS)
    assert total(parsed, "copydesk_completion_tokens_total") == sum(c for _, _, _, c in CALLS)
    for stage in ("title", "outline", "expansion"):
        expected = sum(p for s, _, p, _ in CALLS if s == stage)
        assert total(parsed, "copydesk_prompt_tokens_total", stage=stage, pipeline="tech-blog") == expected
    assert total(parsed, "copydesk_llm_requests_total", outcome="ok") == len(CALLS)
    assert total(parsed, "copydesk_budget_spent_tokens", pipeline="tech-blog") == sum(p + c for _, _, p, c in CALLS)
    assert total(parsed, "copydesk_articles_total", status="published") == 1
    assert path.read_bytes() == m.render()  # the file is exactly what /metrics would answer


def test_textfile_must_be_a_prom_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.prom"):
        RunMetrics("tech-blog").write_textfile(tmp_path / "metrics.txt")


def test_cumulative_file_adds_runs_and_increments_without_double_counting(tmp_path: Path) -> None:
    path = tmp_path / "copydesk.prom"
    first = RunMetrics("tech-blog")
    first.prepare("title", MINI)
    first.accumulate_textfile(path)  # at start: zero series
    assert total(samples(path.read_text()), "copydesk_prompt_tokens_total") == 0
    first.record_usage("title", MINI, 10, 3)
    first.record_request("title", MINI, "ok", 0.5)
    first.accumulate_textfile(path)
    first.record_usage("title", MINI, 5, 2)
    first.set_budget(1000, 980)
    first.accumulate_textfile(path)  # only the +5/+2 since the last call is added
    first.accumulate_textfile(path)  # nothing new: nothing added

    second = RunMetrics("zh-news")
    second.record_usage("expansion", MINI, 100, 50)
    second.record_article("rejected")
    second.accumulate_textfile(path)
    third = RunMetrics("tech-blog")
    third.record_usage("title", MINI, 1, 1)
    third.set_budget(2000, 1000)
    third.accumulate_textfile(path)

    parsed = samples(path.read_text())
    assert total(parsed, "copydesk_prompt_tokens_total", pipeline="tech-blog") == 16
    assert total(parsed, "copydesk_completion_tokens_total", pipeline="tech-blog") == 6
    assert total(parsed, "copydesk_prompt_tokens_total", pipeline="zh-news") == 100
    assert total(parsed, "copydesk_llm_requests_total", outcome="ok") == 1
    assert total(parsed, "copydesk_llm_request_duration_seconds_count") == 1
    assert total(parsed, "copydesk_articles_total", pipeline="zh-news", status="rejected") == 1
    # Budget gauges hold each pipeline's latest run; counters' _created stamps are dropped.
    assert total(parsed, "copydesk_budget_limit_tokens", pipeline="tech-blog") == 2000
    assert total(parsed, "copydesk_budget_spent_tokens", pipeline="tech-blog") == 1000
    assert not any(name.endswith("_created") for name, _ in parsed)
    # Each run's own registry is untouched by the merge.
    assert first.token_totals() == (15, 5)


def test_cumulative_file_refuses_a_shared_registry(tmp_path: Path) -> None:
    shared = CollectorRegistry()
    RunMetrics("a", shared)
    with pytest.raises(RuntimeError, match="shared"):
        RunMetrics("b", shared).accumulate_textfile(tmp_path / "copydesk.prom")


def test_corrupt_cumulative_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "copydesk.prom"
    path.write_text("this is { not prometheus\n", encoding="utf-8")
    m = RunMetrics("tech-blog")
    m.record_usage("title", MINI, 3, 4)
    m.accumulate_textfile(path)
    assert total(samples(path.read_text()), "copydesk_prompt_tokens_total") == 3
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and not aside[0].endswith(".prom")


def _accumulate_many(path: str, pipeline: str, rounds: int) -> None:
    m = RunMetrics(pipeline)
    for _ in range(rounds):
        m.record_usage("expansion", MINI, 7, 3)
        m.accumulate_textfile(path)


def test_concurrent_processes_lose_no_increment(tmp_path: Path) -> None:
    path = str(tmp_path / "copydesk.prom")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_accumulate_many, args=(path, f"p{i % 2}", 40)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    parsed = samples(Path(path).read_text())
    assert total(parsed, "copydesk_prompt_tokens_total") == 4 * 40 * 7
    assert total(parsed, "copydesk_completion_tokens_total", pipeline="p0") == 2 * 40 * 3


# --------------------------------------------------------------------------- /metrics


def test_serve_metrics_exposes_the_cumulative_file_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "copydesk.prom"
    server = serve_metrics(0, textfile_registry(path))
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert b"copydesk_" not in response.read()  # no file yet: nothing, and no error
        m = recorded_run()
        m.accumulate_textfile(path)
        with urllib.request.urlopen(url, timeout=10) as response:
            parsed = samples(response.read().decode())
        assert total(parsed, "copydesk_prompt_tokens_total") == m.token_totals().prompt
        assert total(parsed, "copydesk_completion_tokens_total") == m.token_totals().completion
    finally:
        server.shutdown()
        server.server_close()
    assert server.server_address[0] == "127.0.0.1"


def test_serve_metrics_of_a_run_registry() -> None:
    m = recorded_run()
    server = serve_metrics(0, m.registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            parsed = samples(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert total(parsed, "copydesk_prompt_tokens_total", stage="title") == 41


def test_textfile_collector_ignores_an_unparsable_file(tmp_path: Path) -> None:
    path = tmp_path / "copydesk.prom"
    path.write_text("garbage {{{\n", encoding="utf-8")
    assert list(TextfileCollector(path).collect()) == []


# --------------------------------------------------------------------------- names


def test_metric_names_match_what_a_registry_exposes() -> None:
    m = RunMetrics("tech-blog")
    m.record_usage("title", MINI, 1, 1)
    m.record_request("title", MINI, "ok", 0.1)
    m.set_budget(10, 8)
    m.set_shared_budget("content-team", 1000, 200)
    m.record_article("published")
    m.record_moderation_flag()
    m.observe_qc(0.1)
    exposed = {name for name, _ in samples(m.render().decode()) if not name.endswith("_created")}
    assert metric_names() == exposed
    assert {
        "copydesk_prompt_tokens_total",
        "copydesk_completion_tokens_total",
        "copydesk_llm_requests_total",
        "copydesk_llm_request_duration_seconds_bucket",
        "copydesk_budget_remaining_tokens",
        "copydesk_budget_limit_tokens",
        "copydesk_budget_spent_tokens",
        "copydesk_articles_total",
        "copydesk_moderation_flagged_total",
        "copydesk_qc_seconds_bucket",
    } <= exposed
