"""Prometheus metrics of one copydesk run, and how they leave the process.

Metric                                          type       labels
copydesk_prompt_tokens_total                    counter    stage, model, pipeline
copydesk_completion_tokens_total                counter    stage, model, pipeline
copydesk_cached_prompt_tokens_total             counter    stage, model, pipeline
copydesk_estimated_cost_usd_total               counter    stage, model, pipeline
copydesk_llm_requests_total                     counter    stage, model, pipeline, outcome
copydesk_llm_request_duration_seconds           histogram  stage, model, pipeline, outcome
copydesk_budget_limit_tokens                    gauge      pipeline
copydesk_budget_spent_tokens                    gauge      pipeline
copydesk_budget_remaining_tokens                gauge      pipeline
copydesk_shared_budget_spent_tokens             gauge      name
copydesk_shared_budget_limit_tokens             gauge      name
copydesk_articles_total                         counter    pipeline, status
copydesk_moderation_flagged_total               counter    pipeline
copydesk_qc_seconds                             histogram  pipeline

Token counters are incremented only with the integers of the API's `usage`, so
they equal the CSV's `prompt_tokens` / `completion_tokens` columns to the token
(a float holds every integer below 2**53 exactly).

`outcome` of `copydesk_llm_requests_total` (and of the duration histogram):

    ok            a call succeeded: one per successful call, timed by its successful attempt
    retried       an attempt failed with a retryable error other than 429
                  (5xx, timeout, malformed answer)
    rate_limited  an attempt was answered 429
    failed        a call gave up, after its last retry or at once on an error that is
                  not retried; one per call, in addition to its attempts' own outcomes

So `ok + failed` counts calls, `ok + retried + rate_limited` counts attempts (an
attempt that fails with an error that is not retried shows only as `failed`), and
`failed / (ok + failed)` is the share of calls that failed.

Where the numbers go
--------------------
* `write_textfile(run_dir / "metrics.prom")`: this run's own numbers, rewritten
  atomically; they agree with the run's CSV.
* `accumulate_textfile(output_dir / "copydesk.prom")`: adds what this run recorded
  since its last call into one cumulative file shared by every run (file-locked).
  That file's counters only grow, so `increase()` over it is exact; point
  node-exporter's textfile collector at its folder, or let `copydesk serve` expose
  it: served flow runs execute in subprocesses (Prefect's runner), so an in-memory
  registry in the serve process would never see their numbers.
  Call it once when a run starts (after `prepare`) so every series exists at 0
  before it first moves: Prometheus cannot see the first increment of a series
  that is born with its value.
* `serve_metrics(port, textfile_registry(path))`: /metrics over that file.

Each `RunMetrics` owns a fresh `CollectorRegistry` by default, so runs and tests
never collide with each other or with prometheus_client's global registry.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from copydesk import rundir
from copydesk.locks import file_lock
from copydesk.pricing import PriceLike, estimate_cost
from copydesk.redact import redact
from copydesk.spec import STAGE_NAMES

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = STAGE_NAMES
OUTCOMES: tuple[str, ...] = ("ok", "retried", "rate_limited", "failed")
ARTICLE_STATUSES: tuple[str, ...] = rundir.STATUSES

#: Name of a run's own metrics file, in its run folder (see `write_textfile`).
RUN_TEXTFILE = rundir.RUN_METRICS_NAME
#: Name of the cumulative file every run adds to, in the output folder (see `accumulate_textfile`).
CUMULATIVE_TEXTFILE = rundir.CUMULATIVE_METRICS_NAME

#: One chat completion takes from a fraction of a second to the 120 s timeout.
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: Grammar and moderation checks of one article.
QC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_CALL = ("stage", "model", "pipeline")


class TokenTotals(NamedTuple):
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class _Families:
    """The metric objects of one registry; shared by every RunMetrics using that registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.prompt_tokens = Counter(
            "copydesk_prompt_tokens", "Prompt tokens billed by the API (usage.prompt_tokens).", _CALL, registry=r
        )
        self.completion_tokens = Counter(
            "copydesk_completion_tokens",
            "Completion tokens billed by the API (usage.completion_tokens).",
            _CALL,
            registry=r,
        )
        self.cached_prompt_tokens = Counter(
            "copydesk_cached_prompt_tokens",
            "Prompt tokens served from the API's prompt cache (usage.prompt_tokens_details.cached_tokens).",
            _CALL,
            registry=r,
        )
        self.cost = Counter(
            "copydesk_estimated_cost_usd",
            "Estimated USD cost from copydesk's price table; models without a price are not counted.",
            _CALL,
            registry=r,
        )
        self.requests = Counter(
            "copydesk_llm_requests",
            "Chat-completion outcomes: ok (call succeeded), retried (attempt failed, not 429), "
            "rate_limited (attempt answered 429), failed (call gave up).",
            (*_CALL, "outcome"),
            registry=r,
        )
        self.duration = Histogram(
            "copydesk_llm_request_duration_seconds",
            "Duration of one chat-completion attempt, by the outcome recorded with it.",
            (*_CALL, "outcome"),
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.budget_limit = Gauge(
            "copydesk_budget_limit_tokens", "Token budget of the run (max_total_tokens).", ("pipeline",), registry=r
        )
        self.budget_spent = Gauge(
            "copydesk_budget_spent_tokens", "Tokens of the budget used so far.", ("pipeline",), registry=r
        )
        self.budget_remaining = Gauge(
            "copydesk_budget_remaining_tokens", "Tokens of the budget still available.", ("pipeline",), registry=r
        )
        self.shared_spent = Gauge(
            "copydesk_shared_budget_spent_tokens",
            "Tokens spent or reserved this period from a shared allowance (budget.shared), as the Prefect "
            "server held them when this run last looked.", ("name",), registry=r
        )
        self.shared_limit = Gauge(
            "copydesk_shared_budget_limit_tokens", "A shared allowance's tokens per period (the operator's, copydesk budget create/set).",
            ("name",), registry=r
        )
        self.articles = Counter(
            "copydesk_articles", "Articles finished, by QC status.", ("pipeline", "status"), registry=r
        )
        self.moderation_flagged = Counter(
            "copydesk_moderation_flagged", "Articles the moderation check flagged.", ("pipeline",), registry=r
        )
        self.qc_seconds = Histogram(
            "copydesk_qc_seconds", "Time spent in the QC gate per article.", ("pipeline",), buckets=QC_BUCKETS, registry=r
        )
        self.users = 0


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_of(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        families = _families.get(registry)
        if families is None:
            families = _families[registry] = _Families(registry)
        families.users += 1
        return families


class RunMetrics:
    """The metrics of one run of one pipeline.

    With the default `registry=None` it records into a registry of its own. Several
    RunMetrics may share one registry (they then share its series: counters add up
    across them); `accumulate_textfile` refuses a shared registry because it could
    not tell this run's increments from the others'.
    """

    def __init__(
        self,
        pipeline: str,
        registry: CollectorRegistry | None = None,
        *,
        prices: Mapping[str, PriceLike] | None = None,
        extra_stages: Sequence[str] = (),
    ) -> None:
        if not isinstance(pipeline, str) or not pipeline:
            raise ValueError(f"pipeline must be a non-empty string, got {pipeline!r}")
        self.pipeline = pipeline
        self.registry = registry if registry is not None else CollectorRegistry()
        self.prices = dict(prices or {})
        #: The stage labels besides STAGES: the spec's extra stages (`stages.extras`).
        self.stages = STAGES + tuple(s for s in extra_stages if s not in STAGES)
        #: Batch mode (copydesk.batch): costs at the models' batch prices.
        self.batch = False
        self._m = _families_of(self.registry)
        self._flushed: dict[Path, dict[tuple[str, str, tuple[tuple[str, str], ...]], float]] = {}
        self._flush_lock = threading.Lock()
        # Series whose labels are known up front exist from the start at 0.
        for status in ARTICLE_STATUSES:
            self._m.articles.labels(pipeline=pipeline, status=status)
        self._m.moderation_flagged.labels(pipeline=pipeline)

    # ------------------------------------------------------------------ recording

    def prepare(self, stage: str, model: str) -> None:
        """Create this stage's token and request series at 0 (call once per stage at start)."""
        labels = self._call_labels(stage, model)
        self._m.prompt_tokens.labels(**labels)
        self._m.completion_tokens.labels(**labels)
        self._m.cached_prompt_tokens.labels(**labels)
        if estimate_cost(model, 0, 0, self.prices) is not None:
            self._m.cost.labels(**labels)
        for outcome in OUTCOMES:
            self._m.requests.labels(**labels, outcome=outcome)

    def record_usage(self, stage: str, model: str, prompt_tokens: int, completion_tokens: int,
                     cached_prompt_tokens: int = 0) -> None:
        """Add one response's `usage` (integers, as the API reported them)."""
        labels = self._call_labels(stage, model)
        _check_count("prompt_tokens", prompt_tokens)
        _check_count("completion_tokens", completion_tokens)
        _check_count("cached_prompt_tokens", cached_prompt_tokens)
        self._m.prompt_tokens.labels(**labels).inc(prompt_tokens)
        self._m.completion_tokens.labels(**labels).inc(completion_tokens)
        self._m.cached_prompt_tokens.labels(**labels).inc(cached_prompt_tokens)
        cost = estimate_cost(model, prompt_tokens, completion_tokens, self.prices,
                             cached_prompt_tokens=min(cached_prompt_tokens, prompt_tokens), batch=self.batch)
        if cost is not None:
            self._m.cost.labels(**labels).inc(cost)

    def record_request(self, stage: str, model: str, outcome: str, seconds: float) -> None:
        """Count one outcome and observe its duration; see the module docstring for what
        each `outcome` means."""
        labels = self._call_labels(stage, model)
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        _check_seconds(seconds)
        self._m.requests.labels(**labels, outcome=outcome).inc()
        self._m.duration.labels(**labels, outcome=outcome).observe(seconds)

    def set_budget(self, limit: int, remaining: int) -> None:
        """The run's token budget now: its limit and what is left (spent = limit - remaining).

        `remaining` is negative when an API that ignores max_tokens pushed the run past
        its budget; it is exported as is (spent > limit), which is what the alert is for.
        """
        _check_count("limit", limit)
        if isinstance(remaining, bool) or not isinstance(remaining, int):
            raise ValueError(f"remaining must be an integer, got {remaining!r}")
        if remaining > limit:
            raise ValueError(f"remaining ({remaining}) cannot exceed the limit ({limit})")
        self._m.budget_limit.labels(pipeline=self.pipeline).set(limit)
        self._m.budget_spent.labels(pipeline=self.pipeline).set(limit - remaining)
        self._m.budget_remaining.labels(pipeline=self.pipeline).set(remaining)

    def set_shared_budget(self, name: str, limit: int, spent: int) -> None:
        """A shared allowance's current period: its limit and what is spent or reserved of it."""
        _check_count("limit", limit)
        _check_count("spent", spent)
        self._m.shared_limit.labels(name=name).set(limit)
        self._m.shared_spent.labels(name=name).set(spent)

    def record_article(self, status: str) -> None:
        """Count one finished article by its CSV status."""
        if status not in ARTICLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ARTICLE_STATUSES)}, got {status!r}")
        self._m.articles.labels(pipeline=self.pipeline, status=status).inc()

    def record_moderation_flag(self) -> None:
        """Count one article the moderation check flagged."""
        self._m.moderation_flagged.labels(pipeline=self.pipeline).inc()

    def observe_qc(self, seconds: float) -> None:
        """Time one article spent in the QC gate (grammar and moderation)."""
        _check_seconds(seconds)
        self._m.qc_seconds.labels(pipeline=self.pipeline).observe(seconds)

    # ------------------------------------------------------------------ reading

    def token_totals(self, stage: str | None = None) -> TokenTotals:
        """Prompt and completion tokens recorded for this pipeline (one stage, or all),
        read back from the metrics themselves."""
        prompt = completion = 0
        for family in self.registry.collect():
            if family.name not in ("copydesk_prompt_tokens", "copydesk_completion_tokens"):
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total") or sample.labels.get("pipeline") != self.pipeline:
                    continue
                if stage is not None and sample.labels.get("stage") != stage:
                    continue
                if family.name == "copydesk_prompt_tokens":
                    prompt += int(sample.value)
                else:
                    completion += int(sample.value)
        return TokenTotals(prompt, completion)

    def render(self) -> bytes:
        """The registry in Prometheus text format (what /metrics answers)."""
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ writing

    def write_textfile(self, path: str | os.PathLike[str]) -> Path:
        """Write this registry to `path` (must end in .prom) atomically: a temporary
        file in the same folder, then a rename, so a collector never reads half a file."""
        path = _prom_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
        return path

    def accumulate_textfile(self, path: str | os.PathLike[str]) -> Path:
        """Add this run's counter and histogram increments since the previous call for
        the same `path` to the cumulative file at `path`, and set its budget gauges to
        this run's. Other pipelines' and other runs' series in the file are kept.
        Safe against concurrent runs (an exclusive lock on `path`.lock). An unreadable
        file is moved aside to `path`.corrupt-<time> and started afresh: Prometheus
        sees a counter reset, which `increase()` handles."""
        if self._m.users > 1:
            raise RuntimeError(
                "accumulate_textfile needs a RunMetrics with a registry of its own; this registry is shared"
            )
        path = _prom_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._flush_lock, _exclusive_lock(path.with_name(path.name + ".lock")):
            current = _snapshot(self.registry.collect())
            flushed = self._flushed.get(path, {})
            merged = _read_cumulative(path)
            for name, (mtype, doc, samples) in current.items():
                _, _, target = merged.setdefault(name, (mtype, doc, {}))
                for key, value in samples.items():
                    if mtype == "gauge":
                        target[key] = value
                    else:
                        target[key] = target.get(key, 0.0) + value - flushed.get((name, *key), 0.0)
            registry = CollectorRegistry()
            registry.register(_StaticCollector(merged))
            write_to_textfile(str(path), registry)
            self._flushed[path] = {
                (name, *key): value
                for name, (mtype, _, samples) in current.items()
                if mtype != "gauge"
                for key, value in samples.items()
            }
        return path

    # ------------------------------------------------------------------ helpers

    def _call_labels(self, stage: str, model: str) -> dict[str, str]:
        if stage not in self.stages:
            raise ValueError(f"stage must be one of {', '.join(self.stages)}, got {stage!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        return {"stage": stage, "model": redact(model), "pipeline": self.pipeline}


# --------------------------------------------------------------------------- names


def metric_names(registry: CollectorRegistry | None = None) -> frozenset[str]:
    """Every series name a RunMetrics registry can expose (with _total, _bucket, _sum,
    _count), derived from the registered families rather than written out by hand."""
    if registry is None:
        registry = RunMetrics("names").registry
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return frozenset(names)


# --------------------------------------------------------------------------- serving


class TextfileCollector(Collector):
    """Exposes the metrics of a Prometheus text file, re-read on every scrape.

    A missing file exposes nothing; an unreadable one is logged and exposes nothing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> list[Metric]:
        return []  # the names are only known once the file is read

    def collect(self) -> Iterator[Metric]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read metrics file %s: %s", self.path, exc)
            return
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            log.warning("cannot parse metrics file %s: %s", self.path, exc)
            return
        yield from families


def textfile_registry(*paths: str | os.PathLike[str]) -> CollectorRegistry:
    """A registry exposing the given text files (for `copydesk serve`'s /metrics)."""
    registry = CollectorRegistry()
    for path in paths:
        registry.register(TextfileCollector(path))
    return registry


def serve_metrics(port: int, registry: Collector, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve `registry` at http://addr:port/metrics from a daemon thread.

    Returns the WSGI server: `server.server_port` is the port actually bound (pass
    port 0 for a free one); stop it with `server.shutdown(); server.server_close()`.
    Binds loopback by default; pass addr="0.0.0.0" to let another host scrape it.
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


# --------------------------------------------------------------------------- internals

_SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_Merged = dict[str, tuple[str, str, dict[_SampleKey, float]]]


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _check_seconds(seconds: Any) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")


def _prom_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix != ".prom":
        raise ValueError(f"{path}: a textfile-collector file must end in .prom")
    return path


def _snapshot(families: Iterable[Metric]) -> _Merged:
    """family name → (type, help, {(sample name, sorted labels): value}), without the
    `_created` timestamps (meaningless once runs are added together)."""
    out: _Merged = {}
    for family in families:
        if family.name.endswith("_created") and family.type == "gauge":
            continue
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for s in family.samples
            if not s.name.endswith("_created")
        }
        out[family.name] = (family.type, family.documentation, samples)
    return out


def _read_cumulative(path: Path) -> _Merged:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        return _snapshot(text_string_to_metric_families(text))
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.warning("%s is not a Prometheus text file (%s); moved it to %s and started afresh", path, exc, aside)
        os.replace(path, aside)
        return {}


class _StaticCollector(Collector):
    def __init__(self, merged: _Merged) -> None:
        self._merged = merged

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, (mtype, doc, samples) in self._merged.items():
            metric = Metric(name, doc, mtype)
            for (sample_name, labels), value in samples.items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


def _exclusive_lock(lock_path: Path) -> contextlib.AbstractContextManager[None]:
    return file_lock(lock_path)
