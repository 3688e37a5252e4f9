"""Structured outlines: the outline asked for as JSON under a schema (`response_format`) where the
server takes it, plain text where it refuses (remembered for the rest of the run); checked on the
wire against the fake API over loopback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from fake_openai import FakeOpenAI

from copydesk.orchestration import run_batch
from copydesk.request import RunRequest
from copydesk.settings import Settings


def _settings(fake: FakeOpenAI) -> Settings:
    return Settings(OPENAI_BASE_URL=fake.url, COPYDESK_BACKOFF_INITIAL=0.01)


def _outline_requests(fake: FakeOpenAI) -> list[dict]:
    return [b for b in fake.state.requests if "Make an outline" in b["messages"][-1]["content"]]


def _rows(summary) -> pd.DataFrame:
    return pd.read_csv(f"{summary.run_dir}/articles.csv", encoding="utf-8-sig", keep_default_na=False)


def _set_structured(spec_path, value: str) -> None:
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["stages"]["outline"]["structured"] = value
    spec_path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")


async def test_openai_json_schema_is_sent_and_its_json_answer_parsed(basic_spec, tmp_path):
    with FakeOpenAI(response_formats=("text", "json_schema")) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["retries"], out_dir=str(tmp_path)),
                                  _settings(fake))
    outlines = _outline_requests(fake)
    assert len(outlines) == 1
    form = outlines[0]["response_format"]
    assert form["type"] == "json_schema"
    schema = form["json_schema"]["schema"]
    assert form["json_schema"]["strict"] is True and schema["type"] == "object"
    assert schema["properties"]["headings"]["type"] == "array"
    # the other stages send no response_format
    assert all("response_format" not in b for b in fake.state.requests if b not in outlines)
    row = _rows(summary).iloc[0]
    assert row["status"] == "published", row["reasons"]
    article = next(p for p in Path(summary.run_dir).rglob("*.md") if p.name != "README.md").read_text(encoding="utf-8")
    assert "## Why it matters" in article and '"headings"' not in article


async def test_llama_cpp_form_after_a_refusal_and_remembered_for_the_run(basic_spec, tmp_path):
    """A server taking only llama.cpp's `{type: json_object, schema}` refuses json_schema once;
    every later outline of the run goes straight to json_object."""
    with FakeOpenAI(response_formats=("text", "json_object")) as fake:
        summary = await run_batch(
            RunRequest(spec_path=str(basic_spec), topics=["one", "two", "three"], out_dir=str(tmp_path)),
            _settings(fake))
    kinds = [b.get("response_format", {}).get("type") for b in _outline_requests(fake)]
    assert kinds.count("json_schema") >= 1 and kinds.count("json_object") == 3, kinds
    # refused once per article at most, and not after the first refusal came back (articles run at once)
    assert kinds.count("json_schema") <= 3
    obj = next(b for b in _outline_requests(fake) if b["response_format"]["type"] == "json_object")
    headings = obj["response_format"]["schema"]["properties"]["headings"]
    assert headings["minItems"] == 3 and headings["maxItems"] >= headings["minItems"]
    rows = _rows(summary)
    assert set(rows["status"]) == {"published"}, rows["reasons"].tolist()


async def test_refused_everywhere_falls_back_to_plain_text(basic_spec, tmp_path):
    with FakeOpenAI(response_formats=("text",)) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)),
                                  _settings(fake))
        kinds = [b.get("response_format", {}).get("type") for b in _outline_requests(fake)]
        assert kinds == ["json_schema", "json_object", None]
        # a second topic in the same run would send plain text at once: run another article with the same writer
    row = _rows(summary).iloc[0]
    assert row["status"] == "published", row["reasons"]


async def test_off_sends_no_response_format(basic_spec, tmp_path):
    _set_structured(basic_spec, "off")
    with FakeOpenAI(response_formats=("text",)) as fake:
        await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)), _settings(fake))
    assert [b.get("response_format") for b in _outline_requests(fake)] == [None]


async def test_a_400_on_every_form_ends_that_article_incomplete_without_looping(basic_spec, tmp_path):
    """Any 400 on a structured request counts as a refusal of the form (servers word it differently);
    when plain text is refused too, the article ends incomplete with the API's message: three outline
    requests, no loop, the run goes on."""
    with FakeOpenAI(response_formats=("text", "json_schema")) as fake:
        original = fake._answer

        def answer(handler, body):
            if "Make an outline" in body["messages"][-1]["content"]:
                fake._send(handler, 400, {"error": {"message": "This model's maximum context length is exceeded"}})
                return
            original(handler, body)

        fake._answer = answer  # type: ignore[method-assign]
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)),
                                  _settings(fake))
    kinds = [b.get("response_format", {}).get("type") for b in _outline_requests(fake)]
    assert kinds == ["json_schema", "json_object", None]
    row = _rows(summary).iloc[0]
    assert row["status"] == "incomplete"
    assert "maximum context length" in row["reasons"]


def test_structured_must_be_a_known_form():
    from pydantic import ValidationError

    from copydesk.spec import OutlineStage

    assert OutlineStage(prompt="outline.j2").structured == "auto"
    try:
        OutlineStage(prompt="outline.j2", structured="grammar")
    except ValidationError as exc:
        assert "structured" in str(exc)
    else:
        raise AssertionError("accepted an unknown form")


async def test_llama_cpp_python_refuses_with_a_500_validation_error_and_is_not_retried(basic_spec, tmp_path):
    """llama-cpp-python 0.3.36 (the embedded server) answers json_schema with HTTP 500 and a pydantic
    validation error (measured): taken as a refusal at once, not retried as a server failure."""
    with FakeOpenAI(response_formats=("text", "json_object"), refusal_status=500) as fake:
        summary = await run_batch(RunRequest(spec_path=str(basic_spec), topics=["one"], out_dir=str(tmp_path)),
                                  _settings(fake))
    kinds = [b.get("response_format", {}).get("type") for b in _outline_requests(fake)]
    assert kinds == ["json_schema", "json_object"]
    assert _rows(summary).iloc[0]["status"] == "published"


def test_the_embedded_model_starts_with_llama_cpp_pythons_form(basic_spec):
    from copydesk.spec import load_spec
    from copydesk.writer import ArticleWriter

    spec = load_spec(basic_spec)
    embedded = ArticleWriter(spec, None, None, model_override="local")  # type: ignore[arg-type]
    remote = ArticleWriter(spec, None, None)  # type: ignore[arg-type]
    assert [f and f["type"] for f in embedded.outline_formats.forms] == ["json_object", None]
    assert [f and f["type"] for f in remote.outline_formats.forms] == ["json_schema", "json_object", None]
