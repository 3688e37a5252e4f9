"""Data reaching the terminal: Rich markup and terminal escapes in titles, model names and
paths are shown inert (copydesk.console.safe), through the real `copydesk` command."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from conftest import run_cli
from fake_openai import FakeOpenAI, default_reply
from rich.console import Console

from copydesk.console import safe, strip_control

HOSTILE_TITLE = "Why [/] matters \x1b[2J\x1b]0;pwned\x07[bold red]now"


def _render(markup: str) -> str:
    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    console.print(markup, highlight=False)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_safe_escapes_markup_and_strips_escapes() -> None:
    assert _render(safe("Why [/] matters")) == "Why [/] matters\n"
    assert _render(safe("gpt[/bold]")) == "gpt[/bold]\n"
    data = "[red]x[/red] path\\"
    assert _render(f"[green]ok[/] [dim]{safe(data)}[/dim] end") == "ok [red]x[/red] path\\ end\n"
    shown = _render(safe(HOSTILE_TITLE))
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown == "Why [/] matters [bold red]now\n"
    assert strip_control("tab\tand\nnewline kept\x00\x9b31m\u202e") == "tab\tand\nnewline kept"


def test_validate_prints_a_model_name_with_markup(basic_spec: Path, cli_env: dict[str, str]) -> None:
    spec = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    spec["model"] = "gpt[/bold]\x1b[2J"
    basic_spec.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = run_cli(["validate", str(basic_spec)], cli_env)
    assert result.returncode == 0, result.stderr
    assert "model gpt[/bold])" in result.stdout  # the escape sequence is gone whole
    assert "\x1b" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr


def test_review_lists_a_hostile_title_inert(basic_spec: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    def reply(body: dict) -> str:
        text = default_reply(body)
        return HOSTILE_TITLE if text == '"A Practical Guide"' else text

    spec = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    spec["qc"]["min_words"] = 100_000  # every article waits for review
    basic_spec.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with FakeOpenAI(reply=reply) as fake:
        env = {**cli_env, "OPENAI_BASE_URL": fake.url}
        out = tmp_path / "out"
        result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "[red]topic[/] \x1b[31m"], env)
        assert result.returncode == 0, result.stderr + result.stdout
        assert "\x1b[2J" not in result.stdout + result.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    listing = run_cli(["review", str(run_dir)], env)
    assert listing.returncode == 0, listing.stderr
    assert "MarkupError" not in listing.stderr and "Traceback" not in listing.stderr
    assert "Why [/] matters" in listing.stdout
    assert "\x1b" not in listing.stdout + listing.stderr and "\x07" not in listing.stdout


def test_error_messages_quoting_data_print_inert(tmp_path: Path) -> None:
    """`fail()` and validate's report: a path with markup and an escape in the error message."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    missing = tmp_path / "what[/]ever\x1b[2J.yaml"
    for args in (["plan", str(missing), "--topic", "t"], ["validate", str(missing)]):
        result = run_cli(args, env)
        assert result.returncode == 2, result.stderr
        assert "what[/]ever" in result.stderr and "\x1b" not in result.stderr
        assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
