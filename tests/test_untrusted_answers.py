"""An API server is untrusted (issue 20, findings 8 and 9), through the real `copydesk run`
against the fake APIs over loopback: batch and file ids are checked before they go into a URL
and a failed round cancels the batch it created; an answer too large or too deeply nested is
one failed call or line with its reason, not a failed run; a run file nested too deep stops a
resume with exit 2 naming the file and line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from fake_openai import Fault, FakeOpenAI


def _rows(out: Path) -> pd.DataFrame:
    (csv,) = out.glob("*/articles.csv")
    return pd.read_csv(csv, encoding="utf-8-sig", keep_default_na=False)


# ------------------------------------------------------------------------------ finding 8: ids


@pytest.mark.parametrize("bad_id", ["../../../../evil/steal", "batch-1\r\nX-Evil: 1"], ids=["traversal", "control"])
def test_batch_ids_that_are_not_ids_never_reach_a_url(basic_spec, batch_env, batch_api, tmp_path, bad_id):
    batch_api.batch_ids = [bad_id] * 10
    out = tmp_path / "out"
    result = run_cli(["run", str(basic_spec), "--out", str(out), "--mode", "batch", "-t", "alpha"], batch_env)
    assert result.returncode in (0, 1), result.stderr
    assert batch_api.created, "the batch was created"
    sent = [path for _method, path in batch_api.paths]
    assert not any("evil" in path.lower() for path in sent), sent
    assert all(path.startswith("/v1/") for path in sent), sent
    assert not batch_api.polls and not batch_api.cancels  # nothing ever used the id
    (reason,) = _rows(out)["reasons"]
    assert "not an id" in reason
    assert "cancel it yourself" in result.stderr  # the batch made from our file may run: said so


def test_a_round_that_fails_after_its_batch_was_created_cancels_it(basic_spec, batch_env, batch_api, tmp_path):
    batch_api.hold.set()  # the batch stays in progress
    batch_api.poll_faults = ["", "", "deep"]  # the third poll answers with JSON nested 100,000 deep
    out = tmp_path / "out"
    result = run_cli(["run", str(basic_spec), "--out", str(out), "--mode", "batch", "-t", "alpha"], batch_env)
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    (batch,) = batch_api.created
    assert batch_api.cancels == [batch["id"]], result.stderr
    assert f"batch {batch['id']} cancelled" in result.stderr
    (reason,) = _rows(out)["reasons"]
    assert "nested more than 64 levels" in reason


# ------------------------------------------------------------------------------ finding 9: size and depth


def test_huge_and_deep_answers_fail_one_call_each_not_the_run(basic_spec, cli_env, fake_api, tmp_path):
    fake_api.deep_levels = 10_000  # 20 kB: within the size cap
    fake_api.inject(Fault("huge"), Fault("deep"))  # the first two calls: two articles' titles
    env = {**cli_env, "COPYDESK_MAX_ANSWER_BYTES": "200000", "COPYDESK_MAX_ATTEMPTS": "2"}
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_cli(["run", str(basic_spec), "--out", str(out), "-t", "alpha", "-t", "beta", "-t", "gamma",
                      "--concurrency", "1"], env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 120
    assert "Traceback" not in result.stderr
    frame = _rows(out)
    reasons = " ".join(frame["reasons"])
    assert "larger than 200,000 bytes (COPYDESK_MAX_ANSWER_BYTES)" in reasons
    assert "nested more than 64 levels" in reasons
    assert (frame["status"] == "incomplete").sum() == 2
    assert (frame["status"] != "incomplete").sum() == 1  # the third article went on
    assert len(fake_api.state.requests) > 2  # neither was retried, and the run went on


def test_huge_and_deep_batch_lines_fail_alone(basic_spec, batch_env, batch_api, tmp_path):
    batch_api.line_faults = {"a1-title-": ["huge"], "a2-title-": ["deep"]}
    batch_api.deep_levels = 10_000  # 20 kB: within the size cap
    env = {**batch_env, "COPYDESK_MAX_ANSWER_BYTES": "200000"}
    out = tmp_path / "out"
    result = run_cli(["run", str(basic_spec), "--out", str(out), "--mode", "batch", "-t", "alpha", "-t", "beta",
                      "-t", "gamma"], env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    frame = _rows(out).set_index("topic")
    assert "larger than 200,000 bytes" in frame.loc["alpha", "reasons"]
    assert "nested more than 64 levels" in frame.loc["beta", "reasons"]
    assert frame.loc["gamma", "status"] != "incomplete"
    assert [len(upload) for upload in batch_api.uploads][0] == 3  # one batch for the titles, not one per line


@pytest.mark.parametrize("damaged", ["manifest.json", "calls.jsonl"])
def test_a_run_file_nested_too_deep_stops_a_resume_with_exit_2(basic_spec, cli_env, tmp_path, damaged):
    out = tmp_path / "out"
    args = ["run", str(basic_spec), "--out", str(out), "-t", "alpha", "--run-id", "deep"]
    assert run_cli(args, cli_env).returncode == 0
    path = out / "deep" / damaged
    deep = "[" * 200_000 + "]" * 200_000
    if damaged == "manifest.json":
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps(manifest)[:-1] + f', "x": {deep}}}')
        where = f"{path}"
    else:
        lines = path.read_text().splitlines()
        lines.insert(1, f'{{"key": "k", "x": {deep}}}')
        path.write_text("\n".join(lines) + "\n")
        where = f"{path}, line 2"
    result = run_cli(args, cli_env)
    assert result.returncode == 2, result.stderr
    assert "RecursionError" not in result.stderr, result.stderr
    assert where in result.stderr.replace("\n", "")
    assert "nested more than 64 levels" in result.stderr.replace("\n", "")
