"""The resources one run shares, built in one place and closed in one place.

`open_resources()` is an async context manager. It builds, in this order: the run
folder's exporter, the API endpoint (starting the embedded local model when no
API is configured), the metrics, the chat client, the call store, the call
gateway (budget, adaptive limiter, rate limiter, retries) and the article writer;
and, in the background while the first calls run, the quality gate (starting
LanguageTool when grammar checks are on; its imports, the originality index of
earlier runs) and its warm-up (the local classifier, LanguageTool's rules): the
first check awaits it (`RunResources.quality_gate()`). Leaving the context,
normally or because building one of them failed, waits for that background work
and closes whatever was started, last first. Nothing here decides what a run does with them; that
is `copydesk.article_pipeline` (an article's steps), `copydesk.runner` (the run's lifecycle) and
`copydesk.orchestration` (their order).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from copydesk.allowance import SERVER_NEEDED, Allowance, AllowanceStore, ReservationJournal, SharedBudget
from copydesk.allowance_admin import recorded_allowance, spec_origin
from copydesk.batch import BatchGateway
from copydesk.budget import TokenBudget
from copydesk.callplan import CallPlan
from copydesk.calls import CallGateway, RetryPolicy
from copydesk.client import ApiEndpoint, ChatClient
from copydesk.errors import CopydeskError, InputError, ServiceError
from copydesk.export import RunExporter
from copydesk.limiter import AdaptiveLimiter, RateLimiter
from copydesk.metrics import CUMULATIVE_TEXTFILE, RunMetrics
from copydesk.preflight import check_moderation, choose_mode
from copydesk.pricing import Price
from copydesk.prompts import PromptLibrary
from copydesk.qc.gate import QualityGate
from copydesk.qc.grammar import GrammarChecker
from copydesk.qc.moderation import choose_moderator
from copydesk.rundir import RESERVATIONS_NAME
from copydesk.services.languagetool import languagetool_url
from copydesk.services.llama import local_model_endpoint
from copydesk.settings import Settings
from copydesk.spec import PipelineSpec
from copydesk.store import CallStore
from copydesk.writer import ArticleWriter

log = logging.getLogger("copydesk.resources")

#: One thread for a run's start-up work (building the gate, warming its models; `copydesk run`
#: imports Prefect on it too): one after the other, not side by side. Each of them is Python
#: holding the GIL; run in parallel they kept the event loop from its calls while the first
#: calls ramped up (bench/README.md, issue 14).
_STARTUP = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="copydesk-startup")


def startup_executor() -> concurrent.futures.Executor:
    """The start-up thread (see `_STARTUP`)."""
    return _STARTUP

T = TypeVar("T")

#: Calls in flight at most against the embedded llama.cpp server (it queues the rest).
LOCAL_MODEL_CONCURRENCY = 2


@dataclass
class RunResources:
    """What a run's steps use; valid inside `open_resources()` only."""

    exporter: RunExporter
    endpoint: ApiEndpoint
    #: The embedded model's name when no API is configured (every stage then uses it).
    local_model: str | None
    #: Calls in flight at most (the embedded model lowers the requested figure).
    concurrency: int
    metrics: RunMetrics
    gateway: CallGateway
    writer: ArticleWriter
    #: The quality gate being built in the background (see `quality_gate()`).
    gate_build: asyncio.Task[QualityGate]
    #: The shared allowance (budget.shared) this run also spends from, if any.
    shared: SharedBudget | None = None
    #: How the calls go: "realtime", or "batch" through the Batch API (copydesk.batch).
    mode: str = "realtime"
    #: What the preflight changed (copydesk.preflight): auto's realtime, moderation's policy.
    notes: list[str] = field(default_factory=list)

    async def quality_gate(self) -> QualityGate:
        """The quality gate, once built; raises what building it raised."""
        return await asyncio.shield(self.gate_build)


@asynccontextmanager
async def open_resources(
    *,
    spec: PipelineSpec,
    settings: Settings,
    prompts: PromptLibrary,
    overrides: dict[str, Any],
    run_id: str,
    run_dir: Path,
    budget: TokenBudget,
    concurrency: int,
    prices: dict[str, Price],
    transport: httpx.AsyncBaseTransport | None = None,
    allowance_store: AllowanceStore | None = None,
    mode: str = "realtime",
) -> AsyncIterator[RunResources]:
    """Build the run's resources (see the module docstring); close them on the way out."""
    allowance = None
    if spec.budget.shared is not None:  # before anything starts
        if allowance_store is None:
            raise InputError(f"budget.shared ({spec.budget.shared.name}): {SERVER_NEEDED}")
        # the operator's record; a spec that disagrees with it, or names none, exits 2 here
        allowance = await recorded_allowance(spec.budget.shared, allowance_store, origin=spec_origin(spec))
    async with AsyncExitStack() as stack:
        run_dir.mkdir(parents=True, exist_ok=True)
        exporter = RunExporter(run_dir, run_id=run_id, language=spec.language, pipeline=spec.name,
                               extras=tuple(spec.stages.extras), export=spec.export)
        endpoint, local_model = await _endpoint(settings, stack)
        if local_model and concurrency > LOCAL_MODEL_CONCURRENCY:
            # llama.cpp's server answers one request at a time; a deep queue only turns
            # waiting into timeouts.
            log.info("the embedded model serves one call at a time: concurrency %d -> %d",
                     concurrency, LOCAL_MODEL_CONCURRENCY)
            concurrency = LOCAL_MODEL_CONCURRENCY
        calls = CallPlan.of(spec, local_model)  # every stage's model, as the writer sends it
        metrics = _metrics(spec.name, calls, prices, budget)
        shared = await _shared_budget(allowance, allowance_store, metrics, budget, run_dir, stack)
        accumulate_metrics(metrics, run_dir)  # every series exists at 0 in the cumulative file before it moves
        client = ChatClient(
            endpoint,
            timeout=settings.request_timeout,
            connect_timeout=settings.connect_timeout,
            max_connections=max(concurrency, 1),
            transport=transport,
            max_answer_bytes=settings.max_answer_bytes,
        )
        stack.push_async_callback(client.aclose)
        # the preflight, before any paid call: the moderation endpoint, then the Batch API
        moderator, moderation_note = await check_moderation(_moderator(spec, settings), spec.qc.moderation)
        asked = mode
        mode, mode_note = await choose_mode(mode, client, endpoint, local_model=local_model,
                                            model=calls.stages["title"].batch_model)
        notes = exporter.notes  # one list: the site export adds what did not reach the site during the run
        notes[:0] = [note for note in (mode_note, moderation_note) if note]
        metrics.batch = mode == "batch"
        store = CallStore(run_dir / CallStore.FILENAME)
        stack.callback(store.close)
        batch = {"run_id": run_id, "poll_seconds": settings.batch_poll_seconds, "auto": asked == "auto",
                 "batch_models": calls.batch_models()} if mode == "batch" else {}
        gateway = (BatchGateway if batch else CallGateway)(
            client,
            budget,
            AdaptiveLimiter(concurrency),
            rate_limiter=RateLimiter(spec.rate_limits.rpm, spec.rate_limits.tpm),
            store=store,
            retry=RetryPolicy(max_attempts=settings.max_attempts, initial=settings.backoff_initial,
                              max_delay=settings.backoff_max),
            fallback_model=spec.fallback_model,
            metrics=metrics,
            shared=shared,
            **batch,
        )
        if isinstance(gateway, BatchGateway):
            stack.push_async_callback(gateway.aclose)  # before the client closes: cancels a batch in flight
        writer = ArticleWriter(spec, prompts, gateway, overrides, model_override=local_model, plan=calls)
        gate_stack = AsyncExitStack()
        gate_build = asyncio.create_task(_build_gate(spec, settings, moderator, gate_stack, run_dir))
        stack.push_async_callback(_close_gate, gate_build, gate_stack)
        yield RunResources(exporter, endpoint, local_model, concurrency, metrics, gateway, writer, gate_build,
                           shared, mode, notes)


def _metrics(pipeline: str, calls: CallPlan, prices: dict[str, Price], budget: TokenBudget) -> RunMetrics:
    """The run's metrics, a series for every stage's model (as the CallPlan sends it) and the budget's."""
    metrics = RunMetrics(pipeline, prices=prices, extra_stages=[s.stage for s in calls.extras])
    for stage in calls.stages.values():
        metrics.prepare(stage.stage, stage.model)
    metrics.set_budget(budget.limit, budget.remaining)
    return metrics


async def _shared_budget(allowance: Allowance | None, store: AllowanceStore | None, metrics: RunMetrics,
                         budget: TokenBudget, run_dir: Path, stack: AsyncExitStack) -> SharedBudget | None:
    """The run's view of its shared allowance (the period's counters made on the server if this is
    the period's first run), with the run folder's reservation journal: first, what a killed run
    on this folder left open is settled."""
    if allowance is None:
        return None
    assert store is not None  # checked when the resources open
    journal = ReservationJournal(run_dir / RESERVATIONS_NAME)
    stack.callback(journal.close)
    shared = SharedBudget(allowance, store, journal=journal)
    stack.push_async_callback(shared.settle_open)  # calls cancelled mid-flight count in full
    await shared.recover()  # before this run reserves anything; the run lock is held
    counters = await shared.refresh()
    metrics.set_shared_budget(shared.name, counters.limit, counters.used)
    if shared.closed and shared.refused_reason:  # spent before this run started: it makes no call
        budget.close(shared.refused_reason)
    return shared


def accumulate_metrics(metrics: RunMetrics, run_dir: Path) -> None:
    """Fold a run's metrics into the cumulative file next to the run folders (what a
    textfile collector or `copydesk serve`'s /metrics reads). Never fails the run."""
    path = run_dir.parent / CUMULATIVE_TEXTFILE
    try:
        metrics.accumulate_textfile(path)
    except (OSError, ValueError) as exc:
        log.warning("could not update %s: %s", path, exc)


async def _endpoint(settings: Settings, stack: AsyncExitStack) -> tuple[ApiEndpoint, str | None]:
    if settings.api_configured:
        return ApiEndpoint(settings.base_url, settings.openai_api_key), None
    url = await stack.enter_async_context(_as_async(local_model_endpoint(settings)))
    log.info("no OPENAI_API_KEY or OPENAI_BASE_URL set: using the embedded local model at %s", url)
    return ApiEndpoint(url, None), settings.llama_model_alias


def _moderator(spec: PipelineSpec, settings: Settings) -> Any:
    if not spec.qc.moderation.enabled:
        return None
    return choose_moderator(
        spec.qc.moderation,
        api_key=settings.openai_api_key,
        base_url=settings.base_url if settings.openai_api_key else None,
    )


async def _build_gate(
    spec: PipelineSpec, settings: Settings, moderator: Any, stack: AsyncExitStack, run_dir: Path
) -> QualityGate:
    """The quality gate, built while the first calls run: LanguageTool (found, or started on
    first use), its client, and the gate's own index (imports, earlier runs' published
    articles) off the event loop; then the warm-up threads (see `_warm`), awaited on close."""
    qc = spec.qc
    grammar: Any = None
    if qc.grammar.enabled:
        try:
            url = await stack.enter_async_context(_as_async(languagetool_url(settings)))
            grammar = await _on_startup_thread(functools.partial(
                GrammarChecker, url, spec.language, ignore_rules=qc.grammar.ignore_rules, autocorrect=qc.grammar.autocorrect))
            stack.callback(grammar.close)
        except CopydeskError as exc:
            log.warning("the grammar check cannot run: %s; articles will need review", exc)
            grammar = _Unavailable(str(exc))
    gate = await _on_startup_thread(functools.partial(
        QualityGate, qc, spec.language, grammar_checker=grammar, moderator=moderator,
        published_root=run_dir.parent, run_dir=run_dir))
    # Heavy, CPU-bound loading (the local classifier, pandas, LanguageTool's rules) runs while the first
    # calls wait on the API, instead of in the first article's checks.
    stack.push_async_callback(_await, asyncio.get_running_loop().run_in_executor(None, _warm_grammar, gate))  # I/O
    stack.push_async_callback(_await, asyncio.get_running_loop().run_in_executor(_STARTUP, _warm, gate))
    return gate


async def _on_startup_thread(call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_STARTUP, call)


async def _close_gate(build: asyncio.Task[QualityGate], stack: AsyncExitStack) -> None:
    """Leaving the run: stop a build still under way, then close what it started (warm-ups first)."""
    if not build.done():
        build.cancel()
    await asyncio.gather(build, return_exceptions=True)
    await stack.aclose()


def _warm(gate: QualityGate) -> None:
    import pandas  # noqa: F401, PLC0415 - the CSV export's; ~0.5 s, loaded off the event loop

    if gate.policy.language.enabled:
        try:
            gate.detector.load()
        except Exception:  # the language check reports it when it runs
            log.debug("warm-up of the language detector failed", exc_info=True)
    load = getattr(gate.moderator, "load", None)
    if load is not None:
        try:
            load()
        except Exception:  # the QC step reports it properly when it runs
            log.debug("warm-up of the moderator failed", exc_info=True)


def _warm_grammar(gate: QualityGate) -> None:
    """LanguageTool loads a language's rules on its first check (en-US 2.5-5 s, 10-30 s on a
    busy machine): that happens here, while the first articles' calls run, instead of in the
    first article's check. A server kept from an earlier run answers at once."""
    if isinstance(gate.grammar_checker, GrammarChecker):
        try:
            gate.grammar_checker.check("A short sentence to load the rules.")
        except Exception:  # the grammar check reports it when it runs
            log.debug("warm-up of the grammar checker failed", exc_info=True)


async def _await(future: asyncio.Future[None]) -> None:
    await future


class _Unavailable:
    """Stands in for a grammar checker whose server could not be reached: every check 'could not run'."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, text: str) -> Any:
        raise ServiceError(self.reason)

    def close(self) -> None:
        pass


class _as_async(AbstractAsyncContextManager[Any]):
    """Use a synchronous context manager from an AsyncExitStack, off the event loop."""

    def __init__(self, cm: AbstractContextManager[Any] | AbstractAsyncContextManager[Any]) -> None:
        self._cm = cm

    async def __aenter__(self) -> Any:
        if isinstance(self._cm, AbstractAsyncContextManager):
            return await self._cm.__aenter__()
        return await asyncio.to_thread(self._cm.__enter__)

    async def __aexit__(self, *exc: Any) -> Any:
        if isinstance(self._cm, AbstractAsyncContextManager):
            return await self._cm.__aexit__(*exc)
        return await asyncio.to_thread(self._cm.__exit__, *exc)
