"""The real `copydesk` command against a fake OpenAI-compatible server over loopback,
running as a Prefect flow on a real Prefect server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from prometheus_client.parser import text_string_to_metric_families
from conftest import ROOT, SECRET_KEY, run_cli
from fake_openai import Fault, FakeOpenAI

CSV_COLUMNS = {
    "run_id", "topic", "title", "slug", "status", "reasons", "word_count", "sections", "prompt_tokens",
    "completion_tokens", "total_tokens", "grammar_issues", "moderation_flagged", "model", "path",
}


def _run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _all_output_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_run_exports_every_topic_with_exact_stage_parameters(basic_spec, cli_env, fake_api, tmp_path):
    topics = ["Python 装饰器入门", "=cmd()", "../../etc/passwd", "Rust lifetimes"]
    args = ["run", str(basic_spec), "--out", str(tmp_path / "out")]
    for topic in topics:
        args += ["--topic", topic]
    result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr + result.stdout

    run_dir = _run_dir(tmp_path / "out")
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert CSV_COLUMNS <= set(frame.columns)
    assert sorted(frame["topic"]) == sorted(["Python 装饰器入门", "'=cmd()", "../../etc/passwd", "Rust lifetimes"])
    assert (run_dir / "articles.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    for _, row in frame.iterrows():
        path = run_dir / row["path"]
        assert path.is_file() and path.resolve().is_relative_to(run_dir.resolve())
        text = path.read_text(encoding="utf-8")
        front = yaml.safe_load(text.split("---\n")[1])
        assert {"title", "topic", "slug", "status", "language", "model", "tokens", "created"} <= set(front)
        assert f"\n# {front['title']}\n" in text
        assert text.count("\n## ") == row["sections"] == 4
        assert row["status"] == "published", row["reasons"]

    # every call carried exactly its stage's own values and the system prompt
    by_stage = {"title": [], "outline": [], "expansion": []}
    for body in fake_api.state.requests:
        user = body["messages"][-1]["content"]
        stage = "expansion" if "Write the section" in user else "outline" if "Make an outline" in user else "title"
        by_stage[stage].append(body)
        assert body["messages"][0] == {"role": "system", "content": "You write for testers in en-US."}
        assert body["model"] == "gpt-4o-mini"
    assert len(by_stage["title"]) == len(by_stage["outline"]) == 4
    assert len(by_stage["expansion"]) == 16
    params = lambda body: {k: v for k, v in body.items() if k not in ("model", "messages")}  # noqa: E731
    assert all(params(b) == {"temperature": 0.9, "top_p": 1.0, "max_tokens": 20, "presence_penalty": 0.0}
               for b in by_stage["title"])
    # the outline also asks for JSON under a schema (stages.outline.structured: auto; this server ignores it)
    assert all({k: v for k, v in params(b).items() if k != "response_format"} == {"temperature": 0.3, "max_tokens": 300}
               and b["response_format"]["type"] == "json_schema" for b in by_stage["outline"])
    assert all(params(b) == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 600, "presence_penalty": 0.6,
                             "frequency_penalty": 0.1, "seed": 42} for b in by_stage["expansion"])

    # token totals agree with the API's own count, and the key is nowhere
    assert frame["total_tokens"].sum() == fake_api.total_tokens
    assert frame["prompt_tokens"].sum() == fake_api.state.prompt_tokens
    # the run's metrics file agrees with the CSV and the API, per stage
    families = {f.name: f for f in text_string_to_metric_families((run_dir / "metrics.prom").read_text())}
    prompt = {s.labels["stage"]: s.value for s in families["copydesk_prompt_tokens"].samples
              if s.name.endswith("_total")}
    completion = sum(s.value for s in families["copydesk_completion_tokens"].samples if s.name.endswith("_total"))
    assert set(prompt) == {"title", "outline", "expansion"}
    assert sum(prompt.values()) == fake_api.state.prompt_tokens
    assert completion == fake_api.state.completion_tokens == frame["completion_tokens"].sum()
    assert (tmp_path / "out" / "copydesk.prom").is_file()  # the cumulative textfile next to the runs
    assert SECRET_KEY not in _all_output_text(run_dir)
    assert SECRET_KEY not in result.stdout + result.stderr
    assert all(h.get("Authorization") == f"Bearer {SECRET_KEY}" for h in fake_api.state.headers)


def test_invalid_spec_exits_2_without_calling_the_api(basic_spec, cli_env, fake_api, tmp_path):
    spec = yaml.safe_load(basic_spec.read_text())
    spec["stages"]["title"]["temprature"] = 0.5
    basic_spec.write_text(yaml.safe_dump(spec))
    result = run_cli(["run", str(basic_spec), "--topic", "x", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 2
    assert "stages.title.temprature" in result.stderr and str(basic_spec) in result.stderr
    assert fake_api.state.requests == []
    assert not (tmp_path / "out").exists()


def test_missing_template_variable_exits_2(basic_spec, cli_env, fake_api, tmp_path):
    (basic_spec.parent.parent / "prompts" / "title.j2").write_text("About {{ topic }} for {{ reader }}.")
    result = run_cli(["run", str(basic_spec), "--topic", "x", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 2
    assert "reader" in result.stderr and "audience" in result.stderr  # missing and provided
    assert fake_api.state.requests == []


def test_empty_topic_is_refused(basic_spec, cli_env, fake_api, tmp_path):
    result = run_cli(["run", str(basic_spec), "--topic", "  ", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 2 and "empty" in result.stderr
    assert fake_api.state.requests == []


def test_more_topics_than_a_run_takes_exit_2_before_anything_starts(basic_spec, cli_env, fake_api, tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("".join(f"topic {n}\n" for n in range(10_001)), encoding="utf-8")
    for args in (["run", "--out", str(tmp_path / "out")], ["plan"]):
        result = run_cli([*args, str(basic_spec), "--topics-file", str(topics)], cli_env)
        assert result.returncode == 2, result.stderr
        assert f"{topics}, line 10001: more than 10,000 topics" in result.stderr.replace("\n", "")
    assert fake_api.state.requests == []
    assert not (tmp_path / "out").exists()
    # the limit itself is accepted (plan: no API call, no Prefect)
    topics.write_text("".join(f"topic {n}\n" for n in range(10_000)), encoding="utf-8")
    result = run_cli(["plan", str(basic_spec), "--topics-file", str(topics), "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["topics"] == 10_000


def test_wrong_key_exits_4_fast_without_retry_storm(basic_spec, cli_env, fake_api, tmp_path):
    fake_api.inject(*["401"] * 50)
    started = time.monotonic()
    result = run_cli(["run", str(basic_spec), "-t", "a", "-t", "b", "-t", "c", "--out", str(tmp_path / "out")],
                     cli_env)
    assert result.returncode == 4, result.stderr
    assert time.monotonic() - started < 30
    assert "OPENAI_API_KEY" in result.stderr
    assert SECRET_KEY not in result.stdout + result.stderr
    # at most one attempt per article that had started: no retries
    assert len(fake_api.state.requests) <= 3
    frame = pd.read_csv(_run_dir(tmp_path / "out") / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert len(frame) == 3 and set(frame["status"]) == {"incomplete"}


def test_exhausted_quota_stops_the_run_without_retrying(basic_spec, cli_env, fake_api, tmp_path):
    fake_api.inject(*["quota"] * 20)
    result = run_cli(["run", str(basic_spec), "-t", "a", "-t", "b", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 1, result.stderr
    assert "quota" in result.stderr
    assert len(fake_api.state.requests) <= 2  # one attempt per started article, no retry storm


def test_unknown_model_exits_2_and_lists_models(basic_spec, cli_env, fake_api, tmp_path):
    spec = yaml.safe_load(basic_spec.read_text())
    spec["model"] = "gpt-9-imaginary"
    basic_spec.write_text(yaml.safe_dump(spec))
    result = run_cli(["run", str(basic_spec), "-t", "a", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 2, result.stderr
    assert "gpt-9-imaginary" in result.stderr and "gpt-4o-mini" in result.stderr


def test_fallback_model_is_used_and_recorded(basic_spec, cli_env, fake_api, tmp_path):
    spec = yaml.safe_load(basic_spec.read_text())
    spec["model"] = "gpt-9-imaginary"
    spec["fallback_model"] = "gpt-4o"
    basic_spec.write_text(yaml.safe_dump(spec))
    result = run_cli(["run", str(basic_spec), "-t", "a", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(_run_dir(tmp_path / "out") / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert frame.loc[0, "model"] == "gpt-4o" and frame.loc[0, "fallback_from"] == "gpt-9-imaginary"


def test_storm_of_429_and_500_completes_under_the_cap(basic_spec, cli_env, tmp_path):
    storm = FakeOpenAI(fault_rate={"429": 0.2, "500": 0.1, "drop": 0.05})
    with storm:
        result = run_cli(["run", str(basic_spec), "-t", "a", "-t", "b", "-t", "c", "-t", "d", "--concurrency", "3",
                          "--out", str(tmp_path / "out")], {**cli_env, "OPENAI_BASE_URL": storm.url})
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(_run_dir(tmp_path / "out") / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert set(frame["status"]) == {"published"}
    assert storm.state.peak_in_flight <= 3
    summary = json.loads((_run_dir(tmp_path / "out") / "summary.json").read_text())
    assert summary["retries"] >= 3 and summary["rate_limited"] >= 1


def test_budget_stop_then_resume_without_paying_twice(basic_spec, cli_env, fake_api, tmp_path):
    topics = [f"topic number {i}" for i in range(12)]
    args = ["run", str(basic_spec), "--out", str(tmp_path / "out"), "--run-id", "budget-run", "--concurrency", "16"]
    for topic in topics:
        args += ["-t", topic]
    result = run_cli([*args, "--budget", "6000"], cli_env)
    assert result.returncode == 3, result.stderr
    assert "budget" in result.stderr
    assert fake_api.total_tokens <= 6000
    run_dir = tmp_path / "out" / "budget-run"
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert sorted(frame["topic"]) == sorted(topics)
    assert "incomplete" in set(frame["status"])
    first = [json.dumps(b, sort_keys=True) for b in fake_api.state.requests]

    fake_api.state.requests.clear()
    result = run_cli([*args, "--budget", "200000"], cli_env)
    assert result.returncode == 0, result.stderr
    second = [json.dumps(b, sort_keys=True) for b in fake_api.state.requests]
    # 12 articles x (title + outline + 4 sections): each call made exactly once over both runs
    assert len(first) + len(second) == 12 * 6, "a call that already succeeded was made again"
    assert not set(first) & set(second)
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert set(frame["status"]) == {"published"} and len(frame) == 12
    assert len(list(run_dir.rglob("*.md"))) == 12  # completed in place, no stale copies


def test_sigkill_mid_run_loses_no_finished_call(basic_spec, cli_env, tmp_path):
    with FakeOpenAI(latency=0.15) as slow:
        env = {**cli_env, "OPENAI_BASE_URL": slow.url}
        args = ["run", str(basic_spec), "--out", str(tmp_path / "out"), "--run-id", "killed", "--concurrency", "2"]
        for i in range(6):
            args += ["-t", f"slow topic {i}"]
        exe = Path(sys.executable).with_name("copydesk")
        proc = subprocess.Popen([str(exe), *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        store = tmp_path / "out" / "killed" / "calls.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if store.exists() and len(store.read_text().splitlines()) >= 8:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = {json.loads(line)["key"] for line in store.read_text().splitlines() if line.strip()}
        assert len(finished) >= 8
        before = [json.dumps(b, sort_keys=True) for b in slow.state.requests]
        slow.state.requests.clear()
        result = run_cli(args, env)
        assert result.returncode == 0, result.stderr
        again = [json.dumps(b, sort_keys=True) for b in slow.state.requests]
        total_calls = 6 * (2 + 4)
        # every finished call came from the store; only the rest went to the API
        assert len(again) == total_calls - len(finished)
        assert len(set(before) & set(again)) <= len(before) - len(finished)  # only calls in flight at the kill


def test_plan_json_bounds_what_the_run_spends(basic_spec, cli_env, fake_api, tmp_path):
    topics = ["alpha", "beta", "增长黑客"]
    targs = [a for t in topics for a in ("-t", t)]
    plan = run_cli(["plan", str(basic_spec), *targs, "--json"], cli_env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert {"worst_case_total_tokens", "budget", "stages"} <= set(data)
    assert set(data["stages"]) == {"title", "outline", "expansion"}
    assert fake_api.state.requests == []  # plan calls nothing
    result = run_cli(["run", str(basic_spec), *targs, "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 0
    assert fake_api.total_tokens <= data["worst_case_total_tokens"]


def test_validate_reports_each_bad_spec(basic_spec, cli_env, tmp_path):
    broken = basic_spec.with_name("broken.yaml")
    broken.write_text("name: broken\nstages: [\n")
    result = run_cli(["validate", str(basic_spec), str(broken)], cli_env)
    assert result.returncode == 2
    assert f"{broken}:" in result.stderr and "invalid YAML" in result.stderr
    assert "valid" in result.stdout and "basic" in result.stdout
