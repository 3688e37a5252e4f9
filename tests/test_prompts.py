"""copydesk.prompts: required variables inferred, checked before any call, rendered in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from copydesk.errors import TemplateError
from copydesk.prompts import SAMPLE_CONTEXT, PromptLibrary, PromptSet
from copydesk.spec import PipelineSpec, load_spec


#: The templates these tests check against, written over the copied fixture prompts so that edits
#: to the shared fixture do not change the expected strings.
TEMPLATES = {
    "title.j2": "Give a title for a post about {{ topic }} for {{ audience }}.\n",
    "outline.j2": 'Make an outline for "{{ title }}" ({{ topic }}).\n',
    "section.j2": (
        'Post "{{ title }}". Outline: {{ outline | join(" | ") }}.\n'
        "Write the section {{ section_index }}/{{ section_count }}: {{ section }}.\n"
    ),
    "system.j2": "You write for {{ audience }} in {{ language }}.\n",
}


@pytest.fixture
def basic_spec(basic_spec: Path) -> Path:
    """conftest's copy of the fixture pipeline, with this module's own templates."""
    for name, source in TEMPLATES.items():
        (basic_spec.parent.parent / "prompts" / name).write_text(source, encoding="utf-8")
    return basic_spec


def library(spec_path: Path) -> PromptLibrary:
    return PromptLibrary(load_spec(spec_path))


def prompts_dir(spec_path: Path) -> Path:
    return spec_path.parent.parent / "prompts"


def with_title_prompt(spec: PipelineSpec, name: str) -> PipelineSpec:
    title = spec.stages.title.model_copy(update={"prompt": name})
    return spec.model_copy(update={"stages": spec.stages.model_copy(update={"title": title})})


# ----------------------------------------------------------------------------- inference


def test_required_variables_are_inferred(basic_spec: Path) -> None:
    lib = library(basic_spec)
    assert lib.required("title.j2") == {"topic", "audience"}
    assert lib.required("outline.j2") == {"title", "topic"}
    assert lib.required("section.j2") == {"title", "outline", "section", "section_index", "section_count"}
    assert lib.required("system.j2") == {"audience", "language"}


def test_locally_set_variables_are_not_required(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text(
        "{% set x = topic | upper %}{{ x }}{% for w in [1, 2] %}{{ w }}{% endfor %} {{ audience }}", encoding="utf-8"
    )
    assert library(basic_spec).required("title.j2") == {"topic", "audience"}


# ----------------------------------------------------------------------------- missing variables


def test_check_reports_missing_and_provided_variables(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "outline.j2").write_text("{{ title }} for {{ reader_level }}", encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError) as info:
        lib.check()
    message = str(info.value)
    assert "reader_level" in message
    assert "outline.j2" in message and "stages.outline.prompt" in message
    # What was provided is listed too, so the author sees the available names.
    provided = message.split("provided:")[1]
    for name in ("audience", "language", "title", "topic"):
        assert name in provided
    assert "reader_level" not in provided


def test_check_accepts_a_variable_provided_by_run_overrides(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "outline.j2").write_text("{{ title }} for {{ reader_level }}", encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError):
        lib.check()
    lib.check({"reader_level": "beginners"})  # no error


def test_check_stage_context_is_per_stage(basic_spec: Path) -> None:
    # `section` exists only in the expansion stage's context: using it in the title stage is an error.
    (prompts_dir(basic_spec) / "title.j2").write_text("{{ topic }} {{ section }}", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"section.*stages\.title\.prompt|stages\.title\.prompt.*section"):
        library(basic_spec).check()


def test_render_with_a_missing_variable_names_missing_and_provided(basic_spec: Path) -> None:
    lib = library(basic_spec)
    with pytest.raises(TemplateError) as info:
        lib.render("title.j2", {"audience": "devs", "language": "en-US"})
    message = str(info.value)
    assert "title.j2" in message
    assert "undefined variable(s) topic" in message
    assert "provided: audience, language" in message


def test_missing_variable_fails_before_any_call(basic_spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is static: no template is rendered (and so nothing is sent) when a variable is missing."""
    (prompts_dir(basic_spec) / "section.j2").write_text("{{ section }} {{ missing_one }}", encoding="utf-8")
    lib = library(basic_spec)
    rendered: list[str] = []
    original = lib.render

    def spy(name: str, context: dict) -> str:
        rendered.append(name)
        return original(name, context)

    monkeypatch.setattr(lib, "render", spy)
    with pytest.raises(TemplateError, match="missing_one"):
        lib.render_samples()
    assert rendered == []


# ----------------------------------------------------------------------------- loading errors


def test_syntax_error_names_file_and_line(basic_spec: Path) -> None:
    path = prompts_dir(basic_spec) / "outline.j2"
    path.write_text("first line\nsecond {{ title }}\n{% if topic %}\n{{ topic }\n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        library(basic_spec)
    message = str(info.value)
    assert f"{path.resolve()}:4:" in message
    assert "syntax error" in message


def test_missing_template_names_it_and_the_prompts_dir(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "section.j2").unlink()
    with pytest.raises(TemplateError) as info:
        library(basic_spec)
    message = str(info.value)
    assert "'section.j2'" in message
    assert str(prompts_dir(basic_spec).resolve()) in message
    assert str(basic_spec.resolve()) in message  # which spec asked for it


@pytest.mark.parametrize("name", ["../../etc/passwd", "../pipelines/basic.yaml", "/etc/passwd", "sub/../../pipelines/basic.yaml"])
def test_prompt_name_cannot_escape_prompts_dir(basic_spec: Path, name: str) -> None:
    # ../pipelines/basic.yaml really exists next to prompts_dir: it must still not be loadable.
    assert (prompts_dir(basic_spec) / "../pipelines/basic.yaml").exists()
    spec = with_title_prompt(load_spec(basic_spec), name)
    with pytest.raises(TemplateError, match="is outside prompts_dir"):
        PromptLibrary(spec)


def test_non_utf8_template(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_bytes(b"{{ topic }} \xff\xfe caf\xe9")
    with pytest.raises(TemplateError, match="UTF-8"):
        library(basic_spec)


# ----------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__ }}",
        "{{ topic.__class__ }}",
        "{{ joiner.__init__.__globals__.os }}",
    ],
)
def test_sandbox_blocks_unsafe_access(basic_spec: Path, source: str) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text(source, encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError) as info:
        lib.render("title.j2", {"topic": "x", "audience": "y", "language": "en"})
    assert "title.j2" in str(info.value)


def test_sandbox_still_allows_ordinary_filters(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text("{{ topic | upper }} / {{ audience | length }}", encoding="utf-8")
    assert library(basic_spec).render("title.j2", {"topic": "abc", "audience": "four"}) == "ABC / 4"


# ----------------------------------------------------------------------------- messages and context


def test_system_prompt_becomes_the_system_message(basic_spec: Path) -> None:
    lib = library(basic_spec)
    prompt = lib.prompt("title", lib.context("Async Python"))
    assert prompt == PromptSet(
        system="You write for testers in en-US.",
        user="Give a title for a post about Async Python for testers.",
    )
    assert prompt.messages() == [
        {"role": "system", "content": "You write for testers in en-US."},
        {"role": "user", "content": "Give a title for a post about Async Python for testers."},
    ]


def test_without_system_prompt_there_is_only_a_user_message(basic_spec: Path) -> None:
    text = basic_spec.read_text(encoding="utf-8")
    assert "system_prompt: system.j2\n" in text
    basic_spec.write_text(text.replace("system_prompt: system.j2\n", ""), encoding="utf-8")
    lib = library(basic_spec)
    prompt = lib.prompt("title", lib.context("X"))
    assert prompt.system is None
    assert prompt.messages() == [{"role": "user", "content": "Give a title for a post about X for testers."}]


def test_vars_overrides_win(basic_spec: Path) -> None:
    lib = library(basic_spec)
    context = lib.context("T", {"audience": "editors"})
    assert context["audience"] == "editors"
    prompt = lib.prompt("title", context)
    assert prompt.user == "Give a title for a post about T for editors."
    assert prompt.system == "You write for editors in en-US."
    # Without overrides the spec's default applies.
    assert lib.context("T")["audience"] == "testers"


def test_overrides_cannot_replace_the_topic(basic_spec: Path) -> None:
    lib = library(basic_spec)
    assert lib.context("real topic", {"topic": "injected"})["topic"] == "real topic"


def test_render_samples_for_the_fixture(basic_spec: Path) -> None:
    rendered = library(basic_spec).render_samples()
    assert set(rendered) == {"title", "outline", "expansion"}
    system = "You write for testers in en-US."
    assert all(p.system == system for p in rendered.values())
    assert rendered["title"].user == f"Give a title for a post about {SAMPLE_CONTEXT['topic']} for testers."
    assert rendered["outline"].user == 'Make an outline for "A sample title" (Sample topic).'
    assert rendered["expansion"].user == (
        'Post "A sample title". Outline: First section | Second section | Third section.\n'
        "Write the section 2/3: Second section."
    )


def test_render_samples_for_the_unmodified_fixture() -> None:
    fixture = Path(__file__).parent / "fixtures" / "pipelines" / "basic.yaml"
    lib = library(fixture)
    rendered = lib.render_samples()
    assert set(rendered) == {"title", "outline", "expansion"}
    for stage, prompt in rendered.items():
        assert prompt.user.strip(), stage
        assert prompt.messages()[-1] == {"role": "user", "content": prompt.user}
    assert SAMPLE_CONTEXT["section"] in rendered["expansion"].user


def test_render_samples_uses_overrides(basic_spec: Path) -> None:
    rendered = library(basic_spec).render_samples({"audience": "managers"})
    assert rendered["title"].user.endswith("for managers.")


def test_chinese_template_and_context(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text("为{{ audience }}写一个关于《{{ topic }}》的标题。", encoding="utf-8")
    lib = library(basic_spec)
    assert lib.prompt("title", lib.context("异步编程")).user == "为testers写一个关于《异步编程》的标题。"
