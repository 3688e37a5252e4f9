"""Shared allowances: one token allowance for every run that names it, on every machine.

The arithmetic lives here; the counters live in a store that every process reaches
(`AllowanceStore`; copydesk_flows.allowance keeps them in the Prefect server's global
concurrency limits). Per allowance and period there is one counter pair:

    used      spent + reserved; the store refuses, atomically, an increment past `limit`
    reserved  what calls in flight hold (for `status` and for deciding to wait)

A call reserves its upper bound before it starts (`SharedBudget.acquire`) and settles
to `usage.total_tokens` afterwards (`SharedBudget.settle`), giving back the unused part.
A reservation that does not fit waits while calls in flight (of any process) could
still make room, and is refused once `spent + tokens > limit`, so the API's total
over all runs never exceeds the allowance.

A process that dies with calls in flight (SIGKILL, out of memory, a lost machine) cannot
settle them: their reservations stay counted as used, and other runs may wait for them
(up to MAX_WAIT). The run folder's reservation journal (`ReservationJournal`,
`reservations.jsonl`) lets the next run on that folder (a resume, a retried flow run: the
run lock guarantees the dead process is gone) settle them: `SharedBudget.recover`. See
`ReservationJournal` for which records it settles and which it leaves alone.

Periods: `day`, `week` (from Monday), `month` start at 00:00 in the spec's timezone;
`total` never ends. Each period has counters of its own (`period_key`), so a new
period starts at zero without anyone resetting anything; a call settles against the
period it reserved in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from copydesk import boundedjson
from copydesk.errors import BudgetExhausted, CopydeskError, InputError
from copydesk.spec import SharedBudgetSpec

log = logging.getLogger("copydesk.allowance")

#: Prefix of the counters' names in the store.
PREFIX = "copydesk-budget"
#: How often a waiting reservation asks the store again (seconds; doubles up to the max).
POLL_INITIAL = 0.05
POLL_MAX = 1.0
#: How long a reservation waits at most for other processes' calls to settle before it is
#: refused (a process that died with calls in flight never settles them).
MAX_WAIT = 600.0

SERVER_NEEDED = (
    "budget.shared needs a real Prefect server that every run reaches (a temporary per-process server "
    "cannot share anything): start one with `copydesk server start`, or set PREFECT_API_URL to yours "
    "(e.g. PREFECT_API_URL=http://127.0.0.1:4200/api)"
)


def now_in(timezone: str, now: datetime | None = None) -> datetime:
    zone = ZoneInfo(timezone)
    return now.astimezone(zone) if now is not None else datetime.now(zone)


def period_start(period: str, timezone: str, now: datetime | None = None) -> datetime | None:
    """00:00 (in `timezone`) of the day/week/month that holds `now`; None for `total`."""
    local = now_in(timezone, now)
    midnight = datetime(local.year, local.month, local.day, tzinfo=local.tzinfo)
    if period == "day":
        return midnight
    if period == "week":
        return midnight - timedelta(days=local.weekday())
    if period == "month":
        return midnight.replace(day=1)
    if period == "total":
        return None
    raise ValueError(f"unknown period {period!r}")


def period_end(period: str, timezone: str, now: datetime | None = None) -> datetime | None:
    """When the period holding `now` ends (the next one's 00:00 in `timezone`); None for `total`.

    Computed on the wall clock, so a day with a DST change is 23 or 25 hours long."""
    start = period_start(period, timezone, now)
    if start is None:
        return None
    zone = start.tzinfo
    if period == "day":
        nxt = start.date() + timedelta(days=1)
    elif period == "week":
        nxt = start.date() + timedelta(days=7)
    else:
        nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1).date()
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)


def period_key(period: str, timezone: str, now: datetime | None = None) -> str:
    """A name for the period holding `now`: 2026-11-30, 2026-W48, 2026-11 or total."""
    start = period_start(period, timezone, now)
    if start is None:
        return "total"
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return start.strftime("%Y-%m")
    return start.strftime("%Y-%m-%d")


def counter_name(name: str, timezone: str, key: str) -> str:
    """The store's name of one allowance period: copydesk-budget:NAME:ZONE:KEY (ZONE with . for /,
    which Prefect does not allow in names); its `spent` counter adds SPENT_SUFFIX."""
    return f"{PREFIX}:{name}:{timezone.replace('/', '.')}:{key}"


SPENT_SUFFIX = ":spent"
CLOSED_SUFFIX = ":closed"


@dataclass(frozen=True)
class CounterName:
    name: str
    timezone: str
    key: str

    @property
    def period(self) -> str:
        if self.key == "total":
            return "total"
        if "-W" in self.key:
            return "week"
        return "day" if self.key.count("-") == 2 else "month"

    @classmethod
    def parse(cls, text: str) -> CounterName | None:
        parts = text.split(":")
        if len(parts) != 4 or parts[0] != PREFIX:
            return None
        return cls(parts[1], parts[2].replace(".", "/"), parts[3])

    def __str__(self) -> str:
        return counter_name(self.name, self.timezone, self.key)


@dataclass(frozen=True)
class Counters:
    """One allowance period as the store holds it."""

    limit: int
    used: int
    reserved: int
    #: A run was refused a call that nothing in flight could make room for: the allowance is
    #: spent for this period (until a reset, a larger limit, or the next period).
    closed: bool = False

    @property
    def spent(self) -> int:
        return max(self.used - self.reserved, 0)


@dataclass(frozen=True)
class AllowanceStatus:
    """What `copydesk budget status` shows for one allowance."""

    name: str
    period: str
    timezone: str
    key: str
    limit: int
    spent: int
    reserved: int
    period_end: datetime | None
    closed: bool = False

    @property
    def counter(self) -> str:
        return counter_name(self.name, self.timezone, self.key)

    @property
    def left(self) -> int:
        return max(self.limit - self.spent - self.reserved, 0)


class AllowanceStore(Protocol):
    """Atomic counters every process reaches, one pair per `counter_name`. Implementations
    translate their own errors into `copydesk.errors` (`ServiceError` when unreachable)."""

    async def ensure(self, counter: str, limit: int) -> None:
        """Create the period's counters with this limit, or set the limit of existing ones."""

    async def increment(self, counter: str, tokens: int) -> bool:
        """Add `tokens` to used, atomically and only if used stays <= limit; False when it did not fit."""

    async def settle(self, counter: str, reserved: int, charged: int) -> None:
        """Give back `reserved - charged` of used, then count `charged` as spent."""

    async def read(self, counter: str) -> Counters | None:
        """The period's counters, None when none exist. `Counters.spent` must never read more
        than was settled (runs close the allowance on it); it may read less while calls settle."""

    async def close(self, counter: str) -> None:
        """Mark the period spent (`Counters.closed`); `reset` and a larger limit clear the mark."""

    async def list(self) -> dict[str, Counters]:
        """Every allowance period the store holds, by counter name."""

    async def reset(self, counter: str) -> Counters | None:
        """Set used and reserved to 0 and clear the closed mark (the operator's override);
        the counters before."""


@dataclass
class SharedReservation:
    key: str
    tokens: int
    open: bool = True
    #: Its id in the run folder's reservation journal (None without a journal).
    rid: str | None = None


#: Journal states, in the order one reservation goes through them.
OPEN, TAKEN, REFUSED, SETTLE, SETTLED, UNKNOWN = "open", "taken", "refused", "settle", "settled", "unknown"


@dataclass
class JournalEntry:
    """One reservation as the journal recorded it: its counter, tokens, and states in order."""

    rid: str
    key: str
    tokens: int
    states: list[str]

    @property
    def left_open(self) -> bool:
        """Its increment surely reached the store and no settlement was started: safe to settle."""
        return TAKEN in self.states and not {SETTLE, UNKNOWN} & set(self.states)

    @property
    def ambiguous(self) -> bool:
        """Interrupted where the journal cannot tell what the store holds (see `ReservationJournal`)."""
        if UNKNOWN in self.states or REFUSED in self.states:
            return False
        if SETTLE in self.states:
            return SETTLED not in self.states
        return TAKEN not in self.states


class ReservationJournal:
    """The run folder's record of its shared reservations (`reservations.jsonl`), one JSON line
    per step, appended and flushed before the step's request goes to the store, so a process
    killed with SIGKILL loses none of them:

        {"id", "key", "tokens", "state": "open"}   before the increment is sent
        {"id", "state": "taken"}                    after the store counted it
        {"id", "state": "refused"}                  the acquire gave up; nothing is counted
        {"id", "state": "settle", "charged": N}     before the settlement is sent (also fsynced:
                                                    losing it to a power cut could replay a settlement)
        {"id", "state": "settled"}                  after the store took the settlement
        {"id", "state": "unknown"}                  recovery reported it as ambiguous (once)

    What `SharedBudget.recover` does with a reservation the last process left behind:

    - `taken`, no `settle`: the store counts it as reserved and nobody will settle it. It is
      settled in full (the API may have billed the call): the reservation becomes spent.
    - `open` only: the process died while the increment was in flight. The store may or may
      not hold it, and its counters cannot say which. It is left alone: if it did land, it
      stays counted as reserved (used) until `copydesk budget reset` or the period's end. That
      errs on the safe side: settling one that never landed would count as spent tokens that
      were never in `used` (and hide other runs' real reservations from `reserved`).
    - `settle` without `settled`: the settlement (two requests on the Prefect store) may be
      half done. Replaying it could give back the unused part twice, room another run holds,
      and so overshoot the allowance: it is left alone, as above.

    Ambiguous ones are logged once (an `unknown` line marks them reported).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self) -> list[JournalEntry]:
        """Every reservation recorded, in order; unreadable lines (a line cut by a kill) are skipped."""
        entries: dict[str, JournalEntry] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        for line in raw.splitlines():
            try:
                row = boundedjson.loads(line.decode("utf-8"))  # too deep: skipped like any unreadable line
                rid, state = str(row["id"]), str(row["state"])
            except (ValueError, KeyError, TypeError):
                continue
            if state == OPEN:
                try:
                    entries[rid] = JournalEntry(rid, str(row["key"]), int(row["tokens"]), [OPEN])
                except (KeyError, TypeError, ValueError):
                    continue
            elif rid in entries:
                entries[rid].states.append(state)
        return list(entries.values())

    def write(self, record: dict[str, Any], *, durable: bool = False) -> None:
        """Append one line and flush it to the operating system (and to the disk when `durable`)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut = False
            try:
                with self.path.open("rb") as old:
                    old.seek(0, os.SEEK_END)
                    if old.tell():
                        old.seek(-1, os.SEEK_END)
                        cut = old.read(1) != b"\n"
            except FileNotFoundError:
                pass
            self._file = self.path.open("a", encoding="utf-8")
            if cut:  # end a line cut short by a kill, so this record starts a line of its own
                self._file.write("\n")
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True)
class Recovery:
    """What `SharedBudget.recover` found in the journal."""

    settled: int = 0
    settled_tokens: int = 0
    ambiguous: int = 0
    ambiguous_tokens: int = 0


class SharedBudget:
    """One run's view of a shared allowance: reserve, settle, wait, close (see the module docstring)."""

    def __init__(self, spec: SharedBudgetSpec, store: AllowanceStore, *, max_wait: float = MAX_WAIT,
                 journal: ReservationJournal | None = None) -> None:
        self.spec = spec
        self.store = store
        #: The run folder's reservation journal, if the run has a folder (see `recover`).
        self.journal = journal
        self.max_wait = max_wait
        self.closed = False
        self.refused_reason: str | None = None
        #: Tokens this run charged to the allowance.
        self.charged = 0
        #: The counters as last read from the store (`refresh`).
        self.last: Counters | None = None
        #: Reservations not yet settled, by id (see `settle_open`).
        self._open: dict[int, SharedReservation] = {}
        self._ready: set[str] = set()

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, now: datetime | None = None) -> str:
        """The store's counter name for the period holding `now`."""
        return counter_name(self.name, self.spec.timezone, period_key(self.spec.period, self.spec.timezone, now))

    async def refresh(self) -> Counters:
        """Make sure this period's counters exist (with the spec's limit); read them into `last`."""
        key = self.key()
        await self._ensure(key)
        self.last = await self.store.read(key) or Counters(self.spec.max_tokens, 0, 0)
        if self.last.closed and not self.closed:
            self.closed = True
            self.refused_reason = self._spent_message(key, self.last)
        return self.last

    async def _ensure(self, key: str) -> None:
        if key not in self._ready:
            await self.store.ensure(key, self.spec.max_tokens)
            self._ready.add(key)

    async def observe(self) -> Counters | None:
        """`refresh()` for reporting: a store that cannot be reached is logged, not raised."""
        try:
            return await self.refresh()
        except CopydeskError as exc:
            log.warning("could not read the shared allowance %s: %s", self.name, exc)
            return self.last

    async def acquire(self, tokens: int, *, what: str = "the next call") -> SharedReservation:
        """Reserve `tokens` in the current period, waiting while calls in flight anywhere
        could make room; `BudgetExhausted` once they could not (or after `max_wait`)."""
        delay = POLL_INITIAL
        deadline = time.monotonic() + self.max_wait
        while True:
            if self.closed:
                raise BudgetExhausted(self.refused_reason or f"the shared allowance {self.name} is spent")
            key = self.key()
            await self._ensure(key)
            if tokens > self.spec.max_tokens:
                await self._refuse(what, tokens, Counters(self.spec.max_tokens, 0, 0), key)
            rid = await self._increment(key, tokens)
            if rid is not False:
                reservation = SharedReservation(key, tokens, rid=rid)
                self._open[id(reservation)] = reservation
                return reservation
            counters = await self.store.read(key)
            if counters is None:  # removed under us (a reset by deletion): make it again
                self._ready.discard(key)
                continue
            if counters.closed:  # another run found it spent
                self.closed = True
                self.refused_reason = self._spent_message(key, counters)
                raise BudgetExhausted(self.refused_reason)
            if counters.spent + tokens > counters.limit or time.monotonic() > deadline:
                await self._refuse(what, tokens, counters, key)
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    async def _increment(self, key: str, tokens: int) -> str | None | bool:
        """`store.increment`, journalled: the reservation's journal id (None without a journal)
        when it fits, False when it does not. Raising inside the increment leaves its "open"
        line alone: the request may have reached the store (see `ReservationJournal`)."""
        if self.journal is None:
            return None if await self.store.increment(key, tokens) else False
        rid = uuid.uuid4().hex[:16]
        self.journal.write({"id": rid, "key": key, "tokens": tokens, "state": OPEN})
        taken = await self.store.increment(key, tokens)
        self.journal.write({"id": rid, "state": TAKEN if taken else REFUSED})
        return rid if taken else False

    def _until(self) -> str:
        end = period_end(self.spec.period, self.spec.timezone)
        return f"; it starts again at {end.isoformat(timespec='minutes')}" if end else ""

    def _spent_message(self, key: str, counters: Counters) -> str:
        return (f"shared allowance {self.name} ({self.spec.period} {key.rsplit(':', 1)[-1]}) is spent: "
                f"{counters.spent:,} of {counters.limit:,} tokens used, and a run was refused a call that could "
                f"not fit{self._until()} (or raise budget.shared.max_tokens, or `copydesk budget reset {self.name}`)")

    async def _refuse(self, what: str, tokens: int, counters: Counters, key: str) -> None:
        """Close the allowance for this period, here and on the store, and raise."""
        self.closed = True
        try:
            await self.store.close(key)
        except CopydeskError as exc:
            log.warning("could not mark the shared allowance %s spent: %s", self.name, exc)
        until = self._until()
        self.refused_reason = (
            f"shared allowance {self.name} ({self.spec.period} {key.rsplit(':', 1)[-1]}) reached: {what} may need up to "
            f"{tokens:,} tokens but only {max(counters.limit - counters.used, 0):,} of {counters.limit:,} are left "
            f"({counters.spent:,} spent, {counters.reserved:,} reserved by calls in flight){until}"
        )
        raise BudgetExhausted(self.refused_reason)

    async def settle(self, reservation: SharedReservation, actual_total: int | None) -> int:
        """Replace the reservation by what the API reported; None keeps all of it."""
        if not reservation.open:
            return 0
        reservation.open = False
        self._open.pop(id(reservation), None)
        charged = reservation.tokens if actual_total is None else min(actual_total, reservation.tokens)
        if actual_total is not None and actual_total > reservation.tokens:
            log.warning("the API reported %d tokens for a call bounded by %d; the shared allowance counts %d",
                        actual_total, reservation.tokens, reservation.tokens)
        self.charged += charged
        await self._settle_store(reservation.key, reservation.tokens, charged, reservation.rid)
        return charged

    async def release(self, reservation: SharedReservation) -> None:
        """The attempt provably cost nothing."""
        if reservation.open:
            reservation.open = False
            self._open.pop(id(reservation), None)
            await self._settle_store(reservation.key, reservation.tokens, 0, reservation.rid)

    async def _settle_store(self, key: str, reserved: int, charged: int, rid: str | None) -> None:
        """`store.settle`, journalled: "settle" on disk before it is sent (a settlement must never
        be replayed), "settled" once the store took it."""
        if self.journal is not None and rid is not None:
            self.journal.write({"id": rid, "state": SETTLE, "charged": charged}, durable=True)
        await self.store.settle(key, reserved, charged)
        if self.journal is not None and rid is not None:
            self.journal.write({"id": rid, "state": SETTLED})

    async def recover(self) -> Recovery:
        """Settle, in full, every reservation that a process killed on this run folder left open
        (journal: "taken", no settlement started); the API may have billed those calls. Call it
        before this run's first reservation, holding the run folder's lock (so that process is
        gone). Reservations the journal cannot vouch for are left alone and logged once (see
        `ReservationJournal`). Never raises for the store: what it could not settle is retried
        by the next run on the folder."""
        if self.journal is None:
            return Recovery()
        settled = tokens_settled = ambiguous = tokens_ambiguous = 0
        for entry in self.journal.load():
            if entry.left_open:
                try:
                    await self._settle_store(entry.key, entry.tokens, entry.tokens, entry.rid)
                except CopydeskError as exc:
                    log.warning("could not settle a reservation of the shared allowance %s left open by an "
                                "interrupted run (%d tokens): %s; the next run on this folder tries again",
                                self.name, entry.tokens, exc)
                    continue
                settled += 1
                tokens_settled += entry.tokens
            elif entry.ambiguous:
                self.journal.write({"id": entry.rid, "state": UNKNOWN})
                ambiguous += 1
                tokens_ambiguous += entry.tokens
        if settled:
            log.warning("shared allowance %s: settled %d reservation(s) left open by an interrupted run: %d tokens "
                        "(counted as spent: the API may have billed those calls)", self.name, settled, tokens_settled)
        if ambiguous:
            log.warning("shared allowance %s: an interrupted run died while %d reservation(s) (%d tokens) were being "
                        "sent or settled; whether the server counted them cannot be known, so they are left as the "
                        "server holds them: if it did, `copydesk budget status %s` shows them reserved until the "
                        "period ends or `copydesk budget reset %s`", self.name, ambiguous, tokens_ambiguous,
                        self.name, self.name)
        return Recovery(settled, tokens_settled, ambiguous, tokens_ambiguous)

    async def settle_open(self) -> None:
        """When the run ends (also interrupted): every reservation still open (a call cancelled
        mid-flight, which the API may still bill) is settled as spent in full, so the store's
        `reserved` returns to what other runs hold. Never raises: the run's end goes on."""
        for reservation in list(self._open.values()):
            try:
                await self.settle(reservation, None)
            except CopydeskError as exc:
                log.warning("could not settle a reservation of the shared allowance %s: %s", self.name, exc)



def status_of(counter: CounterName, counters: Counters, now: datetime | None = None) -> AllowanceStatus:
    return AllowanceStatus(counter.name, counter.period, counter.timezone, counter.key, counters.limit, counters.spent,
                           counters.reserved, period_end(counter.period, counter.timezone, now), counters.closed)


async def current_statuses(store: AllowanceStore, name: str | None = None,
                           now: datetime | None = None) -> list[AllowanceStatus]:
    """Every allowance's current period (or only `name`'s), as the store holds it; earlier
    periods are history and left out."""
    found = []
    for text, counters in sorted((await store.list()).items()):
        counter = CounterName.parse(text)
        if counter is None or (name is not None and counter.name != name):
            continue
        if counter.key != period_key(counter.period, counter.timezone, now):
            continue
        found.append(status_of(counter, counters, now))
    return found


async def reset_allowance(store: AllowanceStore, name: str, *, who: str,
                          now: datetime | None = None) -> list[AllowanceStatus]:
    """The operator's override: the current period of allowance `name` starts again from 0.
    Logged (who, what it was). Returns the statuses as they were before; empty when unknown."""
    before = await current_statuses(store, name, now)
    for status in before:
        await store.reset(status.counter)  # also clears the closed mark
        log.warning("shared allowance %s (%s %s) reset by %s: it was %d spent and %d reserved of %d",
                    status.name, status.period, status.key, who, status.spent, status.reserved, status.limit)
    return before


def require_server(spec: SharedBudgetSpec | None, environ: Mapping[str, str]) -> None:
    """A spec with `budget.shared` needs a Prefect server every run reaches: `InputError` otherwise."""
    if spec is not None and not environ.get("PREFECT_API_URL"):
        raise InputError(f"budget.shared ({spec.name}): {SERVER_NEEDED}")
