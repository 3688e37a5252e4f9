"""Shared allowances held by the Prefect server: `PrefectAllowanceStore`.

Implements `copydesk.allowance.AllowanceStore` with Prefect's global concurrency
limits (the server's `concurrency_limit_v2` table, SQLite or PostgreSQL). One
allowance period is two limits:

    copydesk-budget:NAME:ZONE:KEY            limit = the allowance; active slots = spent + reserved
    copydesk-budget:NAME:ZONE:KEY:spent      active slots = what settled calls were charged
    copydesk-budget:NAME:ZONE:KEY:closed     exists (inactive) once a call was refused for good

A reservation is `POST /v2/concurrency_limits/increment` of the call's bound on the
first: the server adds the slots in one `UPDATE ... WHERE active_slots + n <= limit`,
so it is atomic across processes and machines and can never pass the limit (a
refusal is HTTP 423). A settlement decrements the unused part, then adds the charge
to `:spent`. Runs close the allowance on `spent`, so it is its own counter, read
before `used`: a reader sees at most what was settled (a counter of what is in
flight, subtracted from `used`, would read high between two requests). The server answers a
vacuous success for a limit that does not exist or is inactive, so the answer is
checked for the limit's name. Errors reaching the server become `ServiceError`.

The operator's record of each allowance (`copydesk budget create/set`: its limit, period
and timezone; copydesk.allowance_admin) is a Prefect Variable, `copydesk-allowance-NAME`,
whose value is the `Allowance` as JSON (the server's `variable` table, SQLite or
PostgreSQL; creating one is atomic: a second `create` of the name gets HTTP 409). Runs
only read it; they create a period's counters with the recorded limit when the period is
first used and never change a limit or a closed mark (`ensure`); `set_limit` is the
operator's.

`refresh_form` writes what is left of the allowances into the editor deployment's
form (its description and the `budget` field's help): `copydesk serve` at start
(`note_on`), and every served run when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    DeploymentUpdate,
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    VariableCreate,
    VariableUpdate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from pydantic import ValidationError

from copydesk.allowance import (
    CLOSED_SUFFIX,
    PREFIX,
    SPENT_SUFFIX,
    Allowance,
    AllowanceStatus,
    Counters,
)
from copydesk.allowance_admin import (
    Created,
    create_allowance,
    current_statuses,
    recorded_allowance,
    require_server,
    set_allowance,
    spec_origin,
)
from copydesk.allowance_admin import reset_allowance as reset_current
from copydesk.errors import ServiceError
from copydesk.form import allowance_note, with_allowance_note
from copydesk.spec import PipelineSpec, SharedBudgetSpec

log = logging.getLogger("copydesk.allowance")

#: The `spent` counter's limit: the largest a Prefect limit (a 32-bit column) holds.
SPENT_LIMIT = 2**31 - 1
#: Allowance requests in flight at once per process.
PARALLEL_REQUESTS = 4
#: Answers that mean "busy, try again" (SQLite locked, a restarting server): retried this often.
BUSY_STATUSES = frozenset({429, 502, 503, 504})
BUSY_ATTEMPTS = 12

#: Decrements report a (meaningless here) occupancy time; the server requires it > 0.
OCCUPANCY = 0.001
#: The Prefect Variable holding the operator's record of allowance NAME is this prefix + NAME.
RECORD_PREFIX = "copydesk-allowance-"


def counters(used: Any, spent: Any | None, closed: bool) -> Counters:
    """`Counters` from the period's two limits (`spent` None before its first settlement)."""
    settled = min(spent.active_slots if spent else 0, used.active_slots)
    return Counters(used.limit, used.active_slots, used.active_slots - settled, closed)


class PrefectAllowanceStore:
    """Allowance counters in the Prefect server that PREFECT_API_URL names."""

    def __init__(self, client: Any | None = None, *, parallel: int = PARALLEL_REQUESTS) -> None:
        self._client = client
        self._owned = False
        # A SQLite-backed server answers 503 when many writers wait on its one lock:
        # a few requests at a time per process, each retried (`_call`).
        self._gate = asyncio.Semaphore(parallel)

    async def __aenter__(self) -> PrefectAllowanceStore:
        if self._client is None:
            self._client = get_client()
            self._owned = True
            await self._client.__aenter__()
        else:
            self._owned = False
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._owned and self._client is not None:
            await self._client.__aexit__(*exc)
            self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("use PrefectAllowanceStore as an async context manager")
        return self._client

    # ------------------------------------------------------------------ the operator's records

    async def read_allowance(self, name: str) -> Allowance | None:
        variable = await self._call(lambda: self.client.read_variable_by_name(RECORD_PREFIX + name))
        return None if variable is None else _record(variable)

    async def allowances(self) -> list[Allowance]:
        found, offset = [], 0
        while True:
            response = await self._call(lambda: self.client.request("POST", "/variables/filter", json={
                "variables": {"name": {"like_": RECORD_PREFIX}}, "limit": 200, "offset": offset}))
            page = response.json()
            found += [_record(item) for item in page if str(item.get("name", "")).startswith(RECORD_PREFIX)]
            if len(page) < 200:
                return found
            offset += len(page)

    async def create_allowance(self, allowance: Allowance) -> bool:
        try:
            await self._call(lambda: self.client.create_variable(VariableCreate(
                name=RECORD_PREFIX + allowance.name, value=allowance.model_dump(mode="json"),
                tags=["copydesk-allowance"])))
        except ObjectAlreadyExists:
            return False
        return True

    async def update_allowance(self, allowance: Allowance) -> bool:
        try:
            await self._call(lambda: self.client.update_variable(VariableUpdate(
                name=RECORD_PREFIX + allowance.name, value=allowance.model_dump(mode="json"))))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return False
            raise ServiceError(f"the Prefect server refused to change the shared allowance "
                               f"{allowance.name}: {exc}") from exc
        return True

    # ------------------------------------------------------------------ the counters

    async def ensure(self, counter: str, limit: int) -> None:
        if await self._read_limit(counter) is not None:
            return  # a run never changes an existing period's limit
        for name, size in ((counter, limit), (counter + SPENT_SUFFIX, SPENT_LIMIT)):
            try:
                await self._call(lambda: self.client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=size)))
            except ObjectAlreadyExists:  # another process made it first
                pass

    async def set_limit(self, counter: str, limit: int) -> None:
        for name, size in ((counter, limit), (counter + SPENT_SUFFIX, SPENT_LIMIT)):
            existing = await self._read_limit(name)
            if existing is None:
                try:
                    await self._call(lambda: self.client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=size)))
                    continue
                except ObjectAlreadyExists:  # a run made it meanwhile: change it
                    existing = await self._read_limit(name)
            changes: dict[str, Any] = {}
            if existing is not None and existing.limit != size:
                log.info("shared allowance %s: limit %d -> %d (the operator's)", name, existing.limit, size)
                changes["limit"] = size
                if size > existing.limit and name == counter:
                    await self._delete(counter + CLOSED_SUFFIX)  # more room: no longer spent
            if existing is not None and not existing.active:
                changes["active"] = True
            if changes:
                await self._call(lambda: self.client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(**changes)))

    async def increment(self, counter: str, tokens: int) -> bool:
        try:
            response = await self._call(lambda: self.client.increment_concurrency_slots([counter], tokens, "concurrency"))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (423, 422):  # would pass the limit / more than the limit
                return False
            raise ServiceError(f"the Prefect server refused a shared-allowance reservation: {exc}") from exc
        # The server's answer lists the limits it counted: none when missing or inactive.
        return any(item.get("name") == counter for item in response.json())

    async def settle(self, counter: str, reserved: int, charged: int) -> None:
        unused = reserved - charged
        if unused > 0:
            await self._call(lambda: self.client.release_concurrency_slots([counter], unused, OCCUPANCY))
        if charged > 0:
            await self._call(lambda: self.client.increment_concurrency_slots([counter + SPENT_SUFFIX], charged, "concurrency"))

    async def read(self, counter: str) -> Counters | None:
        spent = await self._read_limit(counter + SPENT_SUFFIX)  # first: see the module docstring
        used = await self._read_limit(counter)
        if used is None:
            return None
        closed = await self._read_limit(counter + CLOSED_SUFFIX) is not None
        return counters(used, spent, closed)

    async def close(self, counter: str) -> None:
        try:
            await self._call(lambda: self.client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=counter + CLOSED_SUFFIX, limit=1, active=False)))
        except ObjectAlreadyExists:
            pass

    async def _delete(self, name: str) -> None:
        try:
            await self._call(lambda: self.client.delete_global_concurrency_limit_by_name(name))
        except ObjectNotFound:
            pass

    async def list(self) -> dict[str, Counters]:
        limits: dict[str, Any] = {}
        offset = 0
        while True:
            page = await self._call(lambda: self.client.read_global_concurrency_limits(limit=200, offset=offset))
            for item in page:
                if item.name.startswith(PREFIX + ":"):
                    limits[item.name] = item
            if len(page) < 200:
                break
            offset += len(page)
        found = {}
        for name, item in limits.items():
            if name.endswith((SPENT_SUFFIX, CLOSED_SUFFIX)):
                continue
            found[name] = counters(item, limits.get(name + SPENT_SUFFIX), name + CLOSED_SUFFIX in limits)
        return found

    async def reset(self, counter: str) -> Counters | None:
        before = await self.read(counter)
        if before is None:
            return None
        for name in (counter, counter + SPENT_SUFFIX):
            try:
                await self._call(lambda: self.client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(active_slots=0)))
            except ObjectNotFound:
                pass
        await self._delete(counter + CLOSED_SUFFIX)
        return before

    async def _call(self, make: Any) -> Any:
        """One Prefect client call (`make()` builds its coroutine), a few per process at once,
        retried with backoff while the server says it is busy; transport failures become
        `ServiceError`. Safe to retry: a busy answer means the transaction did not commit."""
        delay = 0.1
        async with self._gate:
            for attempt in range(BUSY_ATTEMPTS):
                try:
                    return await make()
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code not in BUSY_STATUSES or attempt == BUSY_ATTEMPTS - 1:
                        raise
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    raise ServiceError(
                        f"cannot reach the Prefect server holding the shared allowances: {exc}") from exc
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 3.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_limit(self, name: str) -> Any | None:
        try:
            return await self._call(lambda: self.client.read_global_concurrency_limit_by_name(name))
        except ObjectNotFound:
            return None




def _record(variable: Any) -> Allowance:
    """The `Allowance` a Prefect Variable holds (a Variable object or its JSON); `ServiceError`
    when it does not hold one (edited by hand?)."""
    name = variable.get("name") if isinstance(variable, dict) else variable.name
    value = variable.get("value") if isinstance(variable, dict) else variable.value
    try:
        return Allowance.model_validate({**value, "name": str(name).removeprefix(RECORD_PREFIX)}
                                        if isinstance(value, dict) else value)
    except ValidationError as exc:
        raise ServiceError(f"the Prefect Variable {str(name)[:100]!r} does not hold a shared allowance "
                           f"({exc.error_count()} problem(s), e.g. {exc.errors()[0]['msg']}); the operator "
                           "records it again with `copydesk budget set`") from exc


def allowance_store_for(shared: SharedBudgetSpec | None) -> AbstractAsyncContextManager[Any]:
    """A store for a run whose spec names `shared` (None when it names none). A temporary
    per-process Prefect server cannot share anything: without PREFECT_API_URL (in the
    environment or the active profile) this raises `InputError` saying how to start one."""
    if shared is None:
        return contextlib.nullcontext(None)
    require_server(shared, {"PREFECT_API_URL": get_current_settings().api.url or ""})
    return PrefectAllowanceStore()


async def check_recorded(spec: PipelineSpec) -> None:
    """`copydesk run`'s early word on the spec's shared allowance (before a flow run or a run
    folder exists): `InputError` when none is recorded or the spec disagrees with the record.
    The run checks it again when it opens (copydesk.resources), as served runs do."""
    if spec.budget.shared is not None:
        async with PrefectAllowanceStore() as store:
            await recorded_allowance(spec.budget.shared, store, origin=spec_origin(spec))


async def allowance_statuses(name: str | None) -> list[AllowanceStatus]:
    """`copydesk budget status [NAME]`: the current period of every (or one) allowance."""
    async with PrefectAllowanceStore() as store:
        return await current_statuses(store, name)


async def record_allowance(allowance: Allowance) -> Created:
    """`copydesk budget create NAME ...`: the operator records a new allowance."""
    async with PrefectAllowanceStore() as store:
        return await create_allowance(store, allowance)


async def change_allowance(name: str, *, max_tokens: int | None, period: str | None, timezone: str | None,
                           who: str) -> tuple[Allowance, Allowance]:
    """`copydesk budget set NAME ...`: the operator changes a recorded allowance; (before, after)."""
    async with PrefectAllowanceStore() as store:
        return await set_allowance(store, name, max_tokens=max_tokens, period=period, timezone=timezone, who=who)


async def reset_allowance(name: str, *, who: str) -> list[AllowanceStatus]:
    """`copydesk budget reset NAME`: the operator's override (logged by copydesk.allowance)."""
    async with PrefectAllowanceStore() as store:
        return await reset_current(store, name, who=who)


# ------------------------------------------------------------------ the editor form's note


async def form_note(specs: Iterable[PipelineSpec]) -> str | None:
    """What is left of the shared allowances `specs` name, read from the Prefect server now
    (None when none names one)."""
    specs = list(specs)
    if not any(spec.budget.shared for spec in specs):
        return None
    async with PrefectAllowanceStore() as store:
        return allowance_note(specs, await current_statuses(store))


def note_on(description: str | None, schema: dict[str, Any], note: str | None) -> tuple[str, dict[str, Any]]:
    """The deployment's description and parameter schema with `note` in the description and
    in the help of the form's `budget` field (what an editor reads when filling the form)."""
    schema = copy.deepcopy(schema)
    budget = schema.get("properties", {}).get("budget")
    if isinstance(budget, dict):
        budget["description"] = with_allowance_note(budget.get("description"), note)
    return with_allowance_note(description, note), schema


async def refresh_form(deployment_id: Any, specs: Iterable[PipelineSpec], *, also: str | None = None) -> bool:
    """Write what is left of the shared allowances into deployment `deployment_id`'s form
    (description and `budget` help), and into the deployment named `also` when there is one.
    Never raises: a run's result does not depend on it. True when a deployment was updated."""
    try:
        note = await form_note(specs)
        if note is None:
            return False
        async with get_client() as client:
            targets = [await client.read_deployment(deployment_id)]
            if also:
                with contextlib.suppress(ObjectNotFound):
                    other = await client.read_deployment_by_name(also)
                    if other.id != targets[0].id:
                        targets.append(other)
            for deployment in targets:
                description, schema = note_on(deployment.description, deployment.parameter_openapi_schema or {},
                                              note)
                await client.update_deployment(
                    deployment.id, DeploymentUpdate(description=description, parameter_openapi_schema=schema))
        return True
    except Exception as exc:  # noqa: BLE001 - the note is a courtesy; the run's outcome stands
        log.warning("could not refresh the form's note on the shared allowances: %s", exc)
        return False
