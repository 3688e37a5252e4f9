"""The editorial checks end to end: the real CLI against the fake API, one bad section per article."""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml
from conftest import SECRET_KEY, run_cli
from fake_openai import FakeOpenAI, default_reply

PREAMBLE = "Sure! Here is section 2 of the article, written for engineers as you asked:"
BAD = {
    "refusal": lambda good: "I'm sorry, but as an AI language model I cannot help with writing this section.",
    "chinese": lambda good: ("好的测试描述代码应该做什么。它们运行得很快，并且只因为一个原因而失败。当测试失败时，它的名字会告诉你哪里出了问题，"
                             "所以没有人需要阅读整个测试套件来寻找原因。"),
    "chatty": lambda good: PREAMBLE + "\n\n" + good,
    "linked": lambda good: good + " The full checklist is at https://www.testing-tips-blog.io/checklist.",
}


def reply(body):
    """The fake's own sections (distinct per section), with one bad section 2 chosen by the topic."""
    user = body["messages"][-1]["content"]
    good = default_reply(body)
    match = re.search(r"Write the section (\d+)/", user)
    kind = next((k for k in BAD if f"{k} tests" in user), None)
    if match and kind and match.group(1) == "2":
        return BAD[kind](good)
    return good


def test_bad_sections_are_held_with_evidence_and_chatty_preambles_trimmed(basic_spec, cli_env, tmp_path):
    with FakeOpenAI(reply=reply) as fake:
        env = {**cli_env, "OPENAI_BASE_URL": fake.url}
        topics = [f"{k} tests" for k in BAD]
        args = ["run", str(basic_spec), "--out", str(tmp_path / "out")]
        for topic in topics:
            args += ["-t", topic]
        result = run_cli(args, env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    rows = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).set_index("topic")

    assert rows.loc["refusal tests", "status"] == "rejected"
    assert "refusal" in rows.loc["refusal tests", "reasons"]
    assert rows.loc["chinese tests", "status"] == "needs_review"
    assert "language" in rows.loc["chinese tests", "reasons"]
    linked = rows.loc["linked tests"]
    assert linked["status"] == "needs_review" and "www.testing-tips-blog.io" in linked["reasons"]
    front = yaml.safe_load((run_dir / linked["path"]).read_text(encoding="utf-8").split("---\n")[1])
    assert any("links" in r for r in front["reasons"])

    chatty = rows.loc["chatty tests"]
    assert chatty["status"] == "published", chatty["reasons"]
    text = (run_dir / chatty["path"]).read_text(encoding="utf-8")
    assert "Sure!" not in text and "as you asked" not in text
    assert "## How it works\n\nHere we look at how it works." in text  # the section itself stays

    report = {a["topic"]: a for a in json.loads((run_dir / "qc_report.json").read_text(encoding="utf-8"))["articles"]}
    refusal = next(c for c in report["refusal tests"]["qc"]["checks"] if c["name"] == "refusal")
    assert refusal["evidence"][0]["section"] == 2 and "I'm sorry" in refusal["evidence"][0]["text"]
    meta = next(c for c in report["chatty tests"]["qc"]["checks"] if c["name"] == "meta_talk")
    assert meta["passed"] and meta["evidence"][0]["action"] == "trimmed"
    assert report["chatty tests"]["qc"]["repairs"]
    assert SECRET_KEY not in (run_dir / "qc_report.json").read_text(encoding="utf-8")
