"""Repair: a section failing a section-level check is written again, the re-ask naming the failure."""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml
from conftest import run_cli
from fake_openai import FakeOpenAI, default_reply

from copydesk.plan import make_plan
from copydesk.qc.content import CheckResult
from copydesk.qc.repair import MAX_NOTE_CHARS, repair_note, sections_to_repair
from copydesk.spec import load_spec

REFUSAL = "I'm sorry, but as an AI language model I cannot help with writing this section."


def test_targets_are_the_failed_sections_not_headings_nor_repaired_findings():
    checks = [
        CheckResult("refusal", False, "hard", "x", evidence=({"section": 2, "text": REFUSAL},)),
        CheckResult("prompt_echo", False, "soft", "x", evidence=({"section": 1, "where": "heading", "text": "h"},)),
        CheckResult("meta_talk", True, "soft", "x", evidence=({"section": 3, "action": "trimmed", "text": "Sure!"},)),
        CheckResult("links", False, "soft", "x", evidence=({"section": 2, "text": "https://x.io"},)),
        CheckResult("grammar", False, "soft", "x"),
    ]
    targets = sections_to_repair(checks)
    assert list(targets) == [2] and [f["check"] for f in targets[2]] == ["refusal", "links"]
    note = repair_note(targets[2], "en-US")
    assert "refused" in note and "without any URL" in note and REFUSAL[:40] in note
    assert len(repair_note([{"check": "placeholders", "text": "x" * 5000}] * 50, "en-US")) <= MAX_NOTE_CHARS


def test_plan_counts_the_re_asks(basic_spec):
    spec = load_spec(basic_spec)
    with_repair = make_plan(spec, ["alpha"])
    without = make_plan(spec.model_copy(update={"qc": spec.qc.model_copy(update={
        "repair": spec.qc.repair.model_copy(update={"max_attempts": 0})})}), ["alpha"])
    sections = spec.stages.outline.max_sections
    assert without.stages["expansion"].calls == sections
    assert with_repair.stages["expansion"].calls == 2 * sections
    assert with_repair.worst_case_total_tokens > without.worst_case_total_tokens + sections * 600


def _reply(body):
    user = body["messages"][-1]["content"]
    if re.search(r"Write the section 2/", user):
        if "could not be published" in user:
            return default_reply(body)  # the re-ask gets a usable section
        return REFUSAL
    return default_reply(body)


def _run(basic_spec, cli_env, tmp_path, attempts: int):
    spec = yaml.safe_load(basic_spec.read_text())
    spec["qc"]["repair"] = {"max_attempts": attempts}
    basic_spec.write_text(yaml.safe_dump(spec))
    with FakeOpenAI(reply=_reply) as fake:
        result = run_cli(["run", str(basic_spec), "-t", "retries", "--out", str(tmp_path / "out")],
                         {**cli_env, "OPENAI_BASE_URL": fake.url})
        requests = list(fake.state.requests)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    row = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).iloc[0]
    report = json.loads((run_dir / "qc_report.json").read_text(encoding="utf-8"))["articles"][0]["qc"]
    return row, report, requests, run_dir


def test_a_refused_section_is_written_again_and_published(basic_spec, cli_env, tmp_path):
    row, report, requests, run_dir = _run(basic_spec, cli_env, tmp_path, 1)
    assert row["status"] == "published", row["reasons"]
    reasks = [r["messages"][-1]["content"] for r in requests if "could not be published" in r["messages"][-1]["content"]]
    assert len(reasks) == 1 and "Write the section 2/" in reasks[0] and "refused" in reasks[0]
    (attempt,) = report["repair_attempts"]
    assert attempt["status_before"] == "rejected" and attempt["status_after"] == "published"
    assert list(attempt["sections"]) == ["2"] and "refusal" in attempt["sections"]["2"]  # (it is thin too)
    assert REFUSAL not in (run_dir / row["path"]).read_text(encoding="utf-8")


def test_without_repair_the_refusal_is_rejected(basic_spec, cli_env, tmp_path):
    row, report, requests, _ = _run(basic_spec, cli_env, tmp_path, 0)
    assert row["status"] == "rejected" and "refusal" in row["reasons"]
    assert report["repair_attempts"] == []
    assert not any("could not be published" in r["messages"][-1]["content"] for r in requests)


def test_the_re_ask_note_is_not_taken_for_the_prompt_when_judging_the_rewrite(basic_spec, cli_env, tmp_path):
    """The note quotes the failed text; a rewrite that keeps one good sentence of it is no prompt echo."""

    def reply(body):
        user = body["messages"][-1]["content"]
        first = default_reply({"messages": [{"content": user.replace("section 2/", "section 1/")}]})
        if re.search(r"Write the section 2/", user):
            if "could not be published" in user:  # keeps the first sentence of what it copied, then new text
                return first.split(". ")[1] + ". " + default_reply(body).split(". ", 1)[1]
            return first  # a copy of section 1
        return default_reply(body)

    spec = yaml.safe_load(basic_spec.read_text())
    basic_spec.write_text(yaml.safe_dump(spec))
    with FakeOpenAI(reply=reply) as fake:
        result = run_cli(["run", str(basic_spec), "-t", "retries", "--out", str(tmp_path / "out")],
                         {**cli_env, "OPENAI_BASE_URL": fake.url})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    row = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).iloc[0]
    report = json.loads((run_dir / "qc_report.json").read_text(encoding="utf-8"))["articles"][0]["qc"]
    assert report["repair_attempts"][0]["sections"] == {"2": ["duplication"]}
    assert row["status"] == "published", row["reasons"]
