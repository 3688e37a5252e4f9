"""`copydesk run` on the embedded defaults: no API configured, so copydesk starts the real
local model (llama.cpp + SmolLM2) and the real LanguageTool itself, and stops them after."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_cli

pytestmark = pytest.mark.integration


def test_a_real_article_through_the_local_model_and_languagetool(prefect_server, tmp_path):
    spec = yaml.safe_load((ROOT / "pipelines" / "tech-blog.yaml").read_text())
    # prompts_dir must stay inside the spec's project: a copy laid out as P/pipelines, P/prompts
    shutil.copytree(ROOT / "prompts" / "en", tmp_path / "prompts" / "en")
    spec["prompts_dir"] = "../prompts/en"
    spec.pop("schedule", None)
    # small max_tokens keep the test short; fixed seeds keep the small model's answers stable
    spec["stages"]["title"].update(max_tokens=16, seed=1)
    spec["stages"]["outline"].update(max_tokens=80, seed=1, max_sections=3)
    spec["stages"]["expansion"].update(max_tokens=60, seed=1)
    spec["qc"]["min_words"] = 20
    path = tmp_path / "pipelines" / "tech-blog.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_"))}
    env.update(PREFECT_API_URL=prefect_server, COPYDESK_STATE_DIR=str(tmp_path / "state"), COPYDESK_KEEP_SERVERS="false")

    result = run_cli(["run", str(path), "--topic", "Why code review matters", "--out", str(tmp_path / "out")],
                     env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    row = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).iloc[0]
    assert row["model"] == "smollm2-135m-instruct"
    assert row["status"] in ("published", "needs_review"), row["reasons"]
    assert row["sections"] == 3 and row["word_count"] >= 20
    assert row["total_tokens"] > 0 and row["est_cost_usd"] == 0.0
    assert row["grammar_issues"] != ""  # LanguageTool really checked it
    text = (run_dir / row["path"]).read_text(encoding="utf-8")
    assert text.count("\n## ") == 3
    # copydesk started its servers under this state folder (their logs live in logs/ while
    # they run) and stopped them cleanly after the run (a clean stop deletes the log)
    assert (tmp_path / "state" / "logs").is_dir()
    assert not list((tmp_path / "state" / "logs").iterdir())
