"""`copydesk run --mode batch` and `copydesk plan --mode batch`, the real command on a real
Prefect server, against the fake Batch API (tests/fake_batch.py) over loopback: a run
SIGKILLed while its batch is in progress picks that batch up again instead of paying for
a second one; a server without a Batch API exits 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli
from fake_batch import FakeBatchAPI


def _args(spec: Path, out: Path, topics: list[str], *extra: str) -> list[str]:
    args = ["run", str(spec), "--out", str(out), *extra]
    for topic in topics:
        args += ["-t", topic]
    return args


def test_run_mode_batch_end_to_end(basic_spec, batch_env, batch_api, tmp_path):
    topics = ["unit tests", "增长黑客"]
    result = run_cli(_args(basic_spec, tmp_path / "out", topics, "--mode", "batch", "--run-id", "b1"), batch_env)
    assert result.returncode == 0, result.stderr
    assert batch_api.state.requests == []  # no direct chat call
    assert [len(u) for u in batch_api.uploads] == [2, 2, 8]
    for batch in batch_api.created:  # the terminal showed every batch's id, status and counts
        assert f"batch {batch['id']} (" in result.stderr
    assert "completed, 8/8 done, 0 failed" in result.stderr
    summary = json.loads((tmp_path / "out" / "b1" / "summary.json").read_text())
    assert summary["mode"] == "batch" and len(summary["batches"]) == 3
    frame = pd.read_csv(tmp_path / "out" / "b1" / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert frame["total_tokens"].sum() == sum(u["total_tokens"] for u in batch_api.usage_by_custom_id.values())
    assert "cached_prompt_tokens" in frame.columns
    # the flow run left one artifact per batch (its latest status and counts)
    import httpx

    answer = httpx.post(f"{batch_env['PREFECT_API_URL']}/artifacts/filter",
                        json={"artifacts": {"key": {"like_": "basic-batch-"}}}, timeout=30)
    keys = {a["key"] for a in answer.json()}
    assert {f"basic-batch-{b['id']}" for b in batch_api.created} <= keys


def test_a_run_killed_while_its_batch_is_in_progress_reattaches_to_it(basic_spec, batch_env, batch_api, tmp_path):
    topics = ["alpha", "beta", "gamma"]
    args = _args(basic_spec, tmp_path / "out", topics, "--mode", "batch", "--run-id", "killed")
    batch_api.hold.set()  # every batch stays in_progress
    exe = Path(sys.executable).with_name("copydesk")
    proc = subprocess.Popen([str(exe), *args], env=batch_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if batch_api.created and batch_api.batches[batch_api.created[0]["id"]]["status"] == "in_progress" \
                    and batch_api.polls.count(batch_api.created[0]["id"]) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the batch never went in progress")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first = batch_api.created[0]["id"]
    assert len(batch_api.created) == 1 and batch_api.cancels == []  # SIGKILL: nothing could cancel it
    records = [json.loads(line) for line in (tmp_path / "out" / "killed" / "calls.jsonl").read_text().splitlines()
               if line.strip()]
    assert any(r.get("batch", {}).get("batch_id") == first for r in records)  # recorded the moment it existed

    batch_api.hold.clear()
    polls_before = batch_api.polls.count(first)
    result = run_cli(args, batch_env)
    assert result.returncode == 0, result.stderr
    assert batch_api.polls.count(first) > polls_before  # the re-run followed the batch of the killed run
    titles = [b for b in batch_api.created if any("-title-" in line["custom_id"]
                                                  for line in batch_api._lines(b["input_file_id"]))]
    assert [b["id"] for b in titles] == [first]  # no second batch for the same requests
    ids = [line["custom_id"] for line in batch_api.batch_lines]
    assert len(ids) == len(set(ids)) == 3 + 3 + 12  # every request submitted exactly once
    assert batch_api.state.requests == []
    frame = pd.read_csv(tmp_path / "out" / "killed" / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert set(frame["status"]) == {"published"}
    assert frame["total_tokens"].sum() == sum(u["total_tokens"] for u in batch_api.usage_by_custom_id.values())


def test_mode_batch_without_a_batch_api_exits_2_and_auto_falls_back(basic_spec, cli_env, tmp_path):
    with FakeBatchAPI(batch_api=False) as plain:
        env = {**cli_env, "OPENAI_BASE_URL": plain.url}
        result = run_cli(_args(basic_spec, tmp_path / "out", ["one"], "--mode", "batch"), env)
        assert result.returncode == 2, result.stderr
        assert "mode: batch" in result.stderr and plain.url in result.stderr.replace("\n", "")
        assert "Traceback" not in result.stderr  # Prefect's traceback of it no longer comes first
        assert result.stderr.count("error: mode: batch") == 1
        assert plain.state.requests == []
        result = run_cli(_args(basic_spec, tmp_path / "out", ["one"], "--mode", "auto", "-v"), env)
        assert result.returncode == 0, result.stderr
        assert "no Batch API" in result.stderr and "realtime" in result.stderr
        assert len(plain.state.requests) >= 3


def test_plan_mode_batch_shows_batch_prices_and_the_budget(basic_spec, cli_env, tmp_path):
    targs = ["plan", str(basic_spec), "-t", "alpha", "-t", "beta", "--json"]
    realtime = json.loads(run_cli(targs, cli_env).stdout)
    batch = json.loads(run_cli([*targs, "--mode", "batch"], cli_env).stdout)
    assert batch["mode"] == "batch" and realtime["mode"] == "realtime"
    assert batch["worst_case_total_tokens"] == realtime["worst_case_total_tokens"]
    assert batch["est_cost_usd"] == pytest.approx(realtime["est_cost_usd"] / 2, rel=1e-6)
    roomy = json.loads(run_cli([*targs, "--mode", "batch", "--budget", "10000000"], cli_env).stdout)
    assert {s["batch"] for s in roomy["stages"].values()} == {"fits"}
    assert {s["batch"] for s in realtime["stages"].values()} == {None}
    tight = json.loads(run_cli([*targs, "--mode", "batch", "--budget", "3000"], cli_env).stdout)
    assert tight["stages"]["title"]["batch"] == "fits"
    assert tight["stages"]["expansion"]["batch"] == "refused"  # the outlines' worst case leaves no room
    tiny = json.loads(run_cli([*targs, "--mode", "batch", "--budget", "300"], cli_env).stdout)
    assert tiny["stages"]["title"]["batch"] == "split"  # one title's bound fits, both do not
    table = run_cli(targs[:-1] + ["--mode", "batch"], cli_env)
    assert table.returncode == 0 and "batch prices" in table.stdout and "fits" in table.stdout


def test_ctrl_c_cancels_the_batch_in_flight_and_says_so(basic_spec, batch_env, batch_api, tmp_path):
    args = _args(basic_spec, tmp_path / "out", ["alpha", "beta"], "--mode", "batch", "--run-id", "interrupted")
    batch_api.hold.set()
    exe = Path(sys.executable).with_name("copydesk")
    # Ctrl-C as a terminal gives it: a test run started as a background job (`cmd &` in a script)
    # passes SIGINT on ignored, and a program started with SIGINT ignored rightly keeps ignoring it
    proc = subprocess.Popen([str(exe), *args], env=batch_env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (batch_api.created and batch_api.polls.count(batch_api.created[0]["id"]) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    first = batch_api.created[0]["id"]
    assert batch_api.cancels == [first]
    assert f"batch {first}: cancelled" in stderr, stderr
    assert proc.returncode != 0
    # the re-run collects what the cancelled batch finished and sends only the rest
    batch_api.hold.clear()
    batch_api.cancel_completed = 1
    result = run_cli(args, batch_env)
    assert result.returncode == 0, result.stderr
    ids = [line["custom_id"] for line in batch_api.batch_lines if "-title-" in line["custom_id"]]
    assert len(ids) == 3  # two in the cancelled batch; the one it did not finish, once more
