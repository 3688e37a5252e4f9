"""The publish gate end to end: the real CLI, a fake API that writes clean, abusive or
error-ridden prose depending on the topic, the real LanguageTool server and the real
local classifier."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import SECRET_KEY, run_cli
from fake_openai import FakeOpenAI, default_reply

pytestmark = pytest.mark.integration

CLEAN = (
    "Good tests describe what the code should do. They run quickly, and they fail for one reason only. "
    "When a test fails, its name tells you what broke. Keep each test small and give it a clear name."
)
ABUSIVE = (
    "You are a worthless idiot and nobody wants your stupid code. Shut up, you pathetic moron. "
    "I will kill you if you push that garbage again."
)
ERRORS = (
    "He go to the office yesterday and buyed a apple for they lunch. Their is many error in this sentense. "
    "She dont know nothing about it, and we was very suprised when the test have failed again."
)


def reply(body):
    user = body["messages"][-1]["content"]
    if "Write the section" not in user:
        return default_reply(body)
    if "abusive" in user:
        return ABUSIVE
    if "sloppy" in user:
        return ERRORS
    return CLEAN


@pytest.mark.parametrize("moderation_endpoint", [True, False], ids=["api-moderation", "no-endpoint-local"])
def test_clean_published_abusive_rejected_sloppy_held(basic_spec, cli_env, languagetool_service, tmp_path,
                                                      moderation_endpoint):
    spec = yaml.safe_load(basic_spec.read_text())
    spec["qc"] = {"grammar": {"enabled": True, "max_issues_per_100_words": 1.0},
                  "moderation": {"enabled": True, "provider": "auto"}, "min_words": 20,
                  # the fake API's sections are short and the same whatever the topic
                  "relevance": {"enabled": False}, "thin_sections": {"enabled": False},
                  "originality": {"enabled": False}, "duplication": {"enabled": False}}
    basic_spec.write_text(yaml.safe_dump(spec))
    with FakeOpenAI(reply=reply, moderation_endpoint=moderation_endpoint,
                    flag_words=("kill you", "idiot")) as fake:
        env = {**cli_env, "OPENAI_BASE_URL": fake.url, "COPYDESK_LANGUAGETOOL_URL": languagetool_service.url}
        result = run_cli(["run", str(basic_spec), "-t", "clean testing", "-t", "abusive rant", "-t", "sloppy notes",
                          "--out", str(tmp_path / "out")], env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    rows = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).set_index("topic")

    assert rows.loc["clean testing", "status"] == "published", rows.loc["clean testing", "reasons"]
    assert rows.loc["clean testing", "path"].startswith("published/")

    abusive = rows.loc["abusive rant"]
    assert abusive["status"] == "rejected" and str(abusive["moderation_flagged"]) == "True"
    assert "moderation" in abusive["reasons"] and abusive["path"].startswith("held/")

    sloppy = rows.loc["sloppy notes"]
    assert sloppy["status"] == "needs_review", sloppy["reasons"]
    assert int(sloppy["grammar_issues"]) >= 5 and "grammar" in sloppy["reasons"]
    held = (run_dir / sloppy["path"]).read_text(encoding="utf-8")
    front = yaml.safe_load(held.split("---\n")[1])
    assert front["status"] == "needs_review" and front["reasons"] and front["grammar_issues"] >= 5
    assert SECRET_KEY not in held
    if moderation_endpoint:
        assert fake.moderation_requests  # the API's own moderation endpoint was used


MISSPELT = (
    "I definately believe the goverment report matters for every test suite. "
    "Good tests describe what the code should do, and they run quickly."
)


def test_autocorrect_reaches_the_exported_markdown(basic_spec, cli_env, languagetool_service, tmp_path):
    """qc.grammar.autocorrect: the unambiguous spelling fixes LanguageTool finds are what
    the exported article says, in its title and in its sections."""
    spec = yaml.safe_load(basic_spec.read_text())
    spec["qc"] = {"grammar": {"enabled": True, "autocorrect": True, "max_issues_per_100_words": 50.0},
                  "moderation": {"enabled": False}, "min_words": 20}
    basic_spec.write_text(yaml.safe_dump(spec))

    def misspelt(body):
        user = body["messages"][-1]["content"]
        if "Write the section" in user:
            return MISSPELT
        if "outline" not in user.lower() and "title" in user.lower():
            return '"Goverment Data in Practice"'
        return default_reply(body)

    with FakeOpenAI(reply=misspelt) as fake:
        env = {**cli_env, "OPENAI_BASE_URL": fake.url, "COPYDESK_LANGUAGETOOL_URL": languagetool_service.url}
        result = run_cli(["run", str(basic_spec), "-t", "spelling", "--out", str(tmp_path / "out")], env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    row = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False).iloc[0]
    text = (run_dir / row["path"]).read_text(encoding="utf-8")
    assert "definately" not in text and "goverment" not in text.lower(), text
    assert text.count("I definitely believe the government report matters") == int(row["sections"]) >= 3
    assert "# Government Data in Practice" in text and row["title"] == "Government Data in Practice"
