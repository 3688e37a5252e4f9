"""Batch mode: the run's calls through the OpenAI Batch API, stage by stage, at batch prices.

    (the mode)    `mode: realtime | batch | auto` is chosen by the run's preflight
                  (copydesk.preflight: a one-line upload, then deleted)
    BatchApi      the requests of the Batch API (copydesk.batchapi: ids checked before they go
                  into a URL, downloads read line by line within the size and depth caps)
    BatchGateway  a `CallGateway` whose `complete()` queues the request instead of calling
                  chat/completions; the queue is submitted as one batch once every article
                  in progress waits on it

Why the writer does not change: every article runs its steps as in realtime (title,
outline, sections, the gate's re-asks) and waits on `complete()`. With every article
in progress at once (copydesk.orchestration), the articles reach the same step
together, so the queue holds all titles, then all outlines, then all sections, then
the re-asks: one batch per stage. Each line is `request.payload()` (the stage's exact
sampling values) and its `custom_id` names the article, the stage and the part:
`a<article>-<stage>-<part>-<key prefix>`.

One round, with nothing else in flight:

1. lines of a batch recorded in the call store and not done are re-attached (a
   killed or retried run never submits them again); the rest are new;
2. the budget reserves each new line's upper bound (`call_token_bound`, as in
   realtime); lines that do not fit wait for the next round (a split); when not even
   the first fits, the budget closes and they fail (nothing was sent);
3. upload (`POST /files`, purpose batch) -> record the file id and the lines' keys ->
   `POST /batches` -> record the batch id -> poll `GET /batches/{id}`
   (`COPYDESK_BATCH_POLL_SECONDS`, or 5 s doubling to 60 s) -> download the output and
   error files;
4. every answered line settles its reservation to its `usage`, is stored like any
   finished call and answers its caller; failed lines (error file, non-200, missing)
   release theirs and are retried in the next round, up to the run's attempt limit
   (`COPYDESK_MAX_ATTEMPTS`), then their caller gets the error (the article ends
   `incomplete` with it); the batch is recorded done.

A failed upload or batch creation (after the API layer's own retries: one layer, not two)
ends batch mode. `mode: auto` then makes the rest of the run's calls in realtime, said
once (`realtime`); `mode: batch` stops the run with the server's message (`fatal`).
Each line's body carries the stage's batch model (`batch.model`, a stage's `batch_model`:
behind a gateway that passes batch files through unchanged, the upstream's name).

Closing the gateway (the run ends, Ctrl-C, a cancelled flow run) while a batch is in
flight cancels it (`POST /batches/{id}/cancel`) and says so; its record stays open, so a
re-run collects what the batch finished before the cancel and submits only the rest. A
round that fails after its batch was created (an unusable answer while polling, a lost
server) cancels that batch too, best effort and logged; a batch created under an id that is
not an id is looked up by its file and cancelled when the listing gives a usable id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from copydesk import events
from copydesk.batchapi import ENDPOINT, LIMIT_KEY, BatchApi
from copydesk.budget import Reservation, call_token_bound
from copydesk.calls import CallGateway, CallResult, CallSite
from copydesk.client import ChatClient, ChatRequest, Completion, RetryPolicy, parse_completion
from copydesk.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BudgetExhausted,
    MalformedResponseError,
    ServerError,
    UnusableResponseError,
)
from copydesk.redact import redact

log = logging.getLogger("copydesk.batch")

MODES = ("realtime", "batch", "auto")
#: The Batch API's own limit of requests per file.
MAX_LINES = 50_000
#: The default poll interval: from FIRST_POLL seconds, doubling, to at most MAX_POLL.
FIRST_POLL = 5.0
MAX_POLL = 60.0
#: How long the queue must stay unchanged, every article in progress waiting, before it is submitted.
SETTLE_SECONDS = 0.05
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})




def poll_delays(fixed: float | None) -> Iterator[float]:
    """`fixed` seconds every time, or FIRST_POLL doubling to MAX_POLL."""
    delay = FIRST_POLL
    while True:
        yield fixed if fixed is not None else delay
        delay = min(delay * 2, MAX_POLL)


# ------------------------------------------------------------------------------ the gateway


@dataclass
class _Line:
    key: str
    site: CallSite
    request: ChatRequest
    bound: int
    waiters: list[asyncio.Future[Completion]] = field(default_factory=list)
    custom_id: str = ""
    reservation: Reservation | None = None


class BatchGateway(CallGateway):
    """A `CallGateway` for batch mode (see the module docstring). asyncio only: every article
    of the run runs on the loop that runs the gateway."""

    def __init__(self, *args: Any, run_id: str, poll_seconds: float | None = None, auto: bool = False,
                 batch_models: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_id = run_id
        self.poll_seconds = poll_seconds
        #: mode: auto: a failed upload or creation sends the rest of the run to realtime calls.
        self.auto = auto
        #: stage -> the model name its batch lines carry, where it differs from the request's.
        self.batch_models = dict(batch_models or {})
        #: Why the run went on in realtime (mode: auto after a failed upload or creation), or None.
        self.realtime: str | None = None
        self._realtime: CallGateway | None = None
        self._realtime_calls: set[asyncio.Task[None]] = set()
        self.api = BatchApi(self.client, self.retry)
        self._lines: dict[str, _Line] = {}  # every unanswered request by call key
        self._pending: dict[str, _Line] = {}  # those waiting for the next round
        self._active: set[int] = set()
        self._version = 0
        self._attempts: Counter[str] = Counter()
        self._driver: asyncio.Task[None] | None = None
        self._in_flight: str | None = None
        #: Every batch this run created or re-attached to: id -> its last state (for the summary).
        self.batches: dict[str, dict[str, Any]] = {}

    # -- the writer's side ----------------------------------------------------------------

    @contextlib.contextmanager
    def article_scope(self, index: int) -> Iterator[None]:
        self._active.add(index)
        self._version += 1
        try:
            yield
        finally:
            self._active.discard(index)
            self._version += 1

    async def complete(self, stage: str, request: ChatRequest, key: str, site: CallSite | None = None) -> CallResult:
        if self.realtime is not None:
            return await self._realtime_call(stage, request, key, site)
        if cached := self.store.get(key):
            self.stats.cached += 1
            events.emit(events.CallFinished(stage, cached.usage.total_tokens if cached.usage else 0, True,
                                            self.budget.spent, self.budget.limit))
            return CallResult(cached, cached=True)
        if self.fatal is not None:
            raise self.fatal
        if self.budget.closed:
            raise BudgetExhausted(self.budget.refused_reason or "the token budget is exhausted")
        line = self._lines.get(key)
        if line is None:
            site = site or CallSite(-1, stage, 0)
            line = _Line(key, site, request, call_token_bound(request.messages, request.max_tokens))
            line.custom_id = f"a{site.article + 1}-{stage}-{site.part}-{key[:12]}"
            self._lines[key] = line
            self._pending[key] = line
            self._version += 1
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        line.waiters.append(waiter)
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive(), name="copydesk-batch")
        completion = await waiter
        return CallResult(completion, cached=False)

    async def aclose(self) -> None:
        """Stop the driver; a batch in flight is cancelled (and the cancel said)."""
        driver, self._driver = self._driver, None
        if driver is not None and not driver.done():
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        for call in list(self._realtime_calls):
            call.cancel()
        await asyncio.gather(*self._realtime_calls, return_exceptions=True)
        for line in list(self._lines.values()):
            self._fail(line, BudgetExhausted("the run stopped before its batch finished")
                       if self.budget.closed else ApiError("the run stopped before its batch finished"))

    # -- the driver -----------------------------------------------------------------------

    async def _drive(self) -> None:
        """Submit the queue whenever it has settled: unchanged for SETTLE_SECONDS, and every
        article in progress waiting on it."""
        seen = -1
        try:
            while self._pending:
                await asyncio.sleep(SETTLE_SECONDS)
                waiting = {line.site.article for line in self._pending.values()}
                if self._version != seen or not self._active <= waiting:
                    seen = self._version
                    continue
                await self._round()
                seen = -1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a caller waiting forever
            if isinstance(exc, ApiError):  # said in full by its message
                log.warning("batch mode failed: %s", exc)
            else:
                log.exception("batch mode failed")
            for line in list(self._lines.values()):
                self._fail(line, exc if isinstance(exc, ApiError) else ApiError(f"batch mode failed: {exc}"))

    async def _round(self) -> None:
        lines = list(self._pending.values())
        self._pending.clear()
        if self.fatal is not None or self.budget.closed:
            error = self.fatal or BudgetExhausted(self.budget.refused_reason or "the token budget is exhausted")
            for line in lines:
                self._fail(line, error)
            return
        try:
            lines = await self._reattach(lines)
            if lines:
                await self._submit(lines)
        except AuthenticationError as exc:
            self.fatal = exc
            for line in list(self._lines.values()):
                self._fail(line, exc)

    async def _reattach(self, lines: list[_Line]) -> list[_Line]:
        """Follow every recorded batch that is not done and carries some of `lines`; the rest are new."""
        by_key = {line.key: line for line in lines}
        for ref, record in list(self.store.batches.items()):
            if record.get("done") or not record.get("file_id"):
                continue
            carried = {cid: by_key[key] for cid, key in record.get("lines", {}).items() if key in by_key}
            if not carried:
                continue
            batch_id = record.get("batch_id")
            if not batch_id:
                found = await self.api.find(record["file_id"])
                if found is None:  # killed before the batch was created: submit the lines again
                    self.store.put_batch({"ref": ref, "done": True, "abandoned": True})
                    continue
                batch_id = found["id"]
                self.store.put_batch({"ref": ref, "batch_id": batch_id})
            log.warning("re-attaching to batch %s (%d request(s) recorded by an earlier attempt of this run)",
                        batch_id, len(carried))
            for cid, line in carried.items():
                line.custom_id = cid
                by_key.pop(line.key, None)
                try:
                    line.reservation = self.budget.reserve(line.bound, what="a request of a re-attached batch")
                except BudgetExhausted:
                    line.reservation = None  # already paid for: its usage is still recorded
            others = {cid: key for cid, key in record.get("lines", {}).items() if cid not in carried}
            await self._follow(ref, batch_id, carried, others)
        return list(by_key.values())

    async def _submit(self, lines: list[_Line]) -> None:
        fitting, room = [], self.budget.available
        if self.shared is not None and not self.shared.closed:  # what the shared allowance has left, too
            counters = await self.shared.refresh()
            room = min(room, max(counters.limit - counters.used, 0))
        for line in lines[:MAX_LINES]:
            if line.bound > room:
                break
            fitting.append(line)
            room -= line.bound
        if not fitting:  # not even one line fits: the budget (or the shared allowance) says why and closes
            try:
                probe = self.budget.reserve(lines[0].bound, what=f"a batch of {len(lines)} request(s)")
                self.budget.release(probe)
                if self.shared is not None:
                    shared_probe = await self.shared.acquire(lines[0].bound, what=f"a batch of {len(lines)} request(s)")
                    await self.shared.release(shared_probe)
                fitting = lines[:1]  # room was made meanwhile: one line alone
            except BudgetExhausted as exc:
                self.budget.close(str(exc))
                for line in lines:
                    self._fail(line, BudgetExhausted(str(exc)))
                return
        rest = lines[len(fitting):]
        if rest:
            log.warning("the budget has room for %d of %d request(s) now: the batch is split, the rest wait",
                        len(fitting), len(lines))
            for line in rest:
                self._pending[line.key] = line
        for line in fitting:
            line.reservation = self.budget.reserve(line.bound, what=f"a {line.site.stage} request")
        shared = None
        if self.shared is not None:  # one reservation for the whole batch, settled to its usage
            try:
                shared = await self.shared.acquire(sum(line.bound for line in fitting),
                                                   what=f"a batch of {len(fitting)} request(s)")
            except BaseException as exc:
                for line in fitting:
                    self._release(line)
                if isinstance(exc, BudgetExhausted):
                    self.budget.close(str(exc))
                    for line in lines:
                        self._fail(line, BudgetExhausted(str(exc)))
                    return
                raise
        by_cid = {line.custom_id: line for line in fitting}
        data = "".join(
            json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": self._body(line)},
                       ensure_ascii=False) + "\n"
            for cid, line in by_cid.items()
        ).encode("utf-8")
        ref = f"{self.run_id}:{secrets.token_hex(4)}"
        stages = ",".join(sorted({line.site.stage for line in fitting}))
        try:
            file_id = await self.api.upload(data)
            self.store.put_batch({"ref": ref, "file_id": file_id, "stages": stages,
                                  "lines": {cid: line.key for cid, line in by_cid.items()}})
            batch = await self._create(file_id, {"copydesk_run": self.run_id[:500], "copydesk_ref": ref})
        except ApiError as exc:
            if shared is not None:
                await self.shared.release(shared)  # type: ignore[union-attr]
            for line in fitting:
                self._release(line)
            if isinstance(exc, AuthenticationError):
                raise
            self._batch_refused(exc, fitting)
            return
        self.store.put_batch({"ref": ref, "batch_id": batch["id"]})
        log.info("batch %s submitted: %d request(s) (%s)", batch["id"], len(fitting), stages)
        charged = await self._follow(ref, batch["id"], by_cid)
        if shared is not None:
            await self.shared.settle(shared, charged)  # type: ignore[union-attr]

    async def _create(self, file_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Create the batch; when its id is unusable, cancel it by its file (best effort)."""
        try:
            return await self.api.create(file_id, metadata)
        except UnusableResponseError as exc:
            try:
                found = await self.api.find(file_id)
            except ApiError:
                found = None
            if found is not None:
                await self._cancel(found["id"], f"batch mode failed ({exc})")
            else:
                log.warning("%s; the batch made from file %s may be running: cancel it yourself", exc, file_id)
            raise

    async def _follow(self, ref: str, batch_id: str, by_cid: dict[str, _Line],
                      others: dict[str, str] | None = None) -> int:
        """Poll the batch to its end, then answer, settle and store its lines; returns the tokens
        charged. `others` (custom_id -> call key): lines of a re-attached batch that nobody asks
        for now; their answers are stored for later."""
        self._in_flight = batch_id
        delays = poll_delays(self.poll_seconds)
        last: tuple[Any, ...] = ()
        cancelled = False
        try:
            while True:
                batch = await self.api.get(batch_id)
                self._show(batch, last, by_cid)
                last = (batch.get("status"), json.dumps(batch.get("request_counts"), sort_keys=True))
                if batch["status"] in TERMINAL:
                    break
                if self.budget.closed and not cancelled:  # e.g. the shared allowance ran out
                    cancelled = True
                    await self._cancel(batch_id, f"stopped by the budget ({self.budget.refused_reason})")
                    self._in_flight = batch_id
                await asyncio.sleep(next(delays))
        except asyncio.CancelledError:
            await self._cancel(batch_id, "the run was stopped")
            raise
        except Exception as exc:  # what this run created does not run on without it
            await self._cancel(batch_id, f"batch mode failed ({exc})")
            raise
        except BaseException:
            self._in_flight = None
            raise
        self._in_flight = None
        rows = []
        for name in ("output_file_id", "error_file_id"):
            if batch.get(name):
                rows += await self.api.content(batch[name])
        answered: set[str] = set()
        charged = 0
        for row in rows:
            cid = str(row.get("custom_id"))
            line = by_cid.get(cid)
            if line is None and others and cid in others:
                self._keep(others[cid], row)
                continue
            if line is None or line.custom_id in answered:
                continue
            answered.add(line.custom_id)
            charged += self._answer(line, row)
        for cid, line in by_cid.items():
            if cid not in answered:
                self._release(line)
                self._failed_attempt(line, ServerError(
                    f"batch {batch_id} ended {batch['status']} without an answer for {cid}", status_code=None))
        self.store.put_batch({"ref": ref, "done": True, "status": batch["status"]})
        return charged

    def _show(self, batch: dict[str, Any], last: tuple[Any, ...], by_cid: dict[str, _Line]) -> None:
        counts = batch.get("request_counts") or {}
        state = (batch.get("status"), json.dumps(counts, sort_keys=True))
        self.batches[batch["id"]] = {"status": batch.get("status"), "request_counts": counts}
        if state == last:
            return
        stages = ",".join(sorted({line.site.stage for line in by_cid.values()}))
        log.info("batch %s (%s): %s, %s of %s done, %s failed", batch["id"], stages, batch.get("status"),
                 counts.get("completed", 0), counts.get("total", len(by_cid)), counts.get("failed", 0))
        events.emit(events.BatchUpdate(batch["id"], stages, str(batch.get("status")),
                                       int(counts.get("total") or len(by_cid)), int(counts.get("completed") or 0),
                                       int(counts.get("failed") or 0)))

    async def _cancel(self, batch_id: str, why: str) -> None:
        self._in_flight = None
        try:
            await asyncio.wait_for(self.api.cancel(batch_id, retry=False), 15)
        except (ApiError, asyncio.TimeoutError, OSError) as exc:
            log.warning("%s: could not cancel batch %s (%s); cancel it yourself", why, batch_id, exc)
            return
        log.warning("%s: batch %s cancelled; re-run with the same --run-id to collect what it finished",
                    why, batch_id)
        events.emit(events.BatchUpdate(batch_id, "", "cancelling", 0, 0, 0))

    def _body(self, line: _Line) -> dict[str, Any]:
        """The line's request body, with the stage's batch model when it has one."""
        body = line.request.payload()
        if model := self.batch_models.get(line.site.stage):
            body["model"] = model
        return body

    def _batch_refused(self, error: ApiError, lines: list[_Line]) -> None:
        """An upload or creation failed after the API layer's retries: auto goes on in realtime
        (these lines and every later call); batch stops the run with the server's message."""
        if not self.auto:
            self.fatal = error
            log.error("batch mode stops: %s", error)
            for line in list(self._lines.values()):
                self._fail(line, error)
            return
        self.realtime = str(error)
        self._realtime = CallGateway(  # the same budget, limiter, store and counts: realtime from here on
            self.client, self.budget, self.limiter, rate_limiter=self.rate_limiter, store=self.store,
            retry=self.retry, fallback_model=self.fallback_model, metrics=self.metrics, shared=self.shared)
        self._realtime.stats = self.stats
        log.warning("mode: auto: the Batch API failed (%s); the rest of the run uses realtime calls", error)
        for line in [*lines, *self._pending.values()]:
            self._pending.pop(line.key, None)
            call = asyncio.get_running_loop().create_task(self._call_now(line))
            self._realtime_calls.add(call)
            call.add_done_callback(self._realtime_calls.discard)

    async def _call_now(self, line: _Line) -> None:
        """One queued line as a realtime call (after the switch to realtime); answers its callers."""
        try:
            result = await self._realtime_call(line.site.stage, line.request, line.key, line.site)
        except asyncio.CancelledError:
            self._fail(line, ApiError("the run stopped before this call finished"))
            raise
        except Exception as exc:  # noqa: BLE001 - the caller gets it, as from any call
            self._fail(line, exc)
            return
        self._resolve(line, result.completion)

    async def _realtime_call(self, stage: str, request: ChatRequest, key: str, site: CallSite | None) -> CallResult:
        assert self._realtime is not None
        try:
            return await self._realtime.complete(stage, request, key, site)
        finally:
            self.fatal = self.fatal or self._realtime.fatal  # a refused key stops the run, as in realtime

    # -- one line -------------------------------------------------------------------------

    def _keep(self, key: str, row: dict[str, Any]) -> None:
        """Store the answer of a line nobody waits for (it was paid for by an earlier attempt)."""
        response = row.get("response") if isinstance(row.get("response"), dict) else None
        if response is None or response.get("status_code") != 200 or row.get("error") or self.store.get(key):
            return
        try:
            completion = parse_completion(httpx.Response(200, json=response.get("body")), "",
                                          redact=self.client.endpoint.redact)
        except MalformedResponseError:
            return
        self.store.put(key, completion)

    def _answer(self, line: _Line, row: dict[str, Any]) -> int:
        """Answer, settle and store one line of an output or error file; the tokens charged."""
        response = row.get("response") if isinstance(row.get("response"), dict) else None
        status = response.get("status_code") if response else None
        if response is None or status != 200 or row.get("error"):
            self._release(line)
            self._failed_attempt(line, _line_error(line.custom_id, status, row, response))
            return 0
        try:
            completion = parse_completion(httpx.Response(200, json=response.get("body")), line.request.model,
                                          redact=self.client.endpoint.redact)
        except MalformedResponseError as exc:
            spent = self._settle(line, None)
            self._failed_attempt(line, exc)
            return spent
        spent = self._settle(line, completion.usage.total_tokens if completion.usage else None)
        if completion.usage is None:
            self.stats.missing_usage += 1
            log.warning("batch line %s has no usable usage; counting its upper bound (%d tokens)",
                        line.custom_id, line.bound)
        self.store.put(line.key, completion)
        self.stats.calls += 1
        self.stats.attempts += 1
        stage, model = line.site.stage, line.request.model
        self._record(stage, model, "ok", 0.0)
        if self.metrics is not None and completion.usage is not None:
            usage = completion.usage
            self.metrics.record_usage(stage, model, usage.prompt_tokens, usage.completion_tokens,
                                      usage.cached_prompt_tokens)
        if self.metrics is not None:
            self.metrics.set_budget(self.budget.limit, self.budget.remaining)
        events.emit(events.CallFinished(stage, spent, False, self.budget.spent, self.budget.limit))
        self._resolve(line, completion)
        return spent

    def _settle(self, line: _Line, actual: int | None) -> int:
        if line.reservation is None:
            return actual or 0
        return self.budget.settle(line.reservation, actual)

    def _release(self, line: _Line) -> None:
        if line.reservation is not None:
            self.budget.release(line.reservation)

    def _failed_attempt(self, line: _Line, error: ApiError) -> None:
        """Retry in the next round while attempts are left and the error is worth it; else fail."""
        self._attempts[line.key] += 1
        self.stats.attempts += 1
        self._record(line.site.stage, line.request.model, "retried" if error.retryable else "failed", 0.0)
        if error.retryable and self._attempts[line.key] < self.retry.max_attempts and not isinstance(
                error, AuthenticationError):
            self.stats.retries += 1
            line.reservation = None
            self._pending[line.key] = line
            self._version += 1
            return
        self.stats.failed += 1
        log.warning("batch line %s failed after %d attempt(s): %s", line.custom_id, self._attempts[line.key], error)
        self._fail(line, error)

    def _resolve(self, line: _Line, completion: Completion) -> None:
        for waiter in self._forget(line):
            waiter.set_result(completion)

    def _fail(self, line: _Line, error: BaseException) -> None:
        for waiter in self._forget(line):
            waiter.set_exception(error)

    def _forget(self, line: _Line) -> list[asyncio.Future[Completion]]:
        """`line` forgotten (queued and pending); its waiters still waiting."""
        self._lines.pop(line.key, None)
        self._pending.pop(line.key, None)
        return [waiter for waiter in line.waiters if not waiter.done()]


def _line_error(custom_id: str, status: Any, row: dict[str, Any], response: dict[str, Any] | None) -> ApiError:
    """The error of a failed line: retryable unless the API refused the request itself (4xx but 408/409/429)."""
    if row.get(LIMIT_KEY):  # too large or too deep to read (copydesk.batchapi)
        return UnusableResponseError(f"batch line {custom_id} failed: {row[LIMIT_KEY]}", charged=True)
    error = row.get("error") if isinstance(row.get("error"), dict) else None
    body = response.get("body") if response else None
    detail = ""
    if error:
        detail = f"{error.get('code') or ''} {error.get('message') or ''}".strip()
    elif isinstance(body, dict):
        inner = body.get("error", body)
        detail = str(inner.get("message") if isinstance(inner, dict) else inner)
    detail = redact(detail[:4000])[:300]  # redacted before it is cut: no part of a secret survives
    message = f"batch line {custom_id} failed ({'HTTP ' + str(status) if status else 'no response'}: {detail})"
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429):
        if status in (401, 403):
            return AuthenticationError(message, status_code=status)
        return BadRequestError(message, status_code=status)
    return ServerError(message, status_code=status if isinstance(status, int) else None)

