"""copydesk.spec: YAML → pydantic with extra="forbid", one readable SpecError per problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from copydesk.errors import InputError, SpecError
from copydesk.spec import PipelineSpec, StageSpec, load_spec, parse_spec

FIXTURE = Path(__file__).parent / "fixtures" / "pipelines" / "basic.yaml"

#: The tests' own spec (a copy of the basic fixture as it was written), so that edits to the shared
#: fixture do not move the lines and values these tests check.
BASE = """\
name: basic
language: en-US
model: gpt-4o-mini
prompts_dir: ../prompts
system_prompt: system.j2
vars:
  audience: testers
stages:
  title:
    prompt: title.j2
    temperature: 0.9
    top_p: 1.0
    max_tokens: 20
    presence_penalty: 0.0
  outline:
    prompt: outline.j2
    temperature: 0.3
    max_tokens: 300
    min_sections: 3
    max_sections: 7
  expansion:
    prompt: section.j2
    temperature: 0.7
    top_p: 0.9
    max_tokens: 600
    presence_penalty: 0.6
    frequency_penalty: 0.1
    seed: 42
budget:
  max_total_tokens: 60000
concurrency: 4
qc:
  grammar:
    enabled: false
  moderation:
    enabled: true
    provider: auto
  min_words: 20
"""


def write(tmp_path: Path, text: str, name: str = "pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the YAML")


def replaced(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


# ----------------------------------------------------------------------------- the fixture


def test_fixture_spec_loads() -> None:
    spec = load_spec(FIXTURE)
    assert isinstance(spec, PipelineSpec)
    assert spec.name == "basic"
    assert [name for name, _ in spec.stages.items()] == ["title", "outline", "expansion"]
    assert spec.source == FIXTURE.resolve()
    # prompts_dir resolves relative to the spec file, not the working directory.
    assert spec.resolved_prompts_dir == (FIXTURE.parent.parent / "prompts").resolve()
    assert spec.resolved_prompts_dir.is_dir()


def test_spec_values_are_read(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.model == "gpt-4o-mini"
    assert spec.system_prompt == "system.j2"
    assert spec.vars == {"audience": "testers"}
    assert spec.stages.title.prompt == "title.j2"
    assert spec.stages.outline.min_sections == 3 and spec.stages.outline.max_sections == 7
    assert spec.stages.expansion.seed == 42
    assert spec.budget.max_total_tokens == 60000
    assert spec.concurrency == 4
    assert spec.qc.grammar.enabled is False
    assert spec.qc.min_words == 20
    assert spec.model_for("title") == "gpt-4o-mini"
    assert spec.resolved_prompts_dir == (tmp_path.parent / "prompts").resolve()


def test_stage_model_overrides_pipeline_model(tmp_path: Path) -> None:
    text = replaced("    prompt: outline.j2\n", "    prompt: outline.j2\n    model: other-model\n")
    spec = load_spec(write(tmp_path, text))
    assert spec.model_for("outline") == "other-model"
    assert spec.model_for("expansion") == "gpt-4o-mini"


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


# ----------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_names_file_field_and_line(tmp_path: Path) -> None:
    text = BASE + "bogus_key: 1\n"
    message = spec_error(tmp_path, text)
    path = tmp_path / "pipe.yaml"
    assert f"{path}:{line_of(text, 'bogus_key')}: bogus_key:" in message
    assert "unknown key" in message


def test_unknown_key_inside_a_stage_names_dotted_field_and_line(tmp_path: Path) -> None:
    text = replaced("    max_sections: 7\n", "    max_sections: 7\n    colour: red\n")
    message = spec_error(tmp_path, text)
    path = tmp_path / "pipe.yaml"
    assert f"{path}:{line_of(text, 'colour')}: stages.outline.colour:" in message
    assert "unknown key" in message


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("temperature: 0.9", "temperature: 2.5", "stages.title.temperature", "temperature: 2.5"),
        ("top_p: 0.9", "top_p: 1.5", "stages.expansion.top_p", "top_p: 1.5"),
        ("presence_penalty: 0.6", "presence_penalty: -3", "stages.expansion.presence_penalty", "presence_penalty: -3"),
        ("frequency_penalty: 0.1", "frequency_penalty: 2.1", "stages.expansion.frequency_penalty", "frequency_penalty: 2.1"),
        ("max_tokens: 20", "max_tokens: 0", "stages.title.max_tokens", "max_tokens: 0"),
        ("temperature: 0.3", "temperature: -0.1", "stages.outline.temperature", "temperature: -0.1"),
    ],
)
def test_out_of_range_values(tmp_path: Path, old: str, new: str, field: str, needle: str) -> None:
    text = replaced(old, new)
    message = spec_error(tmp_path, text)
    path = tmp_path / "pipe.yaml"
    assert f"{path}:{line_of(text, needle)}: {field}:" in message
    # The offending value is shown.
    assert new.split(": ")[1] in message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("temperature: 0.9", "temperature: 2.0"),
        ("temperature: 0.9", "temperature: 0"),
        ("top_p: 0.9", "top_p: 1"),
        ("presence_penalty: 0.6", "presence_penalty: -2"),
        ("max_tokens: 20", "max_tokens: 1"),
    ],
)
def test_boundary_values_are_accepted(tmp_path: Path, old: str, new: str) -> None:
    load_spec(write(tmp_path, replaced(old, new)))


def test_min_sections_larger_than_max_sections(tmp_path: Path) -> None:
    text = replaced("min_sections: 3", "min_sections: 9")
    message = spec_error(tmp_path, text)
    assert "stages.outline" in message
    assert "min_sections (9)" in message and "max_sections (7)" in message
    assert f"{tmp_path / 'pipe.yaml'}:{line_of(text, 'outline:')}" in message


def test_missing_expansion_stage(tmp_path: Path) -> None:
    text = BASE.split("  expansion:")[0] + "budget:\n  max_total_tokens: 100\n"
    message = spec_error(tmp_path, text)
    assert "stages.expansion" in message
    assert "required but missing" in message
    assert str(tmp_path / "pipe.yaml") in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = replaced("temperature: 0.9", "temperature: 2.5") + "bogus_key: 1\n"
    message = spec_error(tmp_path, text)
    assert "stages.title.temperature" in message and "bogus_key" in message


# ----------------------------------------------------------------------------- YAML shape


def test_broken_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    text = "name: x\nmodel: m\nstages: [a, b\n"
    message = spec_error(tmp_path, text)
    assert re.search(re.escape(str(tmp_path / "pipe.yaml")) + r":\d+:\d+: invalid YAML", message), message


def test_broken_yaml_points_at_the_bad_line(tmp_path: Path) -> None:
    text = "name: x\nmodel: m\nvars:\n  a: 1\n   b: 2\n"
    message = spec_error(tmp_path, text)
    match = re.search(re.escape(str(tmp_path / "pipe.yaml")) + r":(\d+):(\d+):", message)
    assert match, message
    assert int(match.group(1)) == 5


def test_control_character_is_a_spec_error_naming_the_line(tmp_path: Path) -> None:
    # YAML's reader refuses control characters before parsing starts; that must not escape
    # as a traceback (a terminal escape pasted into a spec).
    text = "name: x\nmodel: m\x1b[2J\n"
    message = spec_error(tmp_path, text)
    assert str(tmp_path / "pipe.yaml") + ":2: invalid YAML" in message, message
    assert "0x1b" in message and "\x1b" not in message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_non_mapping_yaml(tmp_path: Path, text: str, kind: str) -> None:
    message = spec_error(tmp_path, text)
    assert str(tmp_path / "pipe.yaml") in message
    assert "mapping" in message and kind in message


# ----------------------------------------------------------------------------- fields


@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "has space", "-leading", "trailing-", "a--b", ""])
def test_bad_name_pattern(tmp_path: Path, name: str) -> None:
    text = replaced("name: basic", f"name: '{name}'")
    message = spec_error(tmp_path, text)
    assert f"{tmp_path / 'pipe.yaml'}:1: name:" in message


@pytest.mark.parametrize("name", ["ok", "tech-blog", "a1-b2-c3"])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert load_spec(write(tmp_path, replaced("name: basic", f"name: {name}"))).name == name


@pytest.mark.parametrize("reserved", ["topic", "language", "title", "outline", "section", "section_index"])
def test_reserved_var_names(tmp_path: Path, reserved: str) -> None:
    text = replaced("  audience: testers\n", f"  audience: testers\n  {reserved}: x\n")
    message = spec_error(tmp_path, text)
    assert "vars" in message and reserved in message
    assert f"{tmp_path / 'pipe.yaml'}:{line_of(text, 'vars:')}" in message


def test_var_names_must_be_identifiers(tmp_path: Path) -> None:
    text = replaced("  audience: testers\n", "  audience: testers\n  'not ok': x\n")
    message = spec_error(tmp_path, text)
    assert "not ok" in message and "identifiers" in message


SCHEDULE_OK = "schedule:\n  cron: '0 6 * * 1-5'\n  timezone: Asia/Shanghai\n  topics: [a]\n"


def test_good_schedule(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + SCHEDULE_OK))
    assert spec.schedule is not None
    assert spec.schedule.cron == "0 6 * * 1-5" and spec.schedule.timezone == "Asia/Shanghai"


@pytest.mark.parametrize("cron", ["0 6 * *", "0 6 * * * *", "every day"])
def test_schedule_cron_with_wrong_field_count(tmp_path: Path, cron: str) -> None:
    text = BASE + SCHEDULE_OK.replace("0 6 * * 1-5", cron)
    message = spec_error(tmp_path, text)
    assert f"{tmp_path / 'pipe.yaml'}:{line_of(text, 'cron:')}: schedule.cron:" in message


@pytest.mark.parametrize("cron", ["99 99 * * *", "a b c d e", "0 6 32 * *", "0 6 * 13 *", "*/0 * * * *"])
def test_schedule_cron_with_bad_values(tmp_path: Path, cron: str) -> None:
    text = BASE + SCHEDULE_OK.replace("0 6 * * 1-5", cron)
    message = spec_error(tmp_path, text)
    assert "schedule.cron" in message


def test_schedule_unknown_timezone(tmp_path: Path) -> None:
    text = BASE + SCHEDULE_OK.replace("Asia/Shanghai", "Mars/Olympus_Mons")
    message = spec_error(tmp_path, text)
    assert f"{tmp_path / 'pipe.yaml'}:{line_of(text, 'timezone:')}: schedule.timezone:" in message
    assert "Mars/Olympus_Mons" in message


def test_schedule_needs_topics(tmp_path: Path) -> None:
    text = BASE + "schedule:\n  cron: '0 6 * * *'\n  topics: []\n"
    assert "schedule.topics" in spec_error(tmp_path, text)


# ----------------------------------------------------------------------------- sampling params


def test_sampling_params_are_exactly_what_was_written(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.stages.title.sampling_params() == {
        "max_tokens": 20,
        "temperature": 0.9,
        "top_p": 1.0,
        "presence_penalty": 0.0,  # written as 0.0: sent, even though it is falsy
    }
    assert spec.stages.outline.sampling_params() == {"max_tokens": 300, "temperature": 0.3}
    assert spec.stages.expansion.sampling_params() == {
        "max_tokens": 600,
        "temperature": 0.7,
        "top_p": 0.9,
        "presence_penalty": 0.6,
        "frequency_penalty": 0.1,
        "seed": 42,
    }


def test_outline_bounds_are_not_sampling_params(tmp_path: Path) -> None:
    params = load_spec(write(tmp_path, BASE)).stages.outline.sampling_params()
    assert "min_sections" not in params and "max_sections" not in params and "prompt" not in params


def test_max_tokens_is_always_sent_even_when_not_written(tmp_path: Path) -> None:
    text = replaced("    max_tokens: 20\n", "")
    spec = load_spec(write(tmp_path, text))
    params = spec.stages.title.sampling_params()
    assert params["max_tokens"] == 20  # the title stage's default
    assert set(params) == {"max_tokens", "temperature", "top_p", "presence_penalty"}


def test_minimal_stage_sends_only_max_tokens() -> None:
    assert StageSpec(prompt="x.j2").sampling_params() == {"max_tokens": 600}


def test_stop_and_seed_are_sent_when_written() -> None:
    stage = StageSpec(prompt="x.j2", stop=["\n\n"], seed=0, max_tokens=5)
    assert stage.sampling_params() == {"max_tokens": 5, "stop": ["\n\n"], "seed": 0}


@pytest.mark.parametrize("stop", ["", [], ["a", "b", "c", "d", "e"], ["ok", ""]])
def test_bad_stop_sequences(stop: object) -> None:
    with pytest.raises(ValueError):
        StageSpec(prompt="x.j2", stop=stop)


def test_parse_spec_rejects_unknown_key_in_budget() -> None:
    with pytest.raises(SpecError, match=r"budget\.max_tokens"):
        parse_spec(BASE.replace("  max_total_tokens: 60000", "  max_tokens: 60000"), Path("/x/p.yaml"))


def test_booleans_and_strings_are_not_numbers(tmp_path):
    import yaml as _yaml

    from copydesk.errors import SpecError
    from copydesk.spec import load_spec

    base = _yaml.safe_load((Path(__file__).parent / "fixtures" / "pipelines" / "basic.yaml").read_text())
    for field, value in (("temperature", True), ("max_tokens", "20")):
        data = _yaml.safe_load(_yaml.safe_dump(base))
        data["prompts_dir"] = str(Path(__file__).parent / "fixtures" / "prompts")
        data["stages"]["title"][field] = value
        path = tmp_path / f"{field}.yaml"
        path.write_text(_yaml.safe_dump(data))
        with pytest.raises(SpecError, match=f"stages.title.{field}: .*must be a number"):
            load_spec(path)


# ----------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(
    "old, new, first, second",
    [
        ("model: gpt-4o-mini\n", "model: gpt-4o-mini\nmodel: other\n", "model: gpt-4o-mini", "model: other"),
        ("    temperature: 0.3\n", "    temperature: 0.3\n    temperature: 0.5\n", "temperature: 0.3", "temperature: 0.5"),
        ("    enabled: false\n", "    enabled: false\n    enabled: true\n", "enabled: false", "enabled: true"),
    ],
)
def test_duplicate_keys_name_both_lines_at_any_depth(tmp_path: Path, old: str, new: str, first: str, second: str) -> None:
    text = replaced(old, new)
    message = spec_error(tmp_path, text)
    key = first.split(":")[0]
    assert f"duplicate key '{key}' on lines {line_of(text, first)} and {line_of(text, second)}" in message
    assert str(tmp_path / "pipe.yaml") in message


def test_duplicate_keys_on_one_line(tmp_path: Path) -> None:
    text = replaced("  audience: testers\n", "  audience: {a: 1, a: 2}\n")
    message = spec_error(tmp_path, text)
    assert f"duplicate key 'a' twice on line {line_of(text, 'a: 1')} (columns 14 and 20)" in message


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    # A key merged in with `<<` and then written explicitly is YAML's override, not a duplicate.
    text = replaced("    prompt: outline.j2\n", "    prompt: outline.j2\n    <<: {temperature: 0.4}\n")
    assert load_spec(write(tmp_path, text)).stages.outline.temperature == 0.3


# ----------------------------------------------------------------------------- YAML bounds

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    message = spec_error(tmp_path, ALIAS_BOMB)
    assert "aliases expand to more than 100,000 values" in message
    assert "lol" not in message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = BASE + "x-many: &v 1\nx-refs: [" + ", ".join(["*v"] * 150) + "]\n"
    assert "more than 100 aliases" in spec_error(tmp_path, text)


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = replaced("  audience: testers\n", "  audience: &who testers\n  reader: *who\n")
    assert load_spec(write(tmp_path, text)).vars == {"audience": "testers", "reader": "testers"}


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "refers to its own anchor" in spec_error(tmp_path, BASE + "x: &loop [*loop]\n")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested deeper than 64 levels" in spec_error(tmp_path, BASE + "x: " + "[" * 5000 + "]" * 5000 + "\n")


def test_spec_size_is_capped(tmp_path: Path) -> None:
    text = BASE + "description: " + "x" * (300 * 1024) + "\n"
    message = spec_error(tmp_path, text)
    assert "larger than 256 KiB" in message
    assert "xxxx" not in message


# ----------------------------------------------------------------------------- short messages


def test_quoted_values_are_shortened(tmp_path: Path) -> None:
    message = spec_error(tmp_path, replaced("name: basic", "name: " + "X" * 20000))
    assert "name:" in message and "XXXX" in message
    assert len(message) < 400


def test_long_var_names_in_messages_are_shortened(tmp_path: Path) -> None:
    message = spec_error(tmp_path, replaced("  audience: testers\n", f"  {'é' * 1000}: 1\n"))
    assert "names must be identifiers" in message
    assert len(message) < 400


# ----------------------------------------------------------------------------- prompts_dir confinement


def project(tmp_path: Path, prompts_dir: str) -> Path:
    """A project P/ with P/pipelines/pipe.yaml naming `prompts_dir`."""
    (tmp_path / "proj" / "pipelines").mkdir(parents=True)
    (tmp_path / "proj" / "prompts").mkdir()
    return write(tmp_path / "proj" / "pipelines", replaced("prompts_dir: ../prompts", f"prompts_dir: {prompts_dir}"))


@pytest.mark.parametrize("prompts_dir", ["/proc/self", "../..", "../../outside", "/etc", "../prompts/../../outside"])
def test_prompts_dir_outside_the_project_is_refused(tmp_path: Path, prompts_dir: str) -> None:
    (tmp_path / "outside").mkdir()
    path = project(tmp_path, prompts_dir)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert f"{path}:{line_of(BASE, 'prompts_dir')}: prompts_dir: must resolve inside the pipeline's project" in message
    assert str((tmp_path / "proj").resolve()) in message
    assert info.value.exit_code == 2


def test_prompts_dir_symlinked_out_of_the_project_is_refused(tmp_path: Path) -> None:
    path = project(tmp_path, "../linked")
    (tmp_path / "proj" / "linked").symlink_to("/proc/self")
    with pytest.raises(SpecError, match="prompts_dir: must resolve inside"):
        load_spec(path)


def test_the_message_does_not_tell_whether_the_outside_exists(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "outside").mkdir()
    exists = spec_error_at(project(tmp_path / "a", "../../outside"))
    (tmp_path / "b").mkdir()
    missing = spec_error_at(project(tmp_path / "b", "../../outside"))
    assert exists.replace(str(tmp_path / "a"), "X") == missing.replace(str(tmp_path / "b"), "X")


def spec_error_at(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


@pytest.mark.parametrize(
    "prompts_dir, needle",
    [
        ("..", "may not be the project folder"),
        ("../prompts/..", "may not be the project folder"),
        ("../.git", "may not be or lie in a dot-folder"),
        ("../.copydesk/logs", "may not be or lie in a dot-folder"),
        ("../prompts/.hidden", "may not be or lie in a dot-folder"),
        ("../outputs", "may not be or lie in copydesk's output or state folder"),
        ("../outputs/run-1", "may not be or lie in copydesk's output or state folder"),
    ],
)
def test_prompts_dir_may_not_be_the_project_a_dot_folder_or_outputs(tmp_path: Path, prompts_dir: str, needle: str) -> None:
    path = project(tmp_path, prompts_dir)
    message = spec_error_at(path)
    assert f"{path}:{line_of(BASE, 'prompts_dir')}: prompts_dir: {needle}" in message


@pytest.mark.parametrize(
    "field, name, needle",
    [
        ("prompt: title.j2", ".git/config", "lies in a dot-folder or is a dot-file"),
        ("prompt: title.j2", "sub/.env.j2", "lies in a dot-folder or is a dot-file"),
        ("prompt: outline.j2", "config", "is not a template file: templates are *.j2, *.jinja, *.md text files"),
        ("prompt: section.j2", "calls.jsonl", "is not a template file"),
        ("system_prompt: system.j2", "notes.txt", "is not a template file"),
        ("prompt: title.j2", "../outputs/run/article.md", "is outside prompts_dir"),
        ("prompt: title.j2", "/etc/passwd.j2", "is outside prompts_dir"),
    ],
)
def test_template_names_must_be_template_files_outside_dot_folders(
    tmp_path: Path, field: str, name: str, needle: str
) -> None:
    key = field.split(":")[0]
    text = replaced(field, f"{key}: {name}")
    path = write(tmp_path, text)
    message = spec_error_at(path)
    dotted = {"prompt: title.j2": "stages.title.prompt", "prompt: outline.j2": "stages.outline.prompt",
              "prompt: section.j2": "stages.expansion.prompt", "system_prompt: system.j2": "system_prompt"}[field]
    assert f"{path}:{line_of(text, f'{key}: {name}')}: {dotted}: template {name!r} {needle}" in message


@pytest.mark.parametrize("name", ["title.j2", "parts/title.jinja", "title.md", "title.v2.j2"])
def test_template_names_that_are_fine(tmp_path: Path, name: str) -> None:
    assert load_spec(write(tmp_path, replaced("prompt: title.j2", f"prompt: {name}"))).stages.title.prompt == name


@pytest.mark.parametrize("prompts_dir", ["../prompts", "../prompts/../prompts", ".", "prompts-here"])
def test_prompts_dir_inside_the_project_is_fine(tmp_path: Path, prompts_dir: str) -> None:
    path = project(tmp_path, prompts_dir)
    assert load_spec(path).resolved_prompts_dir.is_relative_to((tmp_path / "proj").resolve())


def test_absolute_prompts_dir_inside_the_project_is_fine(tmp_path: Path) -> None:
    path = project(tmp_path, str(tmp_path / "proj" / "prompts"))
    assert load_spec(path).resolved_prompts_dir == (tmp_path / "proj" / "prompts").resolve()


# ----------------------------------------------------------------------------- vars


@pytest.mark.parametrize(
    "vars_yaml, needle",
    [
        ("  topic: x\n", "var 'topic': the name is reserved"),
        ("  section_index: 3\n", "var 'section_index': the name is reserved"),
        ("  range: 3\n", "var 'range': the name is reserved"),
        ("  loop: 3\n", "var 'loop': the name is reserved"),
        ("  bad-name: 3\n", "var 'bad-name': names must be identifiers"),
        ("  when: 2024-01-01\n", "var 'when': a date is not a JSON-like value"),
        ("  big: 100000000000000000000\n", "var 'big': integer out of range"),
        ("  inf: .inf\n", "var 'inf': numbers must be finite"),
        ("  deep: " + "[" * 12 + "]" * 12 + "\n", "var 'deep': nested deeper than 8 levels"),
        ("  huge: " + "x" * 70000 + "\n", "at most 65,536 are allowed"),
        ("  " + "n" * 65 + ": 1\n", "names are at most 64 characters"),
    ],
)
def test_spec_vars_are_validated(tmp_path: Path, vars_yaml: str, needle: str) -> None:
    message = spec_error(tmp_path, replaced("  audience: testers\n", vars_yaml))
    assert needle in message
    assert f"pipe.yaml:{line_of(BASE, 'vars:')}: vars:" in message
    assert len(message) < 600


def test_too_many_vars(tmp_path: Path) -> None:
    many = "".join(f"  v{i}: {i}\n" for i in range(101))
    assert "101 vars; at most 100" in spec_error(tmp_path, replaced("  audience: testers\n", many))


def test_json_like_vars_are_accepted(tmp_path: Path) -> None:
    text = replaced("  audience: testers\n", "  audience: testers\n  n: 3\n  ratio: 0.5\n  flag: true\n  nothing: ~\n  tags: [a, b]\n  more: {k: [1, {x: y}]}\n")
    spec = load_spec(write(tmp_path, text))
    assert spec.vars["more"] == {"k": [1, {"x": "y"}]}


def test_schedule_vars_are_validated_like_the_specs(tmp_path: Path) -> None:
    text = BASE + 'schedule:\n  cron: "0 6 * * *"\n  topics: [a]\n  vars:\n    title: x\n'
    message = spec_error(tmp_path, text)
    assert "schedule.vars" in message and "var 'title': the name is reserved" in message


def test_validate_vars_names_the_origin_and_the_var() -> None:
    from copydesk.spec import validate_vars

    assert validate_vars({"audience": "x", "n": [1, 2]}, origin="--var") == {"audience": "x", "n": [1, 2]}
    with pytest.raises(SpecError, match=r"^--var: var 'outline': the name is reserved"):
        validate_vars({"outline": "x"}, origin="--var")
    with pytest.raises(SpecError, match="var 'f': a builtin_function_or_method is not a JSON-like value"):
        validate_vars({"f": print}, origin="vars override")
    with pytest.raises(SpecError, match="at most 65,536"):
        validate_vars({"a": ["x" * 1000] * 100}, origin="vars override")


# ------------------------------------------------------------------------------ typed vars (copydesk.specvars)

TYPED = """\
  audience: testers
  tone: {type: choice, choices: [practical, playful, formal], default: playful, description: How it sounds}
  words: {type: integer, default: 800, description: About how long}
  ratio: {type: number, default: 0.5}
  formal: {type: bool}
  notes: {type: text, description: Anything else}
  shape: {type: choice, choices: [short, long]}
"""


def test_typed_vars_declare_type_choices_and_default_and_templates_see_the_values(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, replaced("  audience: testers\n", TYPED)))
    assert spec.vars == {"audience": "testers", "tone": "playful", "words": 800, "ratio": 0.5, "formal": False,
                         "notes": "", "shape": "short"}
    assert spec.var_specs["tone"].choices == ["practical", "playful", "formal"]
    assert spec.var_specs["tone"].description == "How it sounds"
    assert spec.var_specs["audience"].type == "string" and spec.var_specs["words"].type == "integer"


def test_plain_values_declare_their_own_type(tmp_path: Path) -> None:
    text = replaced("  audience: testers\n", "  audience: testers\n  n: 3\n  r: 0.5\n  f: true\n  l: [a]\n")
    spec = load_spec(write(tmp_path, text))
    assert {name: var.type for name, var in spec.var_specs.items()} == {
        "audience": "string", "n": "integer", "r": "number", "f": "bool", "l": "json"}


@pytest.mark.parametrize(
    "declaration, needle",
    [
        ("{type: choice, choices: [a, b], default: c}", "vars.bad: Value error, default 'c' is not one of a, b"),
        ("{type: choice}", "choices belong to a choice variable, and a choice variable needs them"),
        ("{type: string, choices: [a]}", "choices belong to a choice variable"),
        ("{type: choice, choices: [a, a]}", "choices are listed twice"),
        ("{type: number}", "vars.bad: Value error, a number variable needs a default"),
        ("{type: integer, default: 1.5}", "default must be a whole number"),
        ("{type: bool, default: maybe}", "default must be true or false, not text"),
        ("{type: string, default: 3}", "default must be text, not a number"),
        ("{type: colour, default: red}", "vars.bad.type: Input should be"),
        ("{type: string, colour: red}", "vars.bad.colour: unknown key"),
    ],
)
def test_bad_declarations_name_the_variable_and_the_problem(tmp_path: Path, declaration: str, needle: str) -> None:
    message = spec_error(tmp_path, replaced("  audience: testers\n", f"  audience: testers\n  bad: {declaration}\n"))
    assert needle in message and "pipe.yaml:" in message


def test_overrides_are_checked_against_the_declarations(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, replaced("  audience: testers\n", TYPED)))
    assert spec.check_vars({"tone": "formal", "words": 1200, "ratio": 1, "formal": True}, origin="form") == {
        "tone": "formal", "words": 1200, "ratio": 1, "formal": True}
    for values, needle in [
        ({"audiance": "x"}, "form: unknown variable 'audiance' (this pipeline's variables: audience, tone, words,"),
        ({"tone": "grumpy"}, "form: variable tone 'grumpy' is not one of practical, playful, formal"),
        ({"words": "many"}, "variable words must be a number, not text"),
        ({"words": True}, "variable words must be a number, not true/false"),
        ({"audience": "two\nlines"}, "variable audience must be one line"),
        ({"formal": "yes"}, "variable formal must be true or false, not text"),
    ]:
        with pytest.raises(SpecError) as info:
            spec.check_vars(values, origin="form")
        assert needle in str(info.value), str(info.value)


def test_schedule_vars_must_be_declared(tmp_path: Path) -> None:
    text = BASE + 'schedule:\n  cron: "0 6 * * *"\n  topics: [a]\n  vars:\n    audiance: x\n'
    assert "schedule.vars: unknown variable 'audiance' (this pipeline's variables: audience)" in spec_error(tmp_path, text)


def test_var_text_from_the_command_line_is_read_as_the_declared_type() -> None:
    from copydesk.specvars import VarSpec, parse_text

    assert parse_text(VarSpec(type="integer", default=1), "5") == 5
    assert parse_text(VarSpec(type="integer", default=1), "5.5") == 5.5  # refused by the check, naming the var
    assert parse_text(VarSpec(type="number", default=1), "0.25") == 0.25
    assert parse_text(VarSpec(type="bool"), "yes") is True and parse_text(VarSpec(type="bool"), "off") is False
    assert parse_text(VarSpec(type="string"), "123") == "123" and parse_text(VarSpec(type="string"), "null") == "null"
    assert parse_text(VarSpec(type="choice", choices=["a"]), "a") == "a"
    assert parse_text(VarSpec(type="json"), '{"k": [1]}') == {"k": [1]} and parse_text(None, "plain") == "plain"
