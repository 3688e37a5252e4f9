"""The manual (docs/, mkdocs.yml) builds, and says what the code has.

- `mkdocs build --strict` passes (into a temporary folder): no broken link or anchor, no
  page left out of the navigation, and the spec reference equal to the models (the hook
  in scripts/spec_reference.py warns otherwise, and strict turns the warning into a failure);
- every `copydesk` command and subcommand (walked from the typer app) and each of their
  long options appears in the docs;
- every environment variable the settings read appears on the environment page;
- every key of a pipeline spec (walked from `PipelineSpec` here, not by the generator)
  appears in the spec reference, and the committed reference is what the generator makes.

Each check is a function that returns what is missing; the tests below also feed them
text with one mention taken out, so they are seen to fail.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from conftest import ROOT

DOCS = ROOT / "docs"


def _docs_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.glob("*.md")))


def _generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("spec_reference_under_test", ROOT / "scripts" / "spec_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- what the code has


def commands() -> dict[str, list[str]]:
    """Every command line, `copydesk server password`, with its long options."""
    import typer.main

    from copydesk.cli import app

    found: dict[str, list[str]] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if getattr(command, "hidden", False):
                continue
            line = f"{prefix} {name}"
            found[line] = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
                           if opt.startswith("--") and opt != "--help"]
            if hasattr(command, "commands"):
                walk(command, line)

    walk(typer.main.get_command(app), "copydesk")
    return found


def environment_variables() -> list[str]:
    """The names `copydesk.settings.Settings` reads: its aliases, else COPYDESK_<FIELD>."""
    from copydesk.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    names = []
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
        names += [str(choice) for choice in choices] or [f"{prefix}{field}".upper()]
    return sorted({*names, "OPENAI_API_KEY", "OPENAI_BASE_URL"})


def spec_keys() -> list[str]:
    """Every dotted key of a pipeline spec; `pricing.NAME.input` for the values of a mapping of models."""
    from copydesk.spec import PipelineSpec

    def model_in(annotation: Any) -> type[BaseModel] | None:
        while get_origin(annotation) in (Union, types.UnionType) or get_origin(annotation) is dict:
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[-1]
        return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None

    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field_name, info in model.model_fields.items():
            if info.exclude:
                continue
            name = info.alias or field_name  # the key as a spec writes it (`vars` for var_specs)
            keys.append(prefix + name)
            nested = model_in(info.annotation)
            if nested is not None:
                mapping = get_origin(info.annotation) is dict
                walk(nested, f"{prefix}{name}.NAME." if mapping else f"{prefix}{name}.")

    walk(PipelineSpec, "")
    return keys


# ----------------------------------------------------------------------------- the checks


def missing_commands(text: str) -> list[str]:
    """Commands, and `command --option` pairs, that `text` does not mention."""
    missing = []
    for line, options in commands().items():
        if f"`{line}" not in text:
            missing.append(line)
        missing += [f"{line} {opt}" for opt in options if opt not in text]
    return missing


def missing_variables(text: str) -> list[str]:
    return [name for name in environment_variables() if f"`{name}`" not in text]


def missing_keys(text: str) -> list[str]:
    return [key for key in spec_keys() if f"`{key}`" not in text]


# ----------------------------------------------------------------------------- tests


def test_the_site_builds_strictly(tmp_path):
    exe = Path(sys.executable).with_name("mkdocs")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([str(exe), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                             "--site-dir", str(site)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    reference = (site / "spec-reference.html").read_text(encoding="utf-8")
    assert "qc.moderation.on_unavailable" in reference
    assert (site / "security.html").exists() and (site / "search" / "search_index.json").exists()
    # offline: no web font or other asset is linked from elsewhere
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")


def test_every_command_and_option_is_documented():
    found = commands()
    assert {"copydesk run", "copydesk budget create", "copydesk server password"} <= set(found)
    assert missing_commands(_docs_text()) == []


def test_every_environment_variable_is_documented():
    names = environment_variables()
    assert {"COPYDESK_MAX_ANSWER_BYTES", "OPENAI_API_KEY", "COPYDESK_STATE_DIR"} <= set(names)
    assert missing_variables((DOCS / "environment.md").read_text(encoding="utf-8")) == []


def test_every_spec_key_is_in_the_reference():
    keys = spec_keys()
    assert {"qc.moderation.on_unavailable", "batch.model", "stages.expansion.batch_model",
            "pricing.NAME.batch_output", "budget.shared.timezone"} <= set(keys)
    assert missing_keys((DOCS / "spec-reference.md").read_text(encoding="utf-8")) == []


def test_the_committed_reference_is_what_the_models_make():
    assert _generator().main(["--check"]) == 0, "run `python scripts/spec_reference.py` and commit the page"


def test_the_checks_see_a_mention_taken_out():
    text = _docs_text()
    assert missing_commands(text.replace("`copydesk server password", "`copydesk server pass")) == [
        "copydesk server password"]
    assert missing_commands(text.replace("--editor-review-timeout", "--editor-timeout")) == [
        "copydesk serve --editor-review-timeout"]
    env_page = (DOCS / "environment.md").read_text(encoding="utf-8")
    assert missing_variables(env_page.replace("`COPYDESK_MAX_ANSWER_BYTES`", "COPYDESK_MAX_ANSWER")) == [
        "COPYDESK_MAX_ANSWER_BYTES"]
    reference = (DOCS / "spec-reference.md").read_text(encoding="utf-8")
    assert missing_keys(reference.replace("`qc.moderation.on_unavailable`", "on_unavailable")) == [
        "qc.moderation.on_unavailable"]


def test_a_stale_reference_fails_the_strict_build(caplog):
    """The hook renders the page from the models and warns (an error under --strict) when
    the committed page differs."""
    generator = _generator()
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_uri="spec-reference.md"))
    committed = (DOCS / "spec-reference.md").read_text(encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        assert generator.on_page_markdown(committed, page=page) == committed
        assert not caplog.records
        stale = committed.replace("`qc.moderation.on_unavailable`", "`qc.moderation.when_down`")
        assert generator.on_page_markdown(stale, page=page) == committed
    assert [r.name for r in caplog.records] == ["mkdocs.hooks.spec_reference"]
    assert "differs from copydesk.spec's models" in caplog.records[0].getMessage()


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub and MkDocs' toc both give the headings of `page`."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def broken_links(readme: str) -> list[str]:
    """The README's relative links whose file, or anchor, does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        page = ROOT / path
        if not page.is_file() or (anchor and anchor not in _anchors(page)):
            broken.append(target)
    return broken


def test_the_readme_links_to_the_docs_pages():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for command in ("bash scripts/quickstart.sh", "bash scripts/test.sh"):
        assert command in readme
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", readme))
    assert linked == {page.name for page in DOCS.glob("*.md")}
    assert broken_links(readme) == []
    assert broken_links(readme.replace("(docs/budgets.md#shared-allowances-budgetshared)",
                                       "(docs/budgets.md#shared-budgets)")) == ["docs/budgets.md#shared-budgets"]


def test_a_field_without_a_description_stops_the_generator(monkeypatch):
    generator = _generator()
    monkeypatch.delitem(generator.NOTES, "QCSpec.min_words")
    with pytest.raises(SystemExit, match="QCSpec.min_words has no description"):
        generator.render()
    monkeypatch.setitem(generator.NOTES, "QCSpec.min_words", "x")
    monkeypatch.setitem(generator.NOTES, "QCSpec.gone", "a key the models do not have")
    with pytest.raises(SystemExit, match="QCSpec.gone"):
        generator.render()
