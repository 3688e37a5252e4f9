"""A shared allowance belongs to the operator (issue 20, findings 5 and 6), through the real
`copydesk` command and the real Prefect server.

- `copydesk budget create|set` record it; bad input exits 2 naming the option.
- A spec only names it: a spec whose max_tokens, period or timezone disagree with the record
  exits 2 naming both values and changes nothing, also while another team's run is in flight,
  also when an editor picks that pipeline; no run creates, raises, lowers or re-opens it.
- Specs of the older scheme: the run exits 2 with the exact `copydesk budget create` command,
  which adopts what the server already counted.
- A resumed run trusts no line of reservations.jsonl that is not its own allowance's, sane.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from fake_openai import default_reply

from conftest import ROOT, run_cli
from copydesk.allowance import Allowance, ReservationJournal, SharedBudget, counter_name, period_key
from test_shared_allowance import MemoryStore


def named(basic_spec: Path, pipeline: str, allowance: str, extra: str = "") -> Path:
    """A copy of the basic spec, called `pipeline`, naming shared allowance `allowance` (with
    `extra` lines under budget.shared), next to basic.yaml."""
    text = basic_spec.read_text(encoding="utf-8").replace("name: basic\n", f"name: {pipeline}\n", 1).replace(
        "  max_total_tokens: 60000\n", f"  max_total_tokens: 60000\n  shared:\n    name: {allowance}\n{extra}")
    path = basic_spec.with_name(f"{pipeline}.yaml")
    path.write_text(text, encoding="utf-8")
    return path


def budget(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["budget", *args], env)


def status(env: dict[str, str], name: str) -> dict:
    shown = budget(env, "status", name, "--json")
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    return row


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ the operator's commands


def test_budget_create_and_set_refuse_bad_input_with_exit_2(cli_env: dict[str, str]) -> None:
    name = unique("opts")
    refusals = [
        (["create", name, "--max-tokens", "1000", "--period", "day", "--timezone", "Mars/Olympus"],
         "--timezone 'Mars/Olympus': not a known IANA time zone"),
        (["create", name, "--max-tokens", "1000", "--period", "hour"],
         "--period 'hour': one of day, week, month, total"),
        (["create", name, "--max-tokens", "0", "--period", "day"], "--max-tokens 0: a whole number of tokens from 1"),
        (["create", name, "--max-tokens", "-5", "--period", "day"], "--max-tokens -5"),
        (["create", "Content Team", "--max-tokens", "5", "--period", "day"], "NAME 'Content Team'"),
        (["create", name, "--period", "day"], "--max-tokens"),  # required
        (["set", name, "--max-tokens", "5"], f"no shared allowance named '{name}' is recorded"),
    ]
    for args, message in refusals:
        result = budget(cli_env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
    assert budget(cli_env, "status", name).returncode == 2  # nothing was recorded

    made = budget(cli_env, "create", name, "--max-tokens", "1000", "--period", "week", "--timezone", "Asia/Shanghai")
    assert made.returncode == 0, made.stderr
    assert f"created shared allowance {name}" in made.stderr and "1,000 tokens a week (Asia/Shanghai)" in made.stderr
    again = budget(cli_env, "create", name, "--max-tokens", "5", "--period", "day")
    assert again.returncode == 2 and "is recorded already (1,000 tokens a week (Asia/Shanghai))" in again.stderr
    for args, message in [(["set", name], "nothing to change"), (["set", "../variables"], "NAME '../variables'"),
                          (["set", name, "--max-tokens", "0"], "--max-tokens 0"),
                          (["set", name, "--timezone", "Nowhere/Else"], "--timezone 'Nowhere/Else'"),
                          (["set", name, "--period", "fortnight"], "--period 'fortnight'")]:
        result = budget(cli_env, *args)
        assert result.returncode == 2 and message in " ".join(result.stderr.split()), (args, result.stderr)
    row = status(cli_env, name)
    assert (row["limit"], row["period"], row["timezone"], row["recorded"]) == (1000, "week", "Asia/Shanghai", True)
    changed = budget(cli_env, "set", name, "--max-tokens", "2500")
    assert changed.returncode == 0, changed.stderr
    assert "1,000 tokens a week (Asia/Shanghai) -> 2,500 tokens a week (Asia/Shanghai)" in changed.stderr
    assert status(cli_env, name)["limit"] == 2500
    log = (Path(cli_env["COPYDESK_STATE_DIR"]) / "logs" / "budget-changes.log").read_text(encoding="utf-8")
    assert f"created shared allowance {name}" in log and f"changed shared allowance {name}" in log


# ------------------------------------------------------------------ finding 5: a spec only names it


EDITOR = (
    "import asyncio, sys\n"
    "from copydesk_flows.editor import editor\n"
    "try:\n"
    "    asyncio.run(editor(pipeline=sys.argv[1], topics=['Editor topic']))\n"
    "except Exception as exc:\n"
    "    print(f'{type(exc).__name__}: {exc}', file=sys.stderr)\n"
    "    sys.exit(2)\n"
)


def test_another_spec_cannot_change_an_allowance_while_a_run_is_in_flight(
    basic_spec: Path, cli_env: dict[str, str], fake_api, tmp_path: Path
) -> None:
    """Team B's spec says max_tokens 100 (or another period, or timezone) for team A's allowance:
    B's run and an editor picking B's pipeline exit 2 naming both values, before any call; A's run,
    in flight meanwhile, finishes every article; the recorded allowance and its counter are as
    the operator left them."""
    team = unique("content-team")
    made = budget(cli_env, "create", team, "--max-tokens", "20000", "--period", "day", "--timezone", "Europe/Berlin")
    assert made.returncode == 0, made.stderr
    recorded = status(cli_env, team)
    spec_a = named(basic_spec, "team-a", team, "    max_tokens: 20000\n")  # repeating the record is allowed
    spec_b = named(basic_spec, "team-b", team, "    max_tokens: 100\n")
    week_b = named(basic_spec, "team-b-week", team, "    period: week\n")
    zone_b = named(basic_spec, "team-b-zone", team, "    timezone: Asia/Shanghai\n")

    gate = threading.Event()  # A's calls wait at the API until B and the editor are done
    fake_api.reply = lambda body: (gate.wait(120), default_reply(body))[1]
    exe = Path(sys.executable).with_name("copydesk")
    run_a = subprocess.Popen([str(exe), "run", str(spec_a), "--out", str(tmp_path / "a"), "-t", "A one", "-t",
                              "A two", "-t", "A three"], env=cli_env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # A's first calls are in flight
            if fake_api.state.requests or run_a.poll() is not None:
                break
            threading.Event().wait(0.1)
        assert run_a.poll() is None and fake_api.state.requests
        in_flight = status(cli_env, team)
        assert in_flight["reserved"] > 0 and in_flight["limit"] == 20000

        env = {**cli_env, "COPYDESK_PIPELINES_DIR": str(basic_spec.parent),
               "COPYDESK_OUTPUT_DIR": str(tmp_path / "editor")}
        editor = subprocess.Popen([sys.executable, "-c", EDITOR, "team-b"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        expected = {spec_b: ("budget.shared.max_tokens is 100", "has max_tokens 20,000"),
                    week_b: ("budget.shared.period is week", "has period day"),
                    zone_b: ("budget.shared.timezone is Asia/Shanghai", "has timezone Europe/Berlin")}
        for spec, (mine, theirs) in expected.items():
            result = run_cli(["run", str(spec), "--out", str(tmp_path / "b"), "-t", "B topic"], cli_env)
            said = " ".join(result.stderr.split())
            assert result.returncode == 2, result.stderr[-3000:]
            assert mine in said and theirs in said and str(spec) in said, said
        assert not (tmp_path / "b").exists()  # refused before a flow run or a run folder existed
        _, editor_err = editor.communicate(timeout=300)
        assert editor.returncode == 2, editor_err[-3000:]
        said = " ".join(editor_err.split())
        assert "budget.shared.max_tokens is 100" in said and "has max_tokens 20,000" in said, said[-3000:]
        assert run_a.poll() is None  # all of that while A's run was in flight
        during = status(cli_env, team)
        assert (during["limit"], during["closed"], during["changed"]) == (20000, False, recorded["changed"])
    finally:
        gate.set()
    _, a_err = run_a.communicate(timeout=300)
    assert run_a.returncode == 0, a_err[-3000:]
    rows = next((tmp_path / "a").glob("*/articles.csv")).read_text(encoding="utf-8-sig")
    assert rows.count("incomplete") == 0 and all(f"A {n}" in rows for n in ("one", "two", "three"))
    assert not any("B topic" in json.dumps(r) or "Editor topic" in json.dumps(r) for r in fake_api.state.requests)
    after = status(cli_env, team)
    assert (after["limit"], after["closed"], after["changed"]) == (20000, False, recorded["changed"])
    assert after["reserved"] == 0 and 0 < after["spent"] <= 20000
    everything = json.loads(budget(cli_env, "status", "--json").stdout)
    assert [(r["period"], r["timezone"]) for r in everything if r["name"] == team] == [("day", "Europe/Berlin")]


def test_runs_never_create_raise_lower_or_reopen_an_allowance(
    basic_spec: Path, cli_env: dict[str, str], fake_api, tmp_path: Path
) -> None:
    team = unique("small")
    spec = named(basic_spec, "small", team, "    max_tokens: 300\n    period: day\n    timezone: UTC\n")
    assert budget(cli_env, "create", team, "--max-tokens", "300", "--period", "day").returncode == 0
    first = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "-t", "One", "-t", "Two"], cli_env)
    assert first.returncode == 3, first.stderr[-3000:]
    spent = status(cli_env, team)
    assert spent["closed"] and spent["limit"] == 300

    calls = len(fake_api.state.requests)  # the spec agrees with the record: its next run re-opens nothing
    again = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "-t", "Three"], cli_env)
    assert again.returncode == 3 and f"shared allowance {team}" in again.stderr, again.stderr[-3000:]
    assert len(fake_api.state.requests) == calls
    assert status(cli_env, team) == spent

    unknown = unique("never-created")
    missing = run_cli(["run", str(named(basic_spec, "lost", unknown)), "--out", str(tmp_path / "o"), "-t", "x"],
                      cli_env)
    assert missing.returncode == 2 and f"no shared allowance named {unknown} is recorded" in missing.stderr
    assert budget(cli_env, "status", unknown).returncode == 2  # the run created nothing

    raised = budget(cli_env, "set", team, "--max-tokens", "100000")  # only the operator re-opens it
    assert raised.returncode == 0, raised.stderr
    opened = status(cli_env, team)
    assert (opened["limit"], opened["closed"], opened["spent"]) == (100000, False, spent["spent"])
    stale = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "-t", "Four"], cli_env)
    said = " ".join(stale.stderr.split())
    assert stale.returncode == 2 and "budget.shared.max_tokens is 300" in said and "max_tokens 100,000" in said
    name_only = run_cli(["run", str(named(basic_spec, "small-2", team)), "--out", str(tmp_path / "o"), "-t", "Five"],
                        cli_env)
    assert name_only.returncode == 0, name_only.stderr[-3000:]
    assert status(cli_env, team)["limit"] == 100000


def test_a_spec_of_the_older_scheme_gets_the_create_command_which_adopts_what_was_spent(
    basic_spec: Path, cli_env: dict[str, str], fake_api, tmp_path: Path
) -> None:
    from copydesk_flows.allowance import PrefectAllowanceStore

    team = unique("older")
    spec = named(basic_spec, "older", team, "    max_tokens: 5000\n    period: day\n    timezone: Europe/Berlin\n")
    counter = counter_name(team, "Europe/Berlin", period_key("day", "Europe/Berlin"))

    async def older_scheme_run() -> None:  # what a run of the older scheme left: counters, no record
        async with PrefectAllowanceStore() as store:
            await store.set_limit(counter, 5000)
            assert await store.increment(counter, 600)
            await store.settle(counter, 600, 550)

    asyncio.run(older_scheme_run())
    before = status(cli_env, team)
    assert (before["recorded"], before["spent"], before["limit"]) == (False, 550, 5000)

    refused = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "-t", "x"], cli_env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    said = " ".join(refused.stderr.split())
    command = f"copydesk budget create {team} --max-tokens 5000 --period day --timezone Europe/Berlin"
    assert f"`{command}`" in said, said
    assert fake_api.state.requests == []

    created = budget(cli_env, *shlex.split(command)[2:])  # the command exactly as the message gave it
    assert created.returncode == 0, created.stderr
    assert "adopted what the server already counted for it this period: 550 spent" in created.stderr
    adopted = status(cli_env, team)
    assert (adopted["recorded"], adopted["spent"], adopted["limit"]) == (True, 550, 5000)
    ran = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "-t", "x"], cli_env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert status(cli_env, team)["spent"] == 550 + fake_api.total_tokens


# ------------------------------------------------------------------ finding 6: reservations.jsonl


def forged_lines(own: str, foreign: str) -> list[str]:
    """Journal lines a resumed run must refuse, each a reservation left "taken" and unsettled."""
    lines = ["this is not JSON"]
    for rid, key, tokens in [("f-foreign", foreign, 1_000_000_000), ("f-negative", own, -1_000_000_000),
                             ("f-huge", own, 999_999), ("f-text", own, "12"), ("f-float", own, 1.5),
                             ("f-later", own.rsplit(":", 1)[0] + ":9999-12-31", 5)]:
        lines.append(json.dumps({"id": rid, "key": key, "tokens": tokens, "state": "open"}))
        lines.append(json.dumps({"id": rid, "state": "taken"}))
    return lines


def test_a_resumed_run_refuses_journal_lines_of_another_allowance_or_with_bad_counts(
    basic_spec: Path, cli_env: dict[str, str], fake_api, tmp_path: Path
) -> None:
    own, other = unique("own-team"), unique("other-team")
    for name in (own, other):
        assert budget(cli_env, "create", name, "--max-tokens", "1000000", "--period", "day").returncode == 0
    spec = named(basic_spec, "journal", own)
    other_spec = named(basic_spec, "other", other)
    assert run_cli(["run", str(other_spec), "--out", str(tmp_path / "x"), "-t", "Theirs"], cli_env).returncode == 0
    first = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "--run-id", "forged", "-t", "Ours"], cli_env)
    assert first.returncode == 0, first.stderr[-3000:]
    own_before, other_before = status(cli_env, own), status(cli_env, other)
    assert own_before["spent"] > 0 and other_before["spent"] > 0

    journal = tmp_path / "o" / "forged" / "reservations.jsonl"
    start = len(journal.read_text(encoding="utf-8").splitlines())
    key = counter_name(own, "UTC", period_key("day", "UTC"))
    with journal.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(forged_lines(key, counter_name(other, "UTC", period_key("day", "UTC")))) + "\n")

    resumed = run_cli(["run", str(spec), "--out", str(tmp_path / "o"), "--run-id", "forged", "-t", "Ours"], cli_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = " ".join(resumed.stderr.split())
    for line, why in [(start + 1, "not a JSON record"), (start + 2, f"names the counter 'copydesk-budget:{other}:UTC:"),
                      (start + 4, "a negative token count"), (start + 6, "999,999 tokens, more than"),
                      (start + 8, "without a counter name and a whole number"), (start + 12, "names the counter")]:
        assert f"{journal} line {line}: refused, not settled against shared allowance {own}" in said, (line, said)
        assert why in said.split(f"{journal} line {line}: ", 1)[1][:300], (line, why)
    assert status(cli_env, other) == other_before  # 1,000,000,000 tokens were not settled against it
    assert status(cli_env, own)["spent"] == own_before["spent"]


def test_recovery_settles_its_own_sane_lines_and_refuses_the_rest(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The same rule in one process: a genuine reservation left open is settled beside forged ones."""
    journal_path = tmp_path / "reservations.jsonl"
    own = Allowance(name="team", max_tokens=5000, period="day", timezone="UTC")
    other = Allowance(name="other", max_tokens=5000, period="day", timezone="UTC")

    async def scenario() -> None:
        store = MemoryStore(own, other)
        killed = SharedBudget(own, store, journal=ReservationJournal(journal_path))
        await killed.acquire(300)  # left open by a killed process
        killed.journal.close()
        theirs = SharedBudget(other, store)
        await theirs.settle(await theirs.acquire(600), 550)
        with journal_path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(forged_lines(killed.key(), theirs.key())) + "\n")
        recovery = await SharedBudget(own, store, journal=ReservationJournal(journal_path)).recover()
        # refused: 3 lines that are not sane records and the 2 'taken' lines they leave orphaned,
        # then the foreign, the negative, the huge and the later-period reservation
        assert (recovery.settled.count, recovery.settled.tokens, recovery.refused) == (1, 300, 9)
        assert (await store.read(theirs.key())).spent == 550
        assert (await store.read(killed.key())).spent == 300

    with caplog.at_level("WARNING", logger="copydesk.allowance"):
        asyncio.run(scenario())
    assert re.search(rf"{re.escape(str(journal_path))} line 3: refused.*not a JSON record", caplog.text)
    assert f"{journal_path} line 4: refused, not settled against shared allowance team: it names the counter " \
           "'copydesk-budget:other:UTC:" in caplog.text
    assert "line 6: refused, not settled against shared allowance team: a negative token count (-1,000,000,000)" \
        in caplog.text
