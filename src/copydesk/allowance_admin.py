"""The operator's side of shared allowances, and a spec's `budget.shared` checked against it.

A shared allowance belongs to the operator. `copydesk budget create NAME --max-tokens N
--period P --timezone Z` records it on the store that every run reaches (the Prefect
server: copydesk_flows.allowance), `copydesk budget set NAME ...` changes it, `status`
shows it, `reset` starts its current period again. A spec only names it
(`budget.shared.name`); a spec's own `max_tokens`, `period` or `timezone`, where given,
must agree with the record, or the run exits 2 naming both values
(`recorded_allowance`). No run creates, raises, lowers or re-opens an allowance.

Migration from the older scheme (specs set the limit, period and timezone; the counters
were made by runs): a run whose allowance is not recorded exits 2 with the exact
`copydesk budget create` command built from the spec's own values, and `create` adopts
the counters such runs left on the server for the current period (what was spent stays
spent; `set_limit` sets the recorded limit on them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from copydesk.allowance import (
    MAX_ALLOWANCE,
    PERIODS,
    SERVER_NEEDED,
    Allowance,
    AllowanceStatus,
    AllowanceStore,
    CounterName,
    Counters,
    period_end,
    period_key,
)
from copydesk.errors import InputError
from copydesk.spec import NAME_PATTERN, PipelineSpec, SharedBudgetSpec

log = logging.getLogger("copydesk.allowance")

#: The fields a spec may repeat (to agree with the record) and the options that set them.
FIELDS = ("max_tokens", "period", "timezone")


def _show(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def describe(allowance: Allowance) -> str:
    """`20,000 tokens a day (Europe/Berlin)`."""
    per = {"day": "a day", "week": "a week", "month": "a month", "total": "in total"}[allowance.period]
    return f"{allowance.max_tokens:,} tokens {per} ({allowance.timezone})"


def create_command(name: str, max_tokens: int | None, period: str | None, timezone: str | None) -> str:
    """The `copydesk budget create` command for these values (the older scheme's defaults, day and
    UTC, where a spec leaves them out; N where it gives no max_tokens)."""
    return (f"copydesk budget create {name} --max-tokens {max_tokens if max_tokens is not None else 'N'} "
            f"--period {period or 'day'} --timezone {timezone or 'UTC'}")


# ------------------------------------------------------------------ the operator's options

BAD_NAME = "NAME {!r}: lower-case letters, digits and single dashes, at most 64 characters"


def valid_name(name: str) -> bool:
    return len(name) <= 64 and re.fullmatch(NAME_PATTERN, name) is not None


def allowance_from_options(name: str, max_tokens: int, period: str, timezone: str, *, who: str | None = None,
                           now: datetime | None = None) -> Allowance:
    """The allowance `copydesk budget create/set` records; `InputError` (exit 2) naming each bad option."""
    problems = [] if valid_name(name) else [BAD_NAME.format(name[:80])]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_ALLOWANCE:
        problems.append(f"--max-tokens {max_tokens!r}: a whole number of tokens from 1 to {MAX_ALLOWANCE:,}")
    if period not in PERIODS:
        problems.append(f"--period {period[:40]!r}: one of {', '.join(PERIODS)}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"--timezone {timezone[:80]!r}: not a known IANA time zone (e.g. UTC, Europe/Berlin, "
                        "Asia/Shanghai)")
    if problems:
        raise InputError("; ".join(problems))
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return Allowance(name=name, max_tokens=max_tokens, period=period, timezone=timezone,
                     changed_by=who, changed_at=stamp)


@dataclass
class Created:
    """What `copydesk budget create` did."""

    allowance: Allowance
    #: The current period's counters it adopted from the older scheme (None: there were none).
    adopted: Counters | None = None
    #: Counters of the older scheme under another period or timezone, left as they are (history).
    left: list[str] = field(default_factory=list)


async def create_allowance(store: AllowanceStore, allowance: Allowance, now: datetime | None = None) -> Created:
    """Record a new allowance (`InputError` when one of that name is recorded already) and set
    its limit on the current period's counters, adopting those the older scheme left."""
    if not await store.create_allowance(allowance):
        existing = await store.read_allowance(allowance.name)
        what = f" ({describe(existing)})" if existing else ""
        raise InputError(f"a shared allowance named {allowance.name} is recorded already{what}: "
                         f"`copydesk budget set {allowance.name} ...` changes it")
    key = allowance.counter(now)
    adopted = await store.read(key)
    await store.set_limit(key, allowance.max_tokens)
    left = []
    for text in sorted(await store.list()):
        counter = CounterName.parse(text)
        if counter is None or counter.name != allowance.name or text == key:
            continue
        if counter.key == period_key(counter.period, counter.timezone, now):
            left.append(text)
    log.warning("shared allowance %s created: %s, by %s", allowance.name, describe(allowance), allowance.changed_by)
    return Created(allowance, adopted, left)


async def set_allowance(store: AllowanceStore, name: str, *, max_tokens: int | None = None,
                        period: str | None = None, timezone: str | None = None, who: str | None = None,
                        now: datetime | None = None) -> tuple[Allowance, Allowance]:
    """Change a recorded allowance (what is not given stays); its limit applies to the current
    period's counters at once (a larger one re-opens a spent period). Returns (before, after)."""
    if not valid_name(name):  # before it goes into a request's path
        raise InputError(BAD_NAME.format(name[:80]))
    before = await store.read_allowance(name)
    if before is None:
        raise InputError(f"no shared allowance named {name[:80]!r} is recorded: "
                         f"`{create_command(name, max_tokens, period, timezone)}` records it")
    if max_tokens is None and period is None and timezone is None:
        raise InputError("nothing to change: give --max-tokens, --period or --timezone")
    after = allowance_from_options(name, before.max_tokens if max_tokens is None else max_tokens,
                                   period or before.period, timezone or before.timezone, who=who, now=now)
    if not await store.update_allowance(after):
        raise InputError(f"the shared allowance {name} was removed meanwhile: `copydesk budget create` it again")
    await store.set_limit(after.counter(now), after.max_tokens)
    log.warning("shared allowance %s changed by %s: %s -> %s", name, who, describe(before), describe(after))
    return before, after


# ------------------------------------------------------------------ a spec names an allowance


def check_spec(shared: SharedBudgetSpec, recorded: Allowance | None, *, origin: str) -> Allowance:
    """The recorded allowance a spec's `budget.shared` names; `InputError` (exit 2) when none is
    recorded (with the `create` command built from the spec's values) or when the spec's own
    max_tokens/period/timezone disagree with the record (naming both values)."""
    if recorded is None:
        command = create_command(shared.name, shared.max_tokens, shared.period, shared.timezone)
        raise InputError(
            f"{origin}: budget.shared.name: no shared allowance named {shared.name} is recorded on the Prefect "
            f"server. A shared allowance belongs to the operator, who records it once: `{command}` (it adopts "
            "what runs of the older scheme already spent of it this period)")
    differ = [(name, getattr(shared, name), getattr(recorded, name)) for name in FIELDS
              if getattr(shared, name) is not None and getattr(shared, name) != getattr(recorded, name)]
    if differ:
        said = "; ".join(f"budget.shared.{name} is {_show(mine)} but the allowance {recorded.name} recorded on the "
                         f"Prefect server has {name} {_show(theirs)}" for name, mine, theirs in differ)
        raise InputError(
            f"{origin}: {said}. A spec only names a shared allowance: remove those fields or make them agree; "
            f"only the operator changes it (`copydesk budget set {recorded.name} ...`)")
    return recorded


def spec_origin(spec: PipelineSpec) -> str:
    """How messages name a spec: its file and pipeline name."""
    return f"{spec.source} (pipeline {spec.name})" if spec.source else f"pipeline {spec.name}"


async def recorded_allowance(shared: SharedBudgetSpec, store: AllowanceStore, *, origin: str) -> Allowance:
    """`check_spec` against the store's record (what a run does before anything else)."""
    return check_spec(shared, await store.read_allowance(shared.name), origin=origin)


def require_server(spec: SharedBudgetSpec | None, environ: Mapping[str, str]) -> None:
    """A spec with `budget.shared` needs a Prefect server every run reaches: `InputError` otherwise."""
    if spec is not None and not environ.get("PREFECT_API_URL"):
        raise InputError(f"budget.shared ({spec.name}): {SERVER_NEEDED}")


# ------------------------------------------------------------------ status and reset


def _status(counter: CounterName, counters: Counters | None, limit: int, now: datetime | None, *,
            recorded: bool, changed: str | None = None) -> AllowanceStatus:
    used = counters or Counters(limit, 0, 0)
    return AllowanceStatus(counter.name, counter.period, counter.timezone, counter.key, used.limit, used.spent,
                           used.reserved, period_end(counter.period, counter.timezone, now), used.closed,
                           recorded=recorded, changed=changed)


async def current_statuses(store: AllowanceStore, name: str | None = None,
                           now: datetime | None = None) -> list[AllowanceStatus]:
    """Every allowance's current period (or only `name`'s): the recorded ones (all left when
    unused this period), then counters of the older scheme that no record owns yet."""
    counters = await store.list()
    recorded = sorted((a for a in await store.allowances() if name is None or a.name == name),
                      key=lambda a: a.name)
    found = []
    for allowance in recorded:
        counter = CounterName.parse(allowance.counter(now))
        assert counter is not None
        changed = f"{allowance.changed_by or '?'} at {allowance.changed_at or '?'}"
        found.append(_status(counter, counters.get(str(counter)), allowance.max_tokens, now, recorded=True,
                             changed=changed))
    owned = {a.name for a in recorded}
    for text, held in sorted(counters.items()):
        counter = CounterName.parse(text)
        if counter is None or counter.name in owned or (name is not None and counter.name != name):
            continue
        if counter.key == period_key(counter.period, counter.timezone, now):
            found.append(_status(counter, held, held.limit, now, recorded=False))
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
