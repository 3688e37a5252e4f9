"""copydesk.allowance (periods, waiting reservations) and copydesk_flows.allowance (the Prefect server's
global concurrency limits): one allowance for several runs in separate processes, never exceeded."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, run_cli
from copydesk.allowance import (
    Allowance,
    Counters,
    CounterName,
    ReservationJournal,
    SharedBudget,
    counter_name,
    period_end,
    period_key,
)
from copydesk.errors import BudgetExhausted

BERLIN = ZoneInfo("Europe/Berlin")


# --------------------------------------------------------------------------- periods


def test_day_period_resets_at_midnight_in_its_timezone() -> None:
    # 23:30 UTC on 30 Nov is already 1 Dec in Berlin.
    now = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))
    assert period_key("day", "UTC", now) == "2026-11-30"
    assert period_key("day", "Europe/Berlin", now) == "2026-12-01"
    assert period_end("day", "Europe/Berlin", now) == datetime(2026, 12, 2, tzinfo=BERLIN)
    assert period_end("day", "UTC", now) == datetime(2026, 12, 1, tzinfo=ZoneInfo("UTC"))


def test_week_month_total_periods() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=BERLIN)  # a Monday
    assert period_key("week", "Europe/Berlin", now) == "2026-W49"
    assert period_end("week", "Europe/Berlin", now) == datetime(2026, 12, 7, tzinfo=BERLIN)
    assert period_key("month", "Europe/Berlin", now) == "2026-11"
    assert period_end("month", "Europe/Berlin", datetime(2026, 12, 31, 23, 0, tzinfo=BERLIN)) == \
        datetime(2027, 1, 1, tzinfo=BERLIN)
    assert period_key("total", "UTC", now) == "total" and period_end("total", "UTC", now) is None


def test_a_day_with_a_dst_change_ends_at_local_midnight() -> None:
    now = datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN)  # the 23-hour day
    end = period_end("day", "Europe/Berlin", now)
    assert end == datetime(2026, 3, 30, tzinfo=BERLIN)
    assert end.utcoffset().total_seconds() == 7200


def test_counter_names_round_trip_without_prefect_banned_characters() -> None:
    text = counter_name("content-team", "America/Argentina/Buenos_Aires", "2026-11")
    assert not set("/%&<>") & set(text)
    parsed = CounterName.parse(text)
    assert parsed == CounterName("content-team", "America/Argentina/Buenos_Aires", "2026-11")
    assert parsed.period == "month"
    assert CounterName.parse(text + ":spent") is None


# --------------------------------------------------------------------------- waiting, in one process


class MemoryStore:
    """The AllowanceStore contract in memory (what the Prefect server does atomically)."""

    def __init__(self, *recorded: Allowance) -> None:
        self.counters: dict[str, list[int]] = {}
        self.closed: set[str] = set()
        self.records: dict[str, Allowance] = {a.name: a for a in recorded}

    async def read_allowance(self, name: str) -> Allowance | None:
        return self.records.get(name)

    async def allowances(self) -> list[Allowance]:
        return list(self.records.values())

    async def create_allowance(self, allowance: Allowance) -> bool:
        if allowance.name in self.records:
            return False
        self.records[allowance.name] = allowance
        return True

    async def update_allowance(self, allowance: Allowance) -> bool:
        if allowance.name not in self.records:
            return False
        self.records[allowance.name] = allowance
        return True

    async def close(self, counter: str) -> None:
        self.closed.add(counter)

    async def ensure(self, counter: str, limit: int) -> None:
        self.counters.setdefault(counter, [limit, 0, 0])

    async def set_limit(self, counter: str, limit: int) -> None:
        old = self.counters.setdefault(counter, [limit, 0, 0])[0]
        self.counters[counter][0] = limit
        if limit > old:
            self.closed.discard(counter)

    async def increment(self, counter: str, tokens: int) -> bool:
        c = self.counters[counter]
        if c[1] + tokens > c[0]:
            return False
        c[1] += tokens
        c[2] += tokens
        return True

    async def settle(self, counter: str, reserved: int, charged: int) -> None:
        c = self.counters[counter]
        c[1] -= reserved - charged
        c[2] -= reserved

    async def read(self, counter: str) -> Counters | None:
        c = self.counters.get(counter)
        return Counters(*c, counter in self.closed) if c else None

    async def list(self) -> dict[str, Counters]:
        return {k: Counters(*v, k in self.closed) for k, v in self.counters.items()}

    async def reset(self, counter: str) -> Counters | None:
        before = await self.read(counter)
        self.counters[counter][1:] = [0, 0]
        self.closed.discard(counter)
        return before


def spec(limit: int, name: str = "team") -> Allowance:
    """An allowance as the operator records it (`copydesk budget create`)."""
    return Allowance(name=name, max_tokens=limit, period="day", timezone="UTC")


def test_shared_reservation_waits_for_another_run_to_settle() -> None:
    async def scenario() -> tuple[int, bool]:
        store = MemoryStore()
        a, b = SharedBudget(spec(1000), store), SharedBudget(spec(1000), store)
        first = await a.acquire(700)
        waiting = asyncio.create_task(b.acquire(700, what="a section call"))
        await asyncio.sleep(0.2)
        assert not waiting.done() and not b.closed
        await a.settle(first, 200)
        second = await asyncio.wait_for(waiting, 5)
        return second.tokens, b.closed

    assert asyncio.run(scenario()) == (700, False)


def test_shared_reservation_is_refused_when_nothing_in_flight_could_make_room() -> None:
    async def scenario() -> SharedBudget:
        store = MemoryStore()
        a, b = SharedBudget(spec(1000), store), SharedBudget(spec(1000), store)
        await a.settle(await a.acquire(500), 450)
        with pytest.raises(BudgetExhausted, match=r"shared allowance team \(day .*\) reached.*starts again at"):
            await b.acquire(600, what="a section call")
        return b

    assert asyncio.run(scenario()).closed


def test_once_refused_the_allowance_stays_closed_for_later_runs_until_reset() -> None:
    """A run that starts after the allowance is spent is refused before any call, even a small
    one that would still fit; `reset` opens it again."""
    from copydesk.allowance_admin import reset_allowance

    async def scenario() -> None:
        store = MemoryStore()
        first = SharedBudget(spec(1000), store)
        await first.settle(await first.acquire(800), 700)
        with pytest.raises(BudgetExhausted):
            await first.acquire(400)
        late = SharedBudget(spec(1000), store)
        await late.refresh()
        assert late.closed and "is spent" in (late.refused_reason or "")
        with pytest.raises(BudgetExhausted):
            await late.acquire(10)
        (before,) = await reset_allowance(store, "team", who="test")
        assert before.closed and before.spent == 700
        again = SharedBudget(spec(1000), store)
        await again.refresh()
        assert not again.closed
        await again.acquire(900)

    asyncio.run(scenario())


def test_many_runs_share_one_allowance_without_overshoot_and_use_it() -> None:
    async def scenario() -> tuple[int, int]:
        store = MemoryStore()
        rng = random.Random(3)
        billed = 0

        async def run() -> None:
            nonlocal billed
            budget = SharedBudget(spec(50_000), store)
            for _ in range(100):
                try:
                    r = await budget.acquire(500)
                except BudgetExhausted:
                    return
                await asyncio.sleep(rng.random() / 100)
                cost = rng.randint(1, 500)
                billed += cost
                await budget.settle(r, cost)

        await asyncio.gather(*(run() for _ in range(8)))
        return billed, 50_000

    billed, limit = asyncio.run(scenario())
    assert billed <= limit
    assert billed >= 0.95 * limit


# --------------------------------------------------------------------------- the real Prefect server


def shared_spec(basic_spec: Path, name: str, extra: str = "") -> Path:
    """The basic spec naming shared allowance `name` (and `extra` lines under budget.shared)."""
    text = basic_spec.read_text(encoding="utf-8").replace(
        "  max_total_tokens: 60000\n", f"  max_total_tokens: 60000\n  shared:\n    name: {name}\n{extra}")
    basic_spec.write_text(text, encoding="utf-8")
    return basic_spec


def create_allowance(env: dict[str, str], name: str, max_tokens: int, period: str = "day",
                     timezone: str = "Europe/Berlin") -> None:
    """The operator records the allowance: `copydesk budget create`."""
    made = run_cli(["budget", "create", name, "--max-tokens", str(max_tokens), "--period", period,
                    "--timezone", timezone], env)
    assert made.returncode == 0, made.stderr


def test_prefect_store_is_atomic_across_processes(prefect_server: str, tmp_path: Path) -> None:
    """Three processes hammer one allowance through the Prefect server; the sum of what they
    were granted never exceeds it."""
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "hammer.py"
    script.write_text(
        "import asyncio, json, random, sys\n"
        "from copydesk.allowance import Allowance, SharedBudget\n"
        "from copydesk.errors import BudgetExhausted\n"
        "from copydesk_flows.allowance import PrefectAllowanceStore\n"
        "async def main():\n"
        "    billed = 0\n"
        "    rng = random.Random(int(sys.argv[2]))\n"
        "    async with PrefectAllowanceStore() as store:\n"
        "        budget = SharedBudget(Allowance(name=sys.argv[1], max_tokens=5000, period='day', timezone='UTC'),\n"
        "                              store)\n"
        "        async def call():\n"
        "            nonlocal billed\n"
        "            try:\n"
        "                r = await budget.acquire(400)\n"
        "            except BudgetExhausted:\n"
        "                return\n"
        "            cost = rng.randint(1, 400)\n"
        "            billed += cost\n"
        "            await budget.settle(r, cost)\n"
        "        await asyncio.gather(*(call() for _ in range(20)))\n"
        "    print(json.dumps({'billed': billed}))\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    procs = [subprocess.Popen([sys.executable, str(script), name, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    billed = 0
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        billed += json.loads(stdout.strip().splitlines()[-1])["billed"]
    assert 0.9 * 5000 <= billed <= 5000  # 3 x 20 calls would need ~12,000: the allowance stops them


def test_runs_in_separate_processes_never_exceed_the_allowance(
    basic_spec: Path, cli_env: dict[str, str], fake_api, tmp_path: Path
) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    allowance = 4000
    spec_path = shared_spec(basic_spec, name)
    create_allowance(cli_env, name, allowance)
    exe = Path(sys.executable).with_name("copydesk")
    procs = []
    for i in range(3):
        args = [str(exe), "run", str(spec_path), "--out", str(tmp_path / f"out{i}"),
                "-t", f"Topic {i} alpha", "-t", f"Topic {i} beta", "-t", f"Topic {i} gamma"]
        procs.append(subprocess.Popen(args, env=cli_env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    codes = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 3), stderr[-3000:]
        if proc.returncode == 3:
            assert f"shared allowance {name}" in stderr
    assert fake_api.total_tokens <= allowance  # the API's own count is the judge
    assert 3 in codes, f"9 articles should need more than {allowance}; the API billed {fake_api.total_tokens}"
    for i in range(3):
        csv_text = next((tmp_path / f"out{i}").glob("*/articles.csv")).read_text(encoding="utf-8-sig")
        for topic in ("alpha", "beta", "gamma"):
            assert f"Topic {i} {topic}" in csv_text

    # The allowance is spent: a run that starts now makes no call at all and exits 3.
    requests_before = len(fake_api.state.requests)
    late = run_cli(["run", str(spec_path), "--out", str(tmp_path / "late"), "-t", "Late topic"], cli_env)
    assert late.returncode == 3, late.stderr[-3000:]
    assert len(fake_api.state.requests) == requests_before
    assert f"shared allowance {name}" in late.stderr
    assert "copydesk budget status" in late.stderr and "raise --budget" not in late.stderr
    assert "Late topic" in next((tmp_path / "late").glob("*/articles.csv")).read_text(encoding="utf-8-sig")

    # status shows it; reset (logged) starts the period again from 0.
    status = run_cli(["budget", "status", name, "--json"], cli_env)
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["limit"] == allowance and row["reserved"] == 0
    assert fake_api.total_tokens <= row["spent"] <= allowance
    assert row["period_end"].endswith("+01:00")  # midnight in Berlin
    reset = run_cli(["budget", "reset", name], cli_env)
    assert reset.returncode == 0, reset.stderr
    assert f"reset shared allowance {name}" in reset.stderr
    assert name in (Path(cli_env["COPYDESK_STATE_DIR"]) / "logs" / "budget-resets.log").read_text()
    (after,) = json.loads(run_cli(["budget", "status", name, "--json"], cli_env).stdout)
    assert after["spent"] == 0


def test_shared_spec_without_a_prefect_server_exits_2(basic_spec: Path, cli_env: dict[str, str],
                                                      fake_api, tmp_path: Path) -> None:
    spec_path = shared_spec(basic_spec, "nobody")
    env = {k: v for k, v in cli_env.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile naming a server either
    result = run_cli(["run", str(spec_path), "--out", str(tmp_path / "o"), "-t", "x"], env)
    assert result.returncode == 2, result.stderr
    assert "copydesk server start" in result.stderr and "PREFECT_API_URL" in result.stderr
    assert fake_api.state.requests == []


def test_budget_status_of_an_unknown_allowance_exits_2(cli_env: dict[str, str]) -> None:
    result = run_cli(["budget", "status", "never-used-here"], cli_env)
    assert result.returncode == 2
    assert "never-used-here" in result.stderr


def test_plain_asyncio_run_refuses_a_shared_spec_before_any_call(basic_spec: Path, fake_api, tmp_path: Path) -> None:
    """run_batch has no Prefect server to hold the allowance: InputError (exit 2), no call made."""
    from copydesk.errors import InputError
    from copydesk.orchestration import run_batch
    from copydesk.request import RunRequest
    from copydesk.settings import Settings

    spec_path = shared_spec(basic_spec, "plain")
    request = RunRequest(spec_path=str(spec_path), topics=["x"], out_dir=str(tmp_path / "o"))
    settings = Settings(openai_base_url=fake_api.url, openai_api_key="sk-test")
    with pytest.raises(InputError, match="copydesk server start") as caught:
        asyncio.run(run_batch(request, settings))
    assert caught.value.exit_code == 2
    assert fake_api.state.requests == []


def test_budget_status_without_a_prefect_server_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "COPYDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), COPYDESK_STATE_DIR=str(tmp_path / "state"))
    result = run_cli(["budget", "status"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "copydesk server start" in result.stderr and "PREFECT_API_URL" in result.stderr


def test_reservations_of_cancelled_calls_are_settled_in_full_when_the_run_ends() -> None:
    async def scenario() -> Counters:
        store = MemoryStore()
        budget = SharedBudget(spec(1000), store)
        done = await budget.acquire(300)
        await budget.acquire(200)  # its call was cancelled: never settled by the gateway
        await budget.settle(done, 100)
        await budget.settle_open()
        counters = await store.read(budget.key())
        assert counters is not None
        return counters

    counters = asyncio.run(scenario())
    assert (counters.used, counters.reserved, counters.spent) == (300, 0, 300)


# --------------------------------------------------------------------------- a run killed mid-run: the journal


class Killed(BaseException):
    """Stands for SIGKILL at one point of a request: nothing after it runs."""


class DyingStore(MemoryStore):
    """A MemoryStore whose next increment or settle dies before or after the store applied it."""

    def __init__(self) -> None:
        super().__init__()
        self.die: str | None = None  # "increment-before", "increment-after", "settle-half"

    async def increment(self, counter: str, tokens: int) -> bool:
        if self.die == "increment-before":
            raise Killed
        taken = await super().increment(counter, tokens)
        if self.die == "increment-after":
            raise Killed
        return taken

    async def settle(self, counter: str, reserved: int, charged: int) -> None:
        if self.die == "settle-half":  # like the Prefect store: the unused part given back, then death
            c = self.counters[counter]
            c[1] -= reserved - charged
            raise Killed
        await super().settle(counter, reserved, charged)


def test_a_retried_run_settles_in_full_what_a_killed_run_left_open_and_frees_waiting_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal_path = tmp_path / "run" / "reservations.jsonl"

    async def scenario() -> None:
        store = MemoryStore()
        killed = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        done = await killed.acquire(300)
        await killed.settle(done, 100)
        await killed.acquire(250)  # in flight when the process is killed: never settled
        await killed.acquire(150)
        killed.journal.close()  # the process is gone (no settle_open: SIGKILL runs no clean-up)
        key = killed.key()
        assert await store.read(key) == Counters(1000, 500, 400)

        # Another run needs 600: it waits (up to MAX_WAIT) for the phantom calls in flight to settle
        # (100 spent + 400 reserved: 100 + 600 could fit).
        other = SharedBudget(spec(1000), store)
        waiting = asyncio.create_task(other.acquire(600))
        await asyncio.sleep(0.2)
        assert not waiting.done()

        retry = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        recovery = await retry.recover()
        assert (recovery.settled.count, recovery.settled.tokens, recovery.ambiguous.count) == (2, 400, 0)
        # Settled in full: the API may have billed those calls, so the allowance never undercounts.
        assert await store.read(key) == Counters(1000, 500, 0)
        # Now nothing in flight could make room: the waiting run is told at once, not after MAX_WAIT.
        with pytest.raises(BudgetExhausted, match="500 spent, 0 reserved"):
            await asyncio.wait_for(waiting, 5)
        # A second resume settles nothing again: no reservation is paid twice.
        again = await SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path)).recover()
        assert again.settled.count == 0
        assert await store.read(key) == Counters(1000, 500, 0, closed=True)  # closed by the refusal

    with caplog.at_level("WARNING", logger="copydesk.allowance"):
        asyncio.run(scenario())
    assert "settled 2 reservation(s) left open by an interrupted run: 400 tokens" in caplog.text


def test_a_reservation_whose_increment_never_reached_the_store_is_not_charged(tmp_path: Path) -> None:
    journal_path = tmp_path / "reservations.jsonl"

    async def scenario() -> None:
        store = DyingStore()
        killed = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        await killed.acquire(100)
        store.die = "increment-before"  # the journal says "open", the store never saw it
        with pytest.raises(Killed):
            await killed.acquire(200)
        killed.journal.close()
        store.die = None
        key = killed.key()
        assert await store.read(key) == Counters(1000, 100, 100)
        recovery = await SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path)).recover()
        # The taken one is settled; the ambiguous one is left alone, not counted as spent.
        assert (recovery.settled.tokens, recovery.ambiguous.count, recovery.ambiguous.tokens) == (100, 1, 200)
        assert await store.read(key) == Counters(1000, 100, 0)
        # Reported once.
        assert (await SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path)).recover()).ambiguous.count == 0

    asyncio.run(scenario())


def test_an_increment_that_landed_before_the_kill_stays_reserved_the_documented_limit(tmp_path: Path) -> None:
    journal_path = tmp_path / "reservations.jsonl"

    async def scenario() -> None:
        store = DyingStore()
        killed = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        store.die = "increment-after"
        with pytest.raises(Killed):
            await killed.acquire(200)
        killed.journal.close()
        store.die = None
        recovery = await SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path)).recover()
        assert (recovery.settled.count, recovery.ambiguous.count) == (0, 1)
        # Still counted as used (reserved): the safe side; `copydesk budget reset` clears it.
        assert await store.read(killed.key()) == Counters(1000, 200, 200)

    asyncio.run(scenario())


def test_a_settlement_cut_in_half_is_never_replayed(tmp_path: Path) -> None:
    journal_path = tmp_path / "reservations.jsonl"

    async def scenario() -> None:
        store = DyingStore()
        killed = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        first = await killed.acquire(600)
        store.die = "settle-half"
        with pytest.raises(Killed):
            await killed.settle(first, 100)  # 500 given back, then death before `spent` moved
        killed.journal.close()
        store.die = None
        key = killed.key()
        before = await store.read(key)
        assert before is not None and before.used == 100
        recovery = await SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path)).recover()
        # Replaying it would give back 500 more: room another run may hold, an overshoot.
        assert (recovery.settled.count, recovery.ambiguous.count) == (0, 1)
        assert await store.read(key) == before

    asyncio.run(scenario())


def test_a_journal_line_cut_by_a_kill_is_skipped_and_the_next_starts_a_line_of_its_own(tmp_path: Path) -> None:
    journal_path = tmp_path / "reservations.jsonl"

    async def scenario() -> None:
        store = MemoryStore()
        killed = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        await killed.acquire(100)
        killed.journal.close()
        with journal_path.open("a", encoding="utf-8") as handle:
            handle.write('{"id":"cut","key":"x","tok')  # the kill came in the middle of a write
        retry = SharedBudget(spec(1000), store, journal=ReservationJournal(journal_path))
        assert (await retry.recover()).settled.tokens == 100
        await retry.settle(await retry.acquire(50), 20)
        retry.journal.close()
        lines = journal_path.read_text(encoding="utf-8").splitlines()
        assert sum(1 for line in lines if line.startswith('{"id":"cut"')) == 1
        assert all(json.loads(line) for line in lines if not line.startswith('{"id":"cut"'))
        assert await store.read(retry.key()) == Counters(1000, 120, 0)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the editor form's note


def test_the_form_note_says_what_is_left_of_each_allowance_and_replaces_an_older_note(basic_spec: Path) -> None:
    from copydesk.allowance import AllowanceStatus
    from copydesk.form import ALLOWANCE_NOTE_HEADING, allowance_note, with_allowance_note
    from copydesk.spec import SharedBudgetSpec, load_spec

    base = load_spec(basic_spec)

    def naming(pipeline: str, allowance: str):
        shared = SharedBudgetSpec(name=allowance)
        return base.model_copy(update={"name": pipeline, "budget": base.budget.model_copy(update={"shared": shared})})

    specs = [naming("blog", "team"), naming("news", "team"), naming("docs", "docs-team"), naming("misc", "nobody"),
             base]
    stale = naming("old", "docs-team")  # repeats a max_tokens the operator's record does not have
    stale = stale.model_copy(update={"budget": stale.budget.model_copy(update={
        "shared": SharedBudgetSpec(name="docs-team", max_tokens=100)})})
    now = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))  # already 1 Dec in Berlin
    held = AllowanceStatus("team", "day", "Europe/Berlin", "2026-12-01", 5000, 1000, 200, None)
    docs = AllowanceStatus("docs-team", "month", "UTC", "2026-11", 900, 0, 0, None)
    old_scheme = AllowanceStatus("nobody", "day", "UTC", "2026-11-30", 100, 0, 0, None, recorded=False)
    note = allowance_note(specs, [held, docs, old_scheme], now)
    assert note is not None and note.startswith(f"{ALLOWANCE_NOTE_HEADING} (as of 2026-11-30 23:30 UTC")
    assert ("- team (blog, news): 3,800 of 5,000 tokens left today (1,000 spent, 200 reserved by runs in "
            "progress); it starts again at 2026-12-02 00:00 Europe/Berlin.") in note
    assert "- docs-team (docs): 900 of 900 tokens left this month (nothing used yet)" in note
    assert "- nobody (misc): not set up by the operator yet; a run naming it stops before any call." in note
    assert "copydesk" not in note and "max_total_tokens" not in note  # an editor's words
    assert "Runs of" not in note
    assert ("- docs-team (docs, old): 900 of 900 tokens left this month (nothing used yet); it starts again at "
            "2026-12-01 00:00 UTC. Runs of old stop before any call: the spec disagrees with the allowance."
            ) in allowance_note([*specs, stale], [held, docs], now)

    yesterday = AllowanceStatus("team", "day", "Europe/Berlin", "2026-11-30", 5000, 5000, 0, None, closed=True)
    assert "- team (blog, news): 5,000 of 5,000 tokens left today (nothing used yet)" in \
        allowance_note(specs, [yesterday], now)  # another period's counter: all is left
    spent = AllowanceStatus("team", "day", "Europe/Berlin", "2026-12-01", 5000, 4200, 0, None, closed=True)
    assert "- team (blog, news): spent today: 4,200 of 5,000 tokens used" in allowance_note(specs, [spent], now)
    assert allowance_note([base], [held], now) is None

    described = with_allowance_note("Write articles on demand.", note)
    again = with_allowance_note(described, allowance_note(specs, [spent], now))
    assert again.startswith("Write articles on demand.\n\n" + ALLOWANCE_NOTE_HEADING)
    assert again.count(ALLOWANCE_NOTE_HEADING) == 1 and "3,800" not in again
    assert with_allowance_note(again, None) == "Write articles on demand."


def test_copydesk_serve_writes_what_is_left_into_the_editor_form(basic_spec: Path, prefect_server: str) -> None:
    """build_deployments (what `copydesk serve` registers) reads the allowance from the Prefect
    server: the editor's description and its `budget` help say what is left."""
    from copydesk.settings import Settings
    from copydesk_flows.allowance import PrefectAllowanceStore
    from copydesk_flows.deployments import build_deployments

    name = f"form-{uuid.uuid4().hex[:8]}"
    spec_path = shared_spec(basic_spec, name)
    allowance = Allowance(name=name, max_tokens=7000, period="day", timezone="Europe/Berlin")

    async def spend() -> None:
        async with PrefectAllowanceStore() as store:
            assert await store.create_allowance(allowance)
            budget = SharedBudget(allowance, store)
            await budget.settle(await budget.acquire(1500), 1234)

    asyncio.run(spend())
    plan = build_deployments(Settings(pipelines_dir=spec_path.parent))
    forms = {deployment.name: deployment for deployment in plan.deployments}
    for editor, opening in ((forms["editor"], "Write articles with any served pipeline"),
                            (forms["basic"], "Articles from the basic pipeline")):  # the pipeline's own form too
        assert f"- {name} (basic): 5,766 of 7,000 tokens left today (1,234 spent)" in editor.description
        assert editor.description.startswith(opening)
        budget_help = editor._parameter_openapi_schema.properties["budget"]["description"]
        assert budget_help.startswith("The most tokens this run may use") and f"- {name} (basic): 5,766" in budget_help
    assert "at most 60,000 tokens" in forms["basic"].description
