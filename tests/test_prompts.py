"""copydesk.prompts: required variables inferred, checked before any call, rendered in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from copydesk.errors import SpecError, TemplateError
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


def test_run_overrides_may_only_set_variables_the_spec_declares(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "outline.j2").write_text("{{ title }} for {{ audience }}", encoding="utf-8")
    lib = library(basic_spec)
    lib.check({"audience": "beginners"})  # declared by the spec: no error
    with pytest.raises(SpecError, match=r"unknown variable 'audiance' \(this pipeline's variables: audience\)"):
        lib.check({"audiance": "beginners"})
    assert lib.render("outline.j2", lib.context("T", {"audience": "beginners"}, title="X")) == "X for beginners"


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


# ----------------------------------------------------------------------------- confinement


def outside_error(basic_spec: Path, tmp_path: Path, target: Path) -> str:
    link = prompts_dir(basic_spec) / "title.j2"
    link.unlink()
    link.symlink_to(target)
    with pytest.raises(TemplateError) as info:
        library(basic_spec)
    return str(info.value)


def test_template_symlinked_outside_is_refused_whether_or_not_the_target_exists(basic_spec: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT {{ topic }}", encoding="utf-8")
    exists = outside_error(basic_spec, tmp_path, secret)
    missing = outside_error(basic_spec, tmp_path, tmp_path / "no-such-file.txt")
    assert "'title.j2' is outside prompts_dir" in exists
    assert exists == missing
    assert "SECRET" not in exists and "secret.txt" not in exists


def test_template_symlinked_inside_is_fine(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "real-title.j2").write_text("Title for {{ topic }}", encoding="utf-8")
    (prompts_dir(basic_spec) / "title.j2").unlink()
    (prompts_dir(basic_spec) / "title.j2").symlink_to("real-title.j2")
    assert library(basic_spec).render("title.j2", {"topic": "X"}) == "Title for X"


@pytest.mark.parametrize(
    "tag", ["{% include NAME %}", "{% import NAME as m %}", "{% extends NAME %}", "{% from NAME import x %}"]
)
@pytest.mark.parametrize("name", ["'../pipelines/basic.yaml'", "'/etc/passwd'", "'link.j2'"])
def test_include_import_extends_are_confined(basic_spec: Path, tmp_path: Path, tag: str, name: str) -> None:
    (tmp_path / "outside.j2").write_text("OUTSIDE {% macro x() %}{% endmacro %}", encoding="utf-8")
    (prompts_dir(basic_spec) / "link.j2").symlink_to(tmp_path / "outside.j2")
    (prompts_dir(basic_spec) / "title.j2").write_text(tag.replace("NAME", name) + " {{ topic }}", encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError) as info:
        lib.render("title.j2", {"topic": "x"})
    message = str(info.value)
    assert "is outside prompts_dir" in message and "title.j2:1" in message
    assert "OUTSIDE" not in message


def test_include_inside_prompts_dir_works(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "parts").mkdir()
    (prompts_dir(basic_spec) / "parts" / "tone.j2").write_text("Be {{ audience }}-friendly.", encoding="utf-8")
    (prompts_dir(basic_spec) / "title.j2").write_text("{% include 'parts/tone.j2' %} {{ topic }}", encoding="utf-8")
    assert library(basic_spec).render("title.j2", {"topic": "T", "audience": "dev"}) == "Be dev-friendly. T"


def test_prompts_dir_outside_the_project_is_refused_by_the_library_too(basic_spec: Path) -> None:
    from copydesk.errors import SpecError

    spec = load_spec(basic_spec).model_copy(update={"prompts_dir": Path("/proc/self")})
    with pytest.raises(SpecError, match="prompts_dir: must resolve inside"):
        PromptLibrary(spec)


# ----------------------------------------------------------------------------- bounded rendering


#: A value that doubles 40 times from shared parts (2**40 leaves once expanded, a few objects in memory).
DOUBLING = "{{% set ns = namespace(l=[]) %}}{{% for i in range(40) %}}{{% set ns.l = {} %}}{{% endfor %}}{{{{ ns.l }}}}"


@pytest.mark.parametrize(
    "source, needle",
    [
        ("{{ 'x' * 300000000 }}", "a repeated value would be 300,000,000 long"),
        ("{{ [1, 2] * 300000000 }}", "a repeated value would be 1,200,000,000 long"),
        ("{{ 9 ** (9 ** 8) }}", "a power would exceed 4096 bits"),
        ("{{ (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) }}", "a product would exceed"),
        ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "longer than 2 s"),
        ("{% set s = 'x' * 200000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", "longer than 2 s"),
        ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", "longer than 2 s"),
        ("{{ range(10 ** 9) }}", "range() is limited to 10,000 items"),
        ("{{ range(10 ** 100)|list }}", "range() is limited to 10,000 items"),
        ("{% set s = 'x' * 200000 %}{{ s ~ s }}", "a ~ concatenation would be 400,000 long"),
        ("{% set s = 'x' * 200000 %}{{ s" + " ~ s" * 5000 + " }}", "a ~ concatenation would be 400,000 long"),

        ("{% set s = 'x' * 200000 %}{{ s + s }}", "a sum would be 400,000 long"),
        ("{% set s = 'x' * 200000 %}{% for i in range(3) %}{{ s }}{% endfor %}", "rendered prompt is longer than 262,144"),
        ("{{ 'x'|center(1000000000) }}", "a width for center"),
        ("{{ 'x'.center(10 ** 9) }}", "a width for center"),
        ("{{ 'x'.ljust(1000000000) }}", "a width for ljust"),
        ("{{ 'x'.zfill(1000000000) }}", "a width for zfill"),
        ("{{ 'x'|indent(1000000000) }}", "the indented text would be"),
        ("{{ '%1000000000d'|format(1) }}", "a format width of 1000000000"),
        ("{{ '%*d'|format(1000000000, 1) }}", "a format width"),
        ("{{ '%1000000000d' % 1 }}", "a format width of 1000000000"),
        ("{{ '{:>1000000000}'.format(1) }}", "a format width of 1000000000"),
        ("{{ '{:>{}}'.format(1, 1000000000) }}", "a format width"),
        ("{{ ('x' * 200000).replace('', 'y' * 200000) }}", "the replaced string would be"),
        ("{{ ('x' * 200000)|replace('x', 'yy') }}", "the replaced string would be"),
        ("{{ range(10000)|join('x' * 200000) }}", "the joined string would be"),
        ("{{ ('x' * 1000).join(range(10000)|map('string')) }}", "the joined string would be"),
        ("{{ [1]|batch(1000000000, 'x')|list }}", "the batch size"),
        ("{{ range(3)|slice(1000000000)|list }}", "the slice size"),
        ("{{ 'abc'|wordwrap(1, wrapstring='y' * 200000) }}", "the wrapped text would be"),
        ("{{ lipsum(1000000) }}", "lipsum() asked for too much text"),
        ("{% set ns = namespace(s=[1]) %}{% for i in range(40) %}{% set _ = ns.s.extend(ns.s) %}{% endfor %}",
         "a template may not change a list in place ('extend')"),
        ("{{ ['x' * 200000] * 200000 }}", "a repeated value would be"),
        ("{{ 'x'.encode() * 1000000000 }}", "a repeated value would be 1,000,000,000 long"),
        ("{% set b = 'x' * 200000 %}{% set x %}{% for i in range(10000) %}{{ b }}{% endfor %}{% endset %}{{ x|length }}",
         "a block's output would be"),
        ("{% set b = 'x' * 200000 %}{% macro m() %}{% for i in range(10000) %}{{ b }}{% endfor %}{% endmacro %}{{ m()|length }}",
         "a block's output would be"),
        ("{% set b = 'x' * 200000 %}{% set d = {} %}{% for i in range(10000) %}{% set _ = d.update({i: b}) %}{% endfor %}",
         "a template may not change a dict in place ('update')"),
        ("{{ {'a': [1, 2]}|tojson(indent=1000000000) }}", "a tojson indent"),
        ("{{ [2 ** 4000] * 200000 }}", "a repeated value would be"),
        ("{{ range(10000)|map('center', 200000)|list|length }}", "a filter's items would be"),
        ("{{ range(10000)|map('center', 200000)|join|length }}", "a filter's items would be"),
        ("{{ ('x' * 200000).translate({120: 'y' * 200000}) }}", "the translated string would be"),
        ("{{ 'x'.encode().center(1000000000) }}", "a width for center"),
        ("{{ '%1000000000d'.encode() % 1 }}", "a format width of 1000000000"),
        ("{{ '{:.1000000000f}'.format(1.0) }}", "a format width of 1000000000"),
        # issue 20, finding 4: values built from shared parts, counted once expanded
        (DOUBLING.format("[ns.l, ns.l]"), "a list, tuple or mapping would be 262,146 long"),
        (DOUBLING.format("(ns.l, ns.l)"), "a list, tuple or mapping would be 262,146 long"),
        (DOUBLING.format("{'a': ns.l, 'b': ns.l}"), "a list, tuple or mapping would be 262,146 long"),
        (DOUBLING.format("dict(a=ns.l, b=ns.l)"), "a value would be 262,146 long"),
        (DOUBLING.format("cycler(ns.l, ns.l).items"), "a value would be 262,146 long"),
        (DOUBLING.format("[ns.l, ns.l]|list"), "a list, tuple or mapping would be"),
        (DOUBLING.format("'x'.join([ns.l, ns.l]|map('string'))"), "would be"),
        (DOUBLING.format("'{0}{0}'.format(ns.l)"), "the formatted string would be"),
        (DOUBLING.format("'%s%s'|format(ns.l, ns.l)"), "would be"),
        ("{% set s = 'x' * 4000 %}{{ ('{0}' * 60000).format(s) }}", "the formatted string would be 241,620,000 long"),
        ("{% set s = 'x' * 4000 %}{{ ('%(a)s' * 50000) % {'a': s} }}", "the formatted string would be"),
        ("{% set ns = namespace(l=[]) %}{% for i in range(900) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l|tojson(indent=64) }}",
         "the JSON text would be"),
        ("{{ ([[1] * 20] * 10000)|sum(start=[]) }}", "a repeated value would be"),
        ("{{ ([[1] * 20] * 5000)|sum(start=[]) }}", "summing 5,000 sequences would copy about"),
        ("{{ ('http://a.co ' * 20000)|urlize(target='t' * 100000) }}", "the linked text would be"),
        ("{{ (1).to_bytes(10 ** 9, 'big') }}", "a to_bytes length 1,000,000,000 is too large"),
        ("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}"
         "{% set ns.l = ns.l + [namespace(v='x' * 200000 ~ i)] %}{% endfor %}", "built more than 8,388,608"),
        ("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}"
         "{% set ns.l = ns.l + [('x' * 200000 ~ i)|map('upper')] %}{% endfor %}", "built more than 8,388,608"),
        ("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}{% set s = 'x' * 200000 ~ i %}"
         "{% macro m() %}{{ s }}{% endmacro %}{% set ns.l = ns.l + [m] %}{% endfor %}", "built more than 8,388,608"),
        ("{% set l = ['x' * 200000] %}{% set x %}{% for i in range(10000) %}{{ l }}{% endfor %}{% endset %}",
         "built more than 8,388,608"),
    ],
)
def test_rendering_is_bounded(basic_spec: Path, source: str, needle: str) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text(source, encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError) as info:
        lib.render("title.j2", {"topic": "x"})
    message = str(info.value)
    assert needle in message
    assert str(prompts_dir(basic_spec).resolve() / "title.j2") in message
    assert info.value.exit_code == 2
    assert len(message) < 400


@pytest.mark.parametrize(
    "source, needle",
    [
        ("{{ 1 / 0 }}", "title.j2:2: rendering failed: ZeroDivisionError"),
        ("{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}", "title.j2:2: templates call or include each other too deeply"),
        ("{{ 'a' - 1 }}", "title.j2:2: rendering failed: TypeError"),
        ("{{ {}['k' * 100] }}", "title.j2:2:"),
        ("{% include 'title.j2' %}", "too deeply"),
    ],
)
def test_every_rendering_exception_is_a_template_error_with_its_line(basic_spec: Path, source: str, needle: str) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text("first line\n" + source, encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        library(basic_spec).render("title.j2", {"topic": "x"})
    assert needle in str(info.value)
    assert "k" * 100 not in str(info.value)


def test_deeply_nested_template_is_a_template_error(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", encoding="utf-8")
    with pytest.raises(TemplateError, match="title.j2: the template nests too deeply to compile"):
        library(basic_spec)


def test_ordinary_templates_still_render(basic_spec: Path) -> None:
    source = (
        "{{ 'ab' * 3 }} {{ 'a%sb' % 'c' }} {{ range(3)|join(',') }} {{ topic|center(9) }}|"
        "{% for x in outline %}{{ loop.index }}/{{ loop.length }} {{ x }};{% endfor %} {{ 2 ** 10 }} "
        "{{ '{}-{}'.format(1, 2) }} {{ outline|batch(2)|list|length }} {{ 'a b c'|wordwrap(2) }} {{ topic ~ '!' }}"
    )
    (prompts_dir(basic_spec) / "title.j2").write_text(source, encoding="utf-8")
    rendered = library(basic_spec).render("title.j2", {"topic": "x", "outline": ["p", "q"]})
    assert rendered == "ababab acb 0,1,2     x    |1/2 p;2/2 q; 1024 1-2 1 a\nb\nc x!"


# ----------------------------------------------------------------------------- run overrides


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"topic": "x"}, "var 'topic': the name is reserved"),
        ({"section_count": 9}, "var 'section_count': the name is reserved"),
        ({"bad name": 1}, "var 'bad name': names must be identifiers"),
        ({"audience": object()}, "var 'audience': a object is not a JSON-like value"),
        ({"audience": "x" * 100_000}, "at most 65,536 are allowed"),
        ({f"v{i}": 1 for i in range(101)}, "101 vars; at most 100"),
    ],
)
def test_check_validates_run_overrides(basic_spec: Path, overrides: dict, needle: str) -> None:
    from copydesk.errors import SpecError

    with pytest.raises(SpecError) as info:
        library(basic_spec).check(overrides)
    assert str(info.value).startswith("vars override: ")
    assert needle in str(info.value)
    assert info.value.exit_code == 2


def test_every_run_path_checks_overrides(basic_spec: Path) -> None:
    """The CLI, the editor form and scheduled runs all build a RunRequest and prepare it."""
    from copydesk.errors import SpecError
    from copydesk.runner import PipelineRun, RunRequest

    request = RunRequest(spec_path=str(basic_spec), topics=["t"], vars={"section": "injected"})
    with pytest.raises(SpecError, match="vars override: var 'section': the name is reserved"):
        PipelineRun.prepare(request)


def test_template_file_size_is_capped(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text("{{ topic }}" + "x" * (300 * 1024), encoding="utf-8")
    with pytest.raises(TemplateError, match="title.j2: template 'title.j2' is larger than 256 KiB"):
        library(basic_spec)


# ----------------------------------------------------------------------------- what may be a template


@pytest.mark.parametrize(
    "setup, include, needle",
    [
        ({".secrets/token.j2": "TOKEN-123"}, ".secrets/token.j2", "lies in a dot-folder or is a dot-file"),
        ({"notes.txt": "TOKEN-123"}, "notes.txt", "is not a template file: templates are *.j2, *.jinja, *.md"),
        ({".hidden/token.j2": "TOKEN-123", "link.j2": "->.hidden/token.j2"}, "link.j2", "lies in a dot-folder"),
        ({"token.cfg": "TOKEN-123", "cfg.j2": "->token.cfg"}, "cfg.j2", "is not a template file"),
        ({"bin.j2": "TOKEN-123\0"}, "bin.j2", "is not a text file"),
    ],
)
@pytest.mark.parametrize("tag", ["{% include NAME %}", "{% import NAME as m %}", "{% extends NAME %}"])
def test_include_import_extends_load_only_template_files(
    basic_spec: Path, setup: dict[str, str], include: str, needle: str, tag: str
) -> None:
    for name, content in setup.items():
        path = prompts_dir(basic_spec) / name
        path.parent.mkdir(exist_ok=True)
        if content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content, encoding="utf-8")
    (prompts_dir(basic_spec) / "title.j2").write_text(tag.replace("NAME", repr(include)) + " {{ topic }}", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        library(basic_spec).render("title.j2", {"topic": "x"})
    message = str(info.value)
    assert f"title.j2:1: included template {include!r} {needle}" in message
    assert "TOKEN-123" not in message


@pytest.mark.parametrize("variable", ["COPYDESK_OUTPUT_DIR", "COPYDESK_STATE_DIR"])
def test_templates_in_the_output_or_state_folder_are_refused(
    basic_spec: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    folder = prompts_dir(basic_spec) / "generated"
    (folder / "run-1").mkdir(parents=True)
    (folder / "run-1" / "article.md").write_text("MODEL OUTPUT {{ topic }}", encoding="utf-8")
    monkeypatch.setenv(variable, str(folder))
    (prompts_dir(basic_spec) / "title.j2").write_text("{% include 'generated/run-1/article.md' %}", encoding="utf-8")
    with pytest.raises(TemplateError, match="included template 'generated/run-1/article.md' lies in copydesk's output or state folder"):
        library(basic_spec).render("title.j2", {"topic": "x"})
    spec = with_title_prompt(load_spec(basic_spec), "generated/run-1/article.md")
    with pytest.raises(TemplateError) as info:
        PromptLibrary(spec)
    assert f"{basic_spec.resolve()}: stages.title.prompt: template 'generated/run-1/article.md' lies in copydesk's output" in str(info.value)


def test_a_prompts_dir_in_the_output_folder_is_refused_by_the_library(basic_spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from copydesk.errors import SpecError

    monkeypatch.setenv("COPYDESK_OUTPUT_DIR", str(prompts_dir(basic_spec)))
    with pytest.raises(SpecError, match="prompts_dir: may not be or lie in copydesk's output or state folder"):
        library(basic_spec)


def test_jinja_and_markdown_templates_load(basic_spec: Path) -> None:
    (prompts_dir(basic_spec) / "parts").mkdir()
    (prompts_dir(basic_spec) / "parts" / "tone.md").write_text("Be brief.", encoding="utf-8")
    (prompts_dir(basic_spec) / "t.jinja").write_text("{% include 'parts/tone.md' %} {{ topic }}", encoding="utf-8")
    spec = with_title_prompt(load_spec(basic_spec), "t.jinja")
    assert PromptLibrary(spec).render("t.jinja", {"topic": "T"}) == "Be brief. T"


# ----------------------------------------------------------------------------- nothing grows after it was weighed


@pytest.mark.parametrize(
    "source, needle",
    [
        ("{% set l = [] %}{% set _ = l.append(l) %}", "a template may not change a list in place ('append')"),
        ("{% set d = {} %}{% set _ = d.setdefault('k', 1) %}", "a template may not change a dict in place ('setdefault')"),
        ("{% set l = [2, 1] %}{% set _ = l.sort() %}", "a template may not change a list in place ('sort')"),
        ("{% set l = [2, 1] %}{% set _ = l.pop() %}", "a template may not change a list in place ('pop')"),
        ("{% set _ = {}.update(a=1) %}", "a template may not change a dict in place ('update')"),
    ],
)
def test_lists_mappings_and_sets_cannot_change_in_place(basic_spec: Path, source: str, needle: str) -> None:
    (prompts_dir(basic_spec) / "title.j2").write_text(source + "{{ topic }}", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        library(basic_spec).render("title.j2", {"topic": "x"})
    assert needle in str(info.value)


def test_the_spec_vars_are_not_changed_by_a_render(basic_spec: Path) -> None:
    basic_spec.write_text(basic_spec.read_text(encoding="utf-8").replace("  audience: testers\n",
                          "  audience: testers\n  who: [devs]\n"), encoding="utf-8")
    (prompts_dir(basic_spec) / "title.j2").write_text("{% set _ = who.append('x') %}{{ topic }}", encoding="utf-8")
    lib = library(basic_spec)
    with pytest.raises(TemplateError, match="may not change a list in place"):
        lib.render("title.j2", lib.context("x"))
    assert lib.spec.vars["who"] == ["devs"] and lib.defaults["who"] == ["devs"]


def test_namespaces_and_accumulation_still_work(basic_spec: Path) -> None:
    source = (
        "{% set ns = namespace(items=[], n=0) %}{% for s in outline %}{% set ns.items = ns.items + [s|upper] %}"
        "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.items|join(',') }} {{ ns.n }} {{ ns }} "
        "{{ {'b': [1, 2.5], 'a': none}|tojson }} {{ [[1], [2, 3]]|sum(start=[]) }} {{ '%s-%s' % (1, 'x') }} "
        "{{ (1, 2) }} {{ {'k': 'v'}.items()|list }} {{ [1, 2] + [3] }} {{ 'http://a.co'|urlize(target='_blank') }}"
    )
    (prompts_dir(basic_spec) / "title.j2").write_text(source, encoding="utf-8")
    rendered = library(basic_spec).render("title.j2", {"topic": "x", "outline": ["p", "q"]})
    assert rendered == (
        'P,Q 2 <namespace> {"a": null, "b": [1, 2.5]} [1, 2, 3] 1-x (1, 2) [(\'k\', \'v\')] [1, 2, 3] '
        '<a href="http://a.co" rel="noopener" target="_blank">http://a.co</a>'
    )


@pytest.mark.parametrize("variable", [None, "COPYDESK_OUTPUT_DIR", "copydesk_output_dir", "COPYDESK_STATE_DIR"])
def test_reserved_folders_agree_with_the_settings(
    basic_spec: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str | None
) -> None:
    import os

    from copydesk.prompts import reserved_folders
    from copydesk.settings import Settings

    for name in list(os.environ):
        if name.upper() in ("COPYDESK_OUTPUT_DIR", "COPYDESK_STATE_DIR"):
            monkeypatch.delenv(name)
    if variable:
        monkeypatch.setenv(variable, str(tmp_path / "elsewhere"))
    settings = Settings()
    reserved = reserved_folders(load_spec(basic_spec))
    assert Path(os.path.realpath(settings.output_dir)) in reserved
    state = Path(os.path.realpath(settings.state_dir))
    default_state = variable is None or "STATE" not in variable.upper()
    assert state in reserved or (default_state and state.name == ".copydesk")


@pytest.mark.parametrize(
    "source, needle",
    [
        ("{% set x %}{% for i in range(10000) %}{{ m }}{% endfor %}{% endset %}", "built more than 8,388,608"),
        ("{{ ('%s' * 5000) % m }}", "the formatted string would be"),
        ("{{ m ~ m }}", "a ~ concatenation would be"),
    ],
)
def test_an_imported_templates_text_counts_where_it_is_printed(basic_spec: Path, source: str, needle: str) -> None:
    (prompts_dir(basic_spec) / "body.j2").write_text("{{ 'x' * 200000 }}", encoding="utf-8")
    (prompts_dir(basic_spec) / "title.j2").write_text("{% import 'body.j2' as m %}" + source, encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        library(basic_spec).render("title.j2", {"topic": "x"})
    assert needle in str(info.value)
