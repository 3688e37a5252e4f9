"""The editor form's trust rules, checked in the flow bodies (no Prefect server needed).

`pipeline` is a served pipeline's name, never a path, never a symlink that leads out of
the pipelines folder; `budget` may lower the spec's cap and never raise it. These run
the flows' own code (`editor.fn`, `scheduled.fn`, `run_named_pipeline`) the way a run
started outside `copydesk serve`'s enforced schema would (prefect.yaml, a direct call).
The deployments' schema (the enum, the server's refusals) is tested on a real server in
tests/test_deployments.py.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from test_deployments import make_pipelines

from copydesk.catalog import check_name, load_catalog, resolve_served
from copydesk.errors import InputError, SpecError
from copydesk.form import MAX_FORM_BUDGET, form_budget
from copydesk.spec import load_spec

HOSTILE_NAMES = ["../x", "/etc/passwd", "..", "pipelines/basic.yaml", "basic.yaml", "~root", "..\\x",
                 "basic\n", "BASIC", "a" * 65, "../" * 300 + "etc/passwd"]


@pytest.fixture
def pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = make_pipelines(tmp_path)
    monkeypatch.setenv("COPYDESK_PIPELINES_DIR", str(folder))
    monkeypatch.setenv("COPYDESK_OUTPUT_DIR", str(tmp_path / "outputs"))
    return folder


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the run itself (flows.pipeline.execute) with a recorder: nothing may reach it."""
    import copydesk_flows.editor

    requests: list[Any] = []

    async def record(request: Any, **kwargs: Any) -> dict[str, Any]:
        requests.append(request)
        return {"run_id": request.run_id, "by_status": {}, "budget_spent": 0,
                "budget_limit": request.budget or 0, "run_dir": "x"}

    monkeypatch.setattr(copydesk_flows.editor, "execute", record)
    return requests


# ------------------------------------------------------------------------------ the catalog


def test_only_names_of_served_specs_resolve(pipelines):
    path, spec = resolve_served("strict", pipelines)  # by its name:, whatever the file is called
    assert path == (pipelines / "strict-review.yml").resolve() and spec.name == "strict"
    with pytest.raises(SpecError, match=r"no pipeline named 'strict-review' is served.*available: basic, strict"):
        resolve_served("strict-review", pipelines)  # a file stem is not a name
    with pytest.raises(SpecError, match="no pipeline named 'broken'"):
        resolve_served("broken", pipelines)  # an invalid spec is not served, and says nothing more
    for hostile in HOSTILE_NAMES:
        with pytest.raises(SpecError) as info:
            resolve_served(hostile, pipelines)
        message = str(info.value)
        assert "passwd" not in message and "/" not in message and "../" not in message and "a" * 61 not in message, message
        assert len(message) < 200, message
    with pytest.raises(SpecError, match="COPYDESK_PIPELINES_DIR"):
        resolve_served("basic", pipelines.parent / "missing")


def test_a_symlinked_spec_outside_the_folder_is_not_served(pipelines):
    catalog = load_catalog(pipelines)
    assert catalog.names == ["basic", "strict"]
    assert (pipelines / "outside.yaml").is_symlink()  # make_pipelines: a valid spec named `outside`, elsewhere
    assert load_spec(pipelines / "outside.yaml").name == "outside"
    assert any("outside.yaml" in p and "outside the pipelines folder" in p for p in catalog.problems)
    with pytest.raises(SpecError, match="no pipeline named 'outside' is served"):
        resolve_served("outside", pipelines)

    (pipelines / "alias.yaml").symlink_to(pipelines / "strict-review.yml")  # inside: still one pipeline
    catalog = load_catalog(pipelines)
    assert catalog.names == ["basic", "strict"]
    assert any("already used" in p for p in catalog.problems)


def test_duplicate_names_and_schedules(pipelines):
    (pipelines / "copy.yaml").write_text((pipelines / "basic.yaml").read_text())
    found = load_catalog(pipelines)
    assert [s.name for s in found.scheduled] == ["basic"] and found.names == ["basic", "strict"]
    assert any("broken.yaml" in p for p in found.problems)
    assert any("copy.yaml" in p and "already used" in p for p in found.problems)


def test_names_are_checked_before_any_file_is_read(tmp_path):
    assert check_name("tech-blog") == "tech-blog"
    for hostile in HOSTILE_NAMES:
        with pytest.raises(SpecError):
            check_name(hostile)
    with pytest.raises(SpecError, match="not int"):
        check_name(3)


# ------------------------------------------------------------------------------ the flow bodies


@pytest.mark.parametrize("hostile", ["../x", "/etc/passwd", "outside", "../pipelines/basic.yaml"])
async def test_the_editor_flow_body_refuses_paths_and_symlinks(pipelines, no_run, hostile, caplog):
    from copydesk_flows.editor import editor, scheduled

    caplog.set_level(logging.ERROR)
    with pytest.raises(SpecError) as info:
        await editor.fn(pipeline=hostile, topics=["a topic"])
    assert info.value.exit_code == 2
    with pytest.raises(SpecError):
        await scheduled.fn(pipeline=hostile, topics=["a topic"])
    assert no_run == []
    logged = caplog.text
    assert "paths are not accepted" in logged or "no pipeline named 'outside' is served" in logged
    assert "passwd" not in logged and "../" not in logged and str(pipelines.parent / "outside") not in logged


async def test_a_served_name_runs(pipelines, no_run):
    from copydesk_flows.editor import editor

    await editor.fn(pipeline="strict", topics=["a topic"])
    (request,) = no_run
    assert Path(request.spec_path) == (pipelines / "strict-review.yml").resolve() and request.budget is None


async def test_the_form_budget_may_lower_the_cap_but_never_raise_it(pipelines, no_run):
    from copydesk_flows.editor import editor, run_named_pipeline, scheduled

    cap = load_spec(pipelines / "basic.yaml").budget.max_total_tokens
    for too_much in (cap + 1, MAX_FORM_BUDGET, 10**30):
        with pytest.raises(InputError, match=r"above the basic pipeline's cap of 60,000 tokens") as info:
            await editor.fn(pipeline="basic", topics=["a topic"], budget=too_much)
        assert info.value.exit_code == 2
        assert str(10**30) not in str(info.value)
        with pytest.raises(InputError):
            await scheduled.fn(pipeline="basic", budget=too_much)
    for nonsense in (0, -5, True, 1.5, "100"):
        with pytest.raises(InputError):
            await run_named_pipeline("basic", ["a topic"], budget=nonsense)  # type: ignore[arg-type]
    assert no_run == []  # refused before anything ran

    await editor.fn(pipeline="basic", topics=["a topic"], budget=cap)
    await editor.fn(pipeline="basic", topics=["a topic"], budget=500)
    await scheduled.fn(pipeline="basic", budget=700)
    assert [r.budget for r in no_run] == [cap, 500, 700]


@pytest.mark.parametrize("run_id", ["con", "nul.txt", "x.", "CON.md"])
async def test_the_form_refuses_run_ids_windows_cannot_hold(pipelines, no_run, run_id):
    """The form's run_id follows the run folder's one rule (issue #20, finding 13), and the
    message names the form's field, not a flag the editor never saw."""
    from copydesk_flows.editor import run_named_pipeline

    with pytest.raises(InputError, match=r"^run_id \(the form's field\) ") as info:
        await run_named_pipeline("basic", ["a topic"], run_id=run_id)
    assert info.value.exit_code == 2 and "--run-id" not in str(info.value)
    assert no_run == []


def test_form_budget_rule(pipelines):
    spec = load_spec(pipelines / "basic.yaml")
    assert form_budget(None, spec) is None
    assert form_budget(1, spec) == 1
    with pytest.raises(InputError, match="more than 1,000,000,000"):
        form_budget(10**30, spec)


def test_the_flow_signature_refuses_paths_before_the_body(pipelines):
    """Prefect validates parameters against the signature: the name pattern and the budget bound."""
    from prefect.exceptions import ParameterTypeError

    from copydesk_flows.editor import editor

    for bad in ({"pipeline": "../x", "topics": ["a"]}, {"pipeline": "/etc/passwd", "topics": ["a"]},
                {"pipeline": "basic", "topics": ["a"], "budget": 10**30}):
        with pytest.raises(ParameterTypeError) as info:
            editor.validate_parameters(bad)
        assert "passwd" not in str(info.value) and str(10**30) not in str(info.value)


async def test_the_form_chooses_the_mode(pipelines, no_run):
    """`mode` in the form: realtime, batch (the OpenAI Batch API) or auto; empty keeps the spec's."""
    from prefect.exceptions import ParameterTypeError

    from copydesk_flows.editor import editor, scheduled

    await editor.fn(pipeline="basic", topics=["a topic"], mode="batch")
    await editor.fn(pipeline="basic", topics=["a topic"])
    await scheduled.fn(pipeline="basic", topics=["a topic"], mode="auto")
    assert [r.mode for r in no_run] == ["batch", None, "auto"]
    assert editor.validate_parameters({"pipeline": "basic", "topics": ["a"], "mode": "batch"})["mode"] == "batch"
    with pytest.raises(ParameterTypeError):
        editor.validate_parameters({"pipeline": "basic", "topics": ["a"], "mode": "cheap"})


# ------------------------------------------------------------------------------ typed vars, rows, one-line errors


def _typed(pipelines: Path) -> Path:
    from test_deployments import TYPED_VARS

    text = (pipelines / "basic.yaml").read_text(encoding="utf-8").replace("name: basic", "name: typed")
    data = __import__("yaml").safe_load(text)
    data.update(vars=TYPED_VARS, description="Short test articles.")
    data.pop("schedule", None)
    (pipelines / "typed.yaml").write_text(__import__("yaml").safe_dump(data, sort_keys=False), encoding="utf-8")
    return pipelines / "typed.yaml"


async def test_the_flow_refuses_unknown_or_mistyped_vars_naming_the_known_ones(pipelines, no_run):
    from copydesk_flows.editor import editor, scheduled

    _typed(pipelines)
    for bad, needle in [({"audiance": "students"}, "vars: unknown variable 'audiance' (this pipeline's variables: "
                                                    "audience, words, formal)"),
                        ({"audience": "nobody"}, "variable audience 'nobody' is not one of testers, students, editors"),
                        ({"words": "many"}, "variable words must be a number, not text")]:
        with pytest.raises(InputError) as info:
            await editor.fn(pipeline="typed", topics=["a topic"], vars=bad)
        assert needle in str(info.value)
    with pytest.raises(InputError, match="unknown variable 'tone'"):
        await scheduled.fn(pipeline="basic", vars={"tone": "x"})
    assert no_run == []
    await editor.fn(pipeline="typed", topics=["a topic", "", "  "], vars={"audience": "students", "words": 900})
    (request,) = no_run
    assert request.topics == ["a topic"] and request.vars == {"audience": "students", "words": 900}
    with pytest.raises(InputError, match="no topics: write at least one topic"):
        await editor.fn(pipeline="typed", topics=["", " "])


async def test_a_refused_form_ends_the_flow_run_failed_with_one_line(pipelines, no_run, prefect_server):
    """Inside a flow run the editor's mistake is the Failed state's message, not a traceback."""
    from prefect.states import State

    from copydesk_flows.editor import editor

    _typed(pipelines)
    state = await editor(pipeline="typed", topics=["a topic"], vars={"audiance": "x"}, return_state=True)
    assert isinstance(state, State) and state.is_failed()
    assert state.message == "vars: unknown variable 'audiance' (this pipeline's variables: audience, words, formal)"
    assert no_run == []


def test_a_pipelines_form_schema_has_typed_fields_and_no_none_switches(pipelines):
    import json

    from copydesk.form import editor_description, editor_schema

    spec = load_spec(_typed(pipelines))
    schema = editor_schema(spec)
    props = schema["properties"]
    assert "pipeline" not in props and schema["required"] == ["topics"]
    (fields,) = props["vars"]["allOf"]
    assert fields["additionalProperties"] is False
    audience, words, formal = (fields["properties"][n] for n in ("audience", "words", "formal"))
    assert audience["enum"] == ["testers", "students", "editors"] and audience["default"] == "testers"
    assert audience["description"] == "Who reads the articles."
    assert words["type"] == "integer" and words["default"] == 600 and formal["type"] == "boolean"
    assert props["budget"]["allOf"] == [{"type": "integer", "minimum": 1, "maximum": 60_000}]
    assert props["mode"]["enum"][0] == "as the spec says"
    assert props["topics"]["type"] == "string" and "items" not in props["topics"]  # one text box, a topic per line
    assert props["topics"]["description"].startswith("**typed**: Short test articles.")
    text = json.dumps(schema)
    assert "anyOf" not in text and '"default": null' not in text
    assert not re.search(r"max_total_tokens|copydesk (run|review|budget)|`", text)  # an editor's words
    assert "60,000" in editor_description(spec) and "Short test articles." in editor_description(spec)


def test_a_form_topics_box_gives_one_topic_per_line_without_the_empty_ones():
    from copydesk.form import MAX_FORM_TOPICS, MAX_TOPIC_CHARS, form_topics

    assert form_topics("  First topic \r\n\n   \nSecond topic\n") == ["First topic", "Second topic"]
    assert form_topics(["Row", None, "", "  "]) == ["Row"]  # rows: a cleared row (null) is no topic
    assert form_topics("") == [] and form_topics(None) == []
    with pytest.raises(InputError, match=f"line 2 is longer than {MAX_TOPIC_CHARS} characters"):
        form_topics("ok\n" + "x" * (MAX_TOPIC_CHARS + 1))
    with pytest.raises(InputError, match="at most 1,000"):
        form_topics("\n".join(["t"] * (MAX_FORM_TOPICS + 1)))


def test_a_pipelines_own_flow_carries_its_form_as_prefect_generates_it(pipelines):
    """What `copydesk serve` and `prefect deploy` both do with the flow: Prefect's own schema of
    its signature is the pipeline's form, with no null default and no `X | None` switch."""
    import json

    from prefect.utilities.callables import parameter_schema

    from copydesk.form import editor_schema
    from copydesk_flows.editor import pipeline_flow

    spec = load_spec(_typed(pipelines))
    own = pipeline_flow("typed")  # read from the pipelines folder, as a flow run's process does
    assert own.name == "copydesk-editor" and "60,000" in own.description
    generated, expected = parameter_schema(own), editor_schema(spec)
    assert generated.properties == expected["properties"], json.dumps(generated.properties, indent=1)
    assert generated.required == ["topics"] and generated.title == "Parameters"
    text = json.dumps(generated.properties)
    assert "anyOf" not in text and '"default": null' not in text
    plain = pipeline_flow("not-served")  # a name the folder does not serve: plain fields, the run refuses it
    assert "vars" in parameter_schema(plain).properties


async def test_a_pipelines_own_flow_takes_topic_lines_and_the_pipelines_own_values(pipelines, no_run):
    from copydesk_flows.editor import pipeline_flow

    _typed(pipelines)
    own = pipeline_flow("typed")
    # through Prefect's own steps, as a flow run started from the form does (prefect.flow_engine:
    # the signature's defaults filled in, then checked): what the form leaves out stays out
    from prefect.utilities.callables import get_call_parameters, parameters_to_args_kwargs

    given = {"topics": "Line one\n\n  \nLine two", "vars": {"words": 900}}
    parameters = own.validate_parameters(get_call_parameters(own.fn, *parameters_to_args_kwargs(own.fn, given)))
    await own.fn(**parameters)
    (request,) = no_run
    assert request.topics == ["Line one", "Line two"] and request.vars == {"words": 900}
    assert request.budget is None and request.mode is None  # left out: the pipeline's cap and mode
    with pytest.raises(InputError, match="unknown variable 'audiance'"):
        await own.fn(topics="x", vars={"audiance": "students"})
    with pytest.raises(InputError, match="no topics"):
        await own.fn(topics="\n  \n")
