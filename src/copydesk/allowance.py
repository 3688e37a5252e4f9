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
`ReservationJournal` (copydesk.allowance_journal) for which records it settles and which it
leaves alone: the file is not trusted, only this allowance's own lines with sane counts are
settled, the rest is refused with a warning naming the file and line.

An allowance belongs to the operator: `copydesk budget create/set` records it on the
store (`Allowance`: its limit, period and timezone; copydesk.allowance_admin). A spec only
names it; a run reads the record (and refuses a spec that disagrees with it), creates the
counters of a period the first time one is used, with the recorded limit, and never
changes a limit, a period, a timezone or a closed mark.

Periods: `day`, `week` (from Monday), `month` start at 00:00 in the allowance's timezone;
`total` never ends. Each period has counters of its own (`period_key`), so a new
period starts at zero without anyone resetting anything; a call settles against the
period it reserved in.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from copydesk.allowance_journal import (
    OPEN,
    REFUSED,
    SETTLE,
    SETTLED,
    TAKEN,
    UNKNOWN,
    JournalEntry,
    ReservationJournal,
)

__all__ = ["ReservationJournal"]  # also here: where the journal's readers used to find it
from copydesk.errors import BudgetExhausted, CopydeskError
from copydesk.spec import NAME_PATTERN, TimeZoneName

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


#: The periods an allowance may have.
PERIODS = ("day", "week", "month", "total")
#: The largest allowance (a Prefect limit is a 32-bit column; `spent` must fit too).
MAX_ALLOWANCE = 2_000_000_000


class Allowance(BaseModel):
    """A shared allowance as the operator recorded it on the store (`copydesk budget create/set`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    max_tokens: int = Field(ge=1, le=MAX_ALLOWANCE, strict=True)
    period: Literal["day", "week", "month", "total"]
    timezone: TimeZoneName
    #: Who recorded it last, and when (ISO 8601): shown by `copydesk budget status`.
    changed_by: str | None = Field(None, max_length=200)
    changed_at: str | None = Field(None, max_length=64)

    def counter(self, now: datetime | None = None) -> str:
        """The store's counter name of the period holding `now`."""
        return counter_name(self.name, self.timezone, period_key(self.period, self.timezone, now))


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
    #: Recorded by the operator (`copydesk budget create`); False: counters of the older scheme
    #: (limits set by specs) that no record owns yet.
    recorded: bool = True
    #: Who recorded or changed it last, and when.
    changed: str | None = None

    @property
    def counter(self) -> str:
        return counter_name(self.name, self.timezone, self.key)

    @property
    def left(self) -> int:
        return max(self.limit - self.spent - self.reserved, 0)


class AllowanceStore(Protocol):
    """Atomic counters every process reaches, one pair per `counter_name`. Implementations
    translate their own errors into `copydesk.errors` (`ServiceError` when unreachable)."""

    async def read_allowance(self, name: str) -> Allowance | None:
        """The operator's record of allowance `name`, None when there is none. A record the store
        holds but that does not read as an `Allowance` raises `ServiceError`."""

    async def allowances(self) -> list[Allowance]:
        """Every allowance the operator recorded."""

    async def create_allowance(self, allowance: Allowance) -> bool:
        """Record a new allowance, atomically; False when one of that name is recorded already."""

    async def update_allowance(self, allowance: Allowance) -> bool:
        """Replace the record of an existing allowance; False when none of that name is recorded."""

    async def ensure(self, counter: str, limit: int) -> None:
        """Create the period's counters with this limit when they do not exist; never changes
        existing ones (what a run does)."""

    async def set_limit(self, counter: str, limit: int) -> None:
        """Create the period's counters with this limit, or change the limit of existing ones; a
        larger limit clears the closed mark (what the operator's `copydesk budget set` does)."""

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


@dataclass(frozen=True)
class Tally:
    """How many reservations, and their tokens."""

    count: int = 0
    tokens: int = 0

    def plus(self, tokens: int) -> Tally:
        """This tally and one more reservation of `tokens`."""
        return Tally(self.count + 1, self.tokens + tokens)


@dataclass(frozen=True)
class Recovery:
    """What `SharedBudget.recover` found in the journal."""

    #: Reservations left open by an interrupted run: settled in full.
    settled: Tally = Tally()
    #: Reservations an interrupted run was sending or settling: left as the server holds them.
    ambiguous: Tally = Tally()
    #: Journal lines refused (not this allowance's, not sane, not a record): each logged with its line.
    refused: int = 0


class SharedBudget:
    """One run's view of a shared allowance: reserve, settle, wait, close (see the module docstring).

    `allowance` is the operator's record, read when the run started (`copydesk.allowance_admin.
    recorded_allowance`); the limit itself lives on each period's counter, so a change by
    `copydesk budget set` applies to runs in flight at once."""

    def __init__(self, allowance: Allowance, store: AllowanceStore, *, max_wait: float = MAX_WAIT,
                 journal: ReservationJournal | None = None) -> None:
        self.allowance = allowance
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
        return self.allowance.name

    def key(self, now: datetime | None = None) -> str:
        """The store's counter name for the period holding `now`."""
        return self.allowance.counter(now)

    async def refresh(self) -> Counters:
        """Make sure this period's counters exist; read them into `last`."""
        key = self.key()
        await self._ensure(key)
        self.last = await self.store.read(key) or Counters(self.allowance.max_tokens, 0, 0)
        if self.last.closed and not self.closed:
            self.closed = True
            self.refused_reason = self._spent_message(key, self.last)
        return self.last

    async def _ensure(self, key: str) -> None:
        """The period's counters, created with the recorded limit the first time a run uses the
        period (read again: the operator may have changed it since this run started)."""
        if key not in self._ready:
            recorded = await self.store.read_allowance(self.name)
            same = recorded is not None and (recorded.period, recorded.timezone) == (
                self.allowance.period, self.allowance.timezone)
            await self.store.ensure(key, recorded.max_tokens if same and recorded else self.allowance.max_tokens)
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
        end = period_end(self.allowance.period, self.allowance.timezone)
        return f"; it starts again at {end.isoformat(timespec='minutes')}" if end else ""

    def _spent_message(self, key: str, counters: Counters) -> str:
        return (f"shared allowance {self.name} ({self.allowance.period} {key.rsplit(':', 1)[-1]}) is spent: "
                f"{counters.spent:,} of {counters.limit:,} tokens used, and a run was refused a call that could "
                f"not fit{self._until()} (or the operator's `copydesk budget set {self.name} --max-tokens N` or "
                f"`copydesk budget reset {self.name}`)")

    async def _refuse(self, what: str, tokens: int, counters: Counters, key: str) -> None:
        """Close the allowance for this period, here and on the store, and raise."""
        self.closed = True
        try:
            await self.store.close(key)
        except CopydeskError as exc:
            log.warning("could not mark the shared allowance %s spent: %s", self.name, exc)
        until = self._until()
        self.refused_reason = (
            f"shared allowance {self.name} ({self.allowance.period} {key.rsplit(':', 1)[-1]}) reached: {what} may "
            f"need up to {tokens:,} tokens but only {max(counters.limit - counters.used, 0):,} of {counters.limit:,} "
            f"are left ({counters.spent:,} spent, {counters.reserved:,} reserved by calls in flight){until}"
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
        gone). Reservations the journal cannot vouch for are left alone and logged once; lines
        that are not this allowance's own sane records are refused with a warning (see
        `ReservationJournal`). Never raises for the store: what it could not settle is retried
        by the next run on the folder."""
        if self.journal is None:
            return Recovery()
        problems: list[tuple[int, str]] = []
        entries = self.journal.load(problems)
        settled = ambiguous = Tally()
        room: dict[str, int] = {}  # per counter: reserved tokens the store holds, not yet claimed here
        for entry in entries:
            if entry.left_open:
                why = await self._untrusted(entry, room)
                if why is not None:
                    problems.append((entry.line, why))
                    continue
                try:
                    await self._settle_store(entry.key, entry.tokens, entry.tokens, entry.rid)
                except CopydeskError as exc:
                    log.warning("could not settle a reservation of the shared allowance %s left open by an "
                                "interrupted run (%d tokens): %s; the next run on this folder tries again",
                                self.name, entry.tokens, exc)
                    continue
                settled = settled.plus(entry.tokens)
            elif entry.ambiguous and entry.key.startswith(f"{PREFIX}:{self.name}:"):
                self.journal.write({"id": entry.rid, "state": UNKNOWN})
                ambiguous = ambiguous.plus(entry.tokens)
        self._report(problems, settled, ambiguous)
        return Recovery(settled, ambiguous, refused=len(problems))

    async def _untrusted(self, entry: JournalEntry, room: dict[str, int]) -> str | None:
        """Why a reservation left open must not be settled, or None: it must name this allowance's
        own counter (its name, timezone and period, not a later period than now) and a count
        between 0 and what that counter holds reserved, less what earlier lines claimed."""
        own = CounterName.parse(entry.key)
        if own is None or (own.name, own.timezone, own.period) != (
                self.name, self.allowance.timezone, self.allowance.period) or own.key > self.key().rsplit(":", 1)[-1]:
            return (f"it names the counter {entry.key[:120]!r}, not one of this run's allowance {self.name} "
                    f"({self.allowance.period}, {self.allowance.timezone})")
        if entry.tokens < 0:
            return f"a negative token count ({entry.tokens:,})"
        if entry.key not in room:
            counters = await self.store.read(entry.key)
            room[entry.key] = counters.reserved if counters is not None else 0
        if entry.tokens > room[entry.key]:
            return (f"{entry.tokens:,} tokens, more than the {room[entry.key]:,} the allowance's counter "
                    f"{entry.key} still holds reserved")
        room[entry.key] -= entry.tokens
        return None

    def _report(self, problems: list[tuple[int, str]], settled: Tally, ambiguous: Tally) -> None:
        assert self.journal is not None
        for line, why in sorted(problems):
            log.warning("%s line %d: refused, not settled against shared allowance %s: %s", self.journal.path,
                        line, self.name, why)
        if settled.count:
            log.warning("shared allowance %s: settled %d reservation(s) left open by an interrupted run: %d tokens "
                        "(counted as spent: the API may have billed those calls)", self.name, settled.count,
                        settled.tokens)
        if ambiguous.count:
            log.warning("shared allowance %s: an interrupted run died while %d reservation(s) (%d tokens) were being "
                        "sent or settled; whether the server counted them cannot be known, so they are left as the "
                        "server holds them: if it did, `copydesk budget status %s` shows them reserved until the "
                        "period ends or `copydesk budget reset %s`", self.name, ambiguous.count, ambiguous.tokens,
                        self.name, self.name)

    async def settle_open(self) -> None:
        """When the run ends (also interrupted): every reservation still open (a call cancelled
        mid-flight, which the API may still bill) is settled as spent in full, so the store's
        `reserved` returns to what other runs hold. Never raises: the run's end goes on."""
        for reservation in list(self._open.values()):
            try:
                await self.settle(reservation, None)
            except CopydeskError as exc:
                log.warning("could not settle a reservation of the shared allowance %s: %s", self.name, exc)
