"""Extra stages (`stages.extras`: description, tags): the spec, the parsers, the CallPlan and
`plan`, the wire, the gate's holds, the front matter and the CSV; resume and batch mode through
the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from fake_openai import FakeOpenAI, default_reply

from copydesk import rundir
from copydesk.callplan import MAX_ARTICLE_CHARS, CallPlan
from copydesk.errors import SpecError, TemplateError
from copydesk.orchestration import run_batch
from copydesk.postprocess import clean_extra_text, parse_list
from copydesk.prompts import EXTRA_CONTEXT, PromptLibrary
from copydesk.request import RunRequest
from copydesk.settings import Settings
from copydesk.spec import RESERVED_EXTRA_NAMES, load_spec

DESCRIPTION = {"prompt": "description.j2", "max_tokens": 60, "temperature": 0.3, "top_p": 0.8,
               "stop": ["\n\n"], "presence_penalty": 0.1, "output": "text"}
TAGS = {"prompt": "tags.j2", "max_tokens": 40, "output": "list", "max_items": 3}


def add_extras(spec_path: Path, **extras: dict) -> Path:
    """The basic fixture with `stages.extras` (description and tags unless told) and their prompts."""
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["stages"]["extras"] = extras or {"description": DESCRIPTION, "tags": TAGS}
    spec_path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    prompts = spec_path.parent.parent / "prompts"
    (prompts / "description.j2").write_text(
        'Describe "{{ title }}" ({{ topic }}) in one sentence. Parts: {{ outline | join(", ") }}.\n{{ article }}', encoding="utf-8")
    (prompts / "tags.j2").write_text('List tags for "{{ title }}" about {{ topic }}.', encoding="utf-8")
    return spec_path


def reply(body: dict) -> str:
    """Descriptions and tags by prompt; a topic naming "notags" gets no tags, "refused" a refusal."""
    user = body["messages"][-1]["content"]
    if user.startswith("Describe"):
        if "refused" in user:
            return "I'm sorry, but I cannot help with that."
        return 'Description: "A <script>alert(1)</script> guide\nto {{< x >}} retries."'
    if user.startswith("List tags"):
        return "" if "notags" in user else "Python, #testing, python, \x1b]0;owned\x07retries, extra one"
    return default_reply(body)


def _params(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("model", "messages")}


def _csv(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)


# ------------------------------------------------------------------------------ parsers


def test_list_answers_parsed_from_json_or_text_trimmed_deduplicated_bounded_and_inert():
    assert parse_list('{"items": ["Python", "python ", "<b>x</b>", ""]}', max_items=5, limit=40) == [
        "Python", "&lt;b>x&lt;/b>"]
    assert parse_list('```json\n["a", "b", "c"]\n```', max_items=2, limit=40) == ["a", "b"]
    text = "Here are some tags:\n1. Python\n2. #asyncio\n- Event loops.\n- PYTHON"
    assert parse_list(text, max_items=8, limit=40) == ["Python", "asyncio", "Event loops"]
    assert parse_list("测试、Python，异步；测试", max_items=8, limit=40) == ["测试", "Python", "异步"]
    long = parse_list("a very long tag that goes on and on, short", max_items=8, limit=12)
    assert long == ["a very long…", "short"]
    assert parse_list("\x1b[31m, ..., —", max_items=8, limit=40) == []


def test_a_json_list_cut_short_by_max_tokens_keeps_its_whole_strings_not_its_syntax():
    """The embedded model's tags often end at max_tokens inside the JSON (seen in the quick start):
    the whole strings are the items; keys, brackets and the unfinished last string are not."""
    cut = '{ "items": ["Writing readable Python", "Pylint", "C\\u002B\\u002B", "linters and'
    assert parse_list(cut, max_items=8, limit=40) == ["Writing readable Python", "Pylint", "C++"]
    assert parse_list('{ "items" : [ "}, WhyCodeReviewMatters #BlogPost1', max_items=8, limit=40) == []


def test_text_answers_are_one_inert_line_without_label_quotes_or_markup():
    assert clean_extra_text('Description: "A **short** guide."', 300) == "A short guide."
    assert clean_extra_text("Line one\nline two\u202e", 300) == "Line one line two"
    assert clean_extra_text("\n\n...\n\nFirst paragraph.\n\nSecond one.", 300) == "First paragraph."
    assert "<script" not in clean_extra_text("<script>x</script> {{< shortcode >}}", 300)
    assert clean_extra_text("word " * 100, 20).endswith("…") and len(clean_extra_text("word " * 100, 20)) <= 21
    assert clean_extra_text(" ... ", 300) == ""


# ------------------------------------------------------------------------------ the spec


def test_extras_in_the_spec_and_their_names(basic_spec):
    spec = load_spec(add_extras(basic_spec))
    assert list(spec.stages.extras) == ["description", "tags"]
    assert [name for name, _ in spec.stages.items()] == ["title", "outline", "expansion", "description", "tags"]
    assert spec.stages.extras["tags"].char_limit == 40 and spec.stages.extras["description"].char_limit == 300
    assert spec.stages.extras["description"].required is True
    for bad, why in (("title", "taken"), ("status", "taken"), ("Tags", "lower-case"), ("a-b", "lower-case")):
        add_extras(basic_spec, **{bad: TAGS})
        with pytest.raises(SpecError, match=why) as info:
            load_spec(basic_spec)
        assert "stages.extras" in str(info.value)
    add_extras(basic_spec, tags={**TAGS, "prompt": "tags.txt"})
    with pytest.raises(SpecError, match=r"stages\.extras\.tags\.prompt: template 'tags\.txt'"):
        load_spec(basic_spec)
    add_extras(basic_spec, tags={**TAGS, "output": "csv"})
    with pytest.raises(SpecError, match="stages.extras.tags.output"):
        load_spec(basic_spec)


def test_every_column_and_front_matter_key_copydesk_writes_is_reserved(basic_spec):
    from copydesk.export import RunExporter
    from copydesk.article import Article

    assert set(rundir.CSV_COLUMNS) <= RESERVED_EXTRA_NAMES
    exporter = RunExporter(basic_spec.parent, run_id="r", language="en", pipeline="p")
    article = Article(0, "t", "k", title="T", reasons=["x"], grammar_issues=0, moderation_flagged=False,
                      fallback_from="m")
    front, _ = rundir.parse_front_matter(exporter.markdown(article), "x")
    assert set(front) <= RESERVED_EXTRA_NAMES


def test_a_template_of_an_extra_may_use_only_its_context(basic_spec):
    add_extras(basic_spec)
    (basic_spec.parent.parent / "prompts" / "tags.j2").write_text("{{ section }}", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"stages\.extras\.tags\.prompt .*undefined variable\(s\) section; "
                       r"provided: article, audience, language, outline, title, topic"):
        PromptLibrary(load_spec(basic_spec)).check()


# ------------------------------------------------------------------------------ the CallPlan and plan


def test_the_callplan_and_plan_count_each_extra_once_per_topic_at_its_largest(basic_spec, cli_env):
    spec = load_spec(add_extras(basic_spec))
    plan = CallPlan.of(spec)
    assert [s.stage for s in plan.extras] == ["description", "tags"]
    assert plan.stages["description"].params == {"max_tokens": 60, "temperature": 0.3, "top_p": 0.8,
                                                 "stop": ["\n\n"], "presence_penalty": 0.1}
    assert plan.stages["tags"].params == {"max_tokens": 40}
    calls = plan.topic(PromptLibrary(spec), "alpha")
    worst = [c for c in calls.worst_case() if c.of.output]
    assert [c.stage for c in worst] == ["description", "tags"]
    assert set(worst[0].context) == set(calls.base) | set(EXTRA_CONTEXT)
    assert len(worst[0].context["article"].encode()) >= MAX_ARTICLE_CHARS * 4

    result = run_cli(["plan", str(basic_spec), "-t", "alpha", "-t", "beta", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    stages = json.loads(result.stdout)["stages"]
    assert list(stages) == ["title", "outline", "expansion", "description", "tags"]
    assert stages["description"]["calls"] == stages["tags"]["calls"] == 2
    assert stages["description"]["max_completion_tokens"] == 2 * 60
    # the worst case holds an article of MAX_ARTICLE_CHARS four-byte characters
    assert stages["description"]["max_prompt_tokens"] > 2 * MAX_ARTICLE_CHARS * 4


# ------------------------------------------------------------------------------ the wire and the gate


async def test_extras_on_the_wire_sanitized_and_a_required_empty_or_refused_one_holds(basic_spec, tmp_path):
    add_extras(basic_spec)
    with FakeOpenAI(reply=reply) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), out_dir=str(tmp_path),
                                             topics=["retries", "notags here", "refused one"]),
                                  Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01))
    described = [b for b in fake.state.requests if b["messages"][-1]["content"].startswith("Describe")]
    tagged = [b for b in fake.state.requests if b["messages"][-1]["content"].startswith("List tags")]
    assert len(described) == len(tagged) == 3
    assert all(_params(b) == {"max_tokens": 60, "temperature": 0.3, "top_p": 0.8, "stop": ["\n\n"],
                              "presence_penalty": 0.1} for b in described)
    # a list asks for JSON under a schema (this server ignores the field); nothing else is sent
    assert all({k: v for k, v in _params(b).items() if k != "response_format"} == {"max_tokens": 40}
               and b["response_format"]["json_schema"]["schema"]["properties"]["items"]["type"] == "array"
               for b in tagged)
    # the extra's context: the title, the outline and the article's sections
    prompt = described[0]["messages"][-1]["content"]
    assert '"A Practical Guide"' in prompt and "Why it matters, How it works" in prompt
    assert "## Why it matters\n\nHere we look at why it matters." in prompt

    frame = _csv(Path(summary.run_dir))
    assert list(frame.columns) == [*rundir.CSV_COLUMNS, "description", "tags"]  # the old order, then the extras
    frame = frame.set_index("topic")
    ok = frame.loc["retries"]
    assert ok["status"] == "published", ok["reasons"]
    assert ok["tags"] == "Python, testing, retries"  # deduplicated, at most max_items, no control characters
    assert "<script" not in ok["description"] and "{{<" not in ok["description"]
    assert ok["description"].startswith("A &lt;script>alert(1)&lt;/script> guide to")
    front, _ = rundir.parse_front_matter((Path(summary.run_dir) / ok["path"]).read_text(encoding="utf-8"), "x")
    assert front["description"] == ok["description"] and front["tags"] == ["Python", "testing", "retries"]

    held = frame.loc["notags here"]
    assert held["status"] == "needs_review" and "extra 'tags' is empty" in held["reasons"] and held["tags"] == ""
    front, _ = rundir.parse_front_matter((Path(summary.run_dir) / held["path"]).read_text(encoding="utf-8"), "x")
    assert "tags" not in front and front["description"]
    refused = frame.loc["refused one"]
    assert refused["status"] == "needs_review" and "extra 'description' was refused" in refused["reasons"]
    assert refused["description"] == ""

    # the run's table artifact is the CSV, extras included; an article's artifact shows its description
    from copydesk_flows.artifacts import build_artifacts

    run_dir = Path(summary.run_dir)
    table, _, *articles = build_artifacts(run_dir, json.loads((run_dir / "summary.json").read_text()))
    assert list(table.table[0])[-2:] == ["description", "tags"]
    assert [row["description"] for row in table.table] == list(_csv(run_dir)["description"])
    shown = next(a for a in articles if a.key.endswith(ok["slug"]))
    assert "**Description:** A &lt;script>alert(1)&lt;/script> guide" in shown.markdown


async def test_an_optional_extra_is_left_out_and_a_refused_schema_falls_back(basic_spec, tmp_path, caplog):
    add_extras(basic_spec, description=DESCRIPTION, tags={**TAGS, "required": False, "structured": "auto"})
    with FakeOpenAI(reply=reply, response_formats=("text", "json_object")) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), out_dir=str(tmp_path),
                                             topics=["notags", "retries"]),
                                  Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01))
    frame = _csv(Path(summary.run_dir))
    assert list(frame.columns)[-2:] == ["description", "tags"]
    frame = frame.set_index("topic")
    assert frame.loc["notags", "status"] == "published" and frame.loc["notags", "tags"] == ""
    assert frame.loc["retries", "tags"] == "Python, testing, retries"
    kinds = [b.get("response_format", {}).get("type") for b in fake.state.requests
             if b["messages"][-1]["content"].startswith("List tags")]
    assert "json_schema" in kinds and kinds.count("json_object") == 2, kinds
    assert "the server refused response_format json_schema" in caplog.text and "extra 'tags' uses json_object" in caplog.text


# ------------------------------------------------------------------------------ the real command


def test_run_resume_and_batch_mode_with_extras(basic_spec, cli_env, fake_api, tmp_path):
    """The run writes them; the same run again pays for nothing (the call store answers them)."""
    add_extras(basic_spec)
    fake_api.reply = reply
    args = ["run", str(basic_spec), "--out", str(tmp_path / "out"), "--run-id", "x1", "-t", "retries", "-t", "idempotence"]
    result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    assert sum(b["messages"][-1]["content"].startswith(("Describe", "List tags")) for b in fake_api.state.requests) == 4
    run_dir = tmp_path / "out" / "x1"
    assert set(_csv(run_dir)["tags"]) == {"Python, testing, retries"}
    metrics = (run_dir / "metrics.prom").read_text()
    assert 'stage="description"' in metrics and 'stage="tags"' in metrics

    fake_api.state.requests.clear()
    result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    assert fake_api.state.requests == []  # every call, the extras' too, came from the call store
    frame = _csv(run_dir)
    assert set(frame["tags"]) == {"Python, testing, retries"} and all(frame["description"])


def test_batch_mode_sends_each_extra_as_its_own_batch(basic_spec, batch_env, batch_api, tmp_path):
    add_extras(basic_spec)
    batch_api.reply = reply
    args = ["run", str(basic_spec), "--out", str(tmp_path / "out"), "--mode", "batch", "--run-id", "b1",
            "-t", "unit tests", "-t", "retries"]
    result = run_cli(args, batch_env)
    assert result.returncode == 0, result.stderr
    assert batch_api.state.requests == []
    assert [len(u) for u in batch_api.uploads] == [2, 2, 8, 2, 2]
    description, tags = batch_api.uploads[3], batch_api.uploads[4]
    assert all("-description-" in line["custom_id"] for line in description)
    assert all("-tags-" in line["custom_id"] for line in tags)
    assert all({k: v for k, v in line["body"].items() if k not in ("model", "messages")} == {
        "max_tokens": 60, "temperature": 0.3, "top_p": 0.8, "stop": ["\n\n"], "presence_penalty": 0.1}
        for line in description)
    frame = _csv(tmp_path / "out" / "b1")
    assert set(frame["status"]) == {"published"} and set(frame["tags"]) == {"Python, testing, retries"}


def test_the_forms_a_list_extra_tries_on_each_server(basic_spec):
    from copydesk.writer import ArticleWriter

    add_extras(basic_spec, description=DESCRIPTION, tags=TAGS, keywords={**TAGS, "structured": "off"})
    spec = load_spec(basic_spec)
    embedded = ArticleWriter(spec, None, None, model_override="local")  # type: ignore[arg-type]
    remote = ArticleWriter(spec, None, None)  # type: ignore[arg-type]
    kinds = lambda w, name: [f and f["type"] for f in w.extra_formats[name].forms]  # noqa: E731
    assert kinds(remote, "tags") == ["json_schema", "json_object", None]
    assert kinds(embedded, "tags") == ["json_object", None]  # llama-cpp-python takes only json_object
    assert kinds(remote, "description") == kinds(remote, "keywords") == [None]
    bounded = remote.extra_formats["tags"].forms[1]["schema"]["properties"]["items"]
    assert bounded["maxItems"] == TAGS["max_items"] and bounded["minItems"] == 1
