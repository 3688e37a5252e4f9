"""Issue 11 guard rails through the real `copydesk` command: hostile specs, templates and
--var values are refused with exit 2 and a clear message, within seconds, leaking nothing.

The subprocess timeouts are the guard against hangs; no test measures durations otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SECRET_KEY, run_cli
from test_spec import ALIAS_BOMB

CANARY = "canary-value-from-the-environment-5f3a"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The user's environment holds a key and a canary; nothing may print either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_", "PREFECT_API"))}
    env.update(
        OPENAI_API_KEY=SECRET_KEY,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",  # nothing listens: no test may call an API
        COPYDESK_SPEC_TEST_CANARY=CANARY,
        COPYDESK_STATE_DIR=str(tmp_path / "state"),
        COPYDESK_KEEP_SERVERS="false",
        COPYDESK_OUTPUT_DIR=str(tmp_path / "outputs"),  # never the project's outputs/
        COLUMNS="200",
    )
    return env


def output(result) -> str:
    return result.stdout + result.stderr


def assert_clean(text: str) -> None:
    assert SECRET_KEY not in text and CANARY not in text
    assert "Traceback" not in text


def test_proc_self_environ_is_refused_and_never_shown(basic_spec: Path, env: dict[str, str]) -> None:
    text = basic_spec.read_text(encoding="utf-8")
    text = text.replace("prompts_dir: ../prompts", "prompts_dir: /proc/self").replace("prompt: title.j2", "prompt: environ")
    assert "prompts_dir: /proc/self" in text and "prompt: environ" in text
    basic_spec.write_text(text, encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("prompts_dir:"))

    result = run_cli(["validate", str(basic_spec)], env, timeout=60)

    assert result.returncode == 2, output(result)
    assert f"{basic_spec}:{line}: prompts_dir: must resolve inside the pipeline's project" in output(result)
    assert_clean(output(result))


def test_prompts_dir_symlinked_to_proc_is_refused(basic_spec: Path, env: dict[str, str]) -> None:
    (basic_spec.parent.parent / "sneaky").symlink_to("/proc/self")
    text = basic_spec.read_text(encoding="utf-8").replace("prompts_dir: ../prompts", "prompts_dir: ../sneaky")
    basic_spec.write_text(text.replace("prompt: title.j2", "prompt: environ"), encoding="utf-8")
    result = run_cli(["validate", str(basic_spec)], env, timeout=60)
    assert result.returncode == 2, output(result)
    assert "prompts_dir: must resolve inside" in output(result)
    assert_clean(output(result))


def test_template_symlinked_outside_is_refused(basic_spec: Path, env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "secret.j2"
    secret.write_text("SECRET-FILE-CONTENT {{ topic }}", encoding="utf-8")
    title = basic_spec.parent.parent / "prompts" / "title.j2"
    title.unlink()
    title.symlink_to(secret)

    result = run_cli(["validate", str(basic_spec)], env, timeout=60)

    assert result.returncode == 2, output(result)
    assert "template 'title.j2' is outside prompts_dir" in output(result)
    assert "SECRET-FILE-CONTENT" not in output(result) and "secret.j2" not in output(result)
    assert_clean(output(result))


def test_alias_bomb_is_refused_within_seconds(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "pipelines").mkdir()
    bomb = tmp_path / "pipelines" / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB, encoding="utf-8")
    result = run_cli(["validate", str(bomb)], env, timeout=15)
    assert result.returncode == 2, output(result)
    assert "aliases expand to more than 100,000 values" in output(result)
    assert "lol" not in output(result)


def test_duplicate_keys_name_both_lines(basic_spec: Path, env: dict[str, str]) -> None:
    text = basic_spec.read_text(encoding="utf-8")
    assert "\nmodel: " in text
    text = text.replace("\nmodel: ", "\nmodel: other-model\nmodel: ", 1)
    basic_spec.write_text(text, encoding="utf-8")
    lines = [i for i, row in enumerate(text.splitlines(), 1) if row.startswith("model:")]
    result = run_cli(["validate", str(basic_spec)], env, timeout=60)
    assert result.returncode == 2, output(result)
    assert f"duplicate key 'model' on lines {lines[0]} and {lines[1]}" in output(result)


@pytest.mark.parametrize(
    "source, needle",
    [
        ("{{ 'x' * 300000000 }}", "a repeated value would be 300,000,000 long"),
        ("{{ 9 ** (9 ** 8) }}", "a power would exceed 4096 bits"),
        ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "rendering took longer than 2 s"),
        ("{{ range(10**9) }}", "range() is limited to 10,000 items"),
    ],
)
def test_runaway_templates_exit_2_with_a_clear_message(
    basic_spec: Path, env: dict[str, str], source: str, needle: str
) -> None:
    title = basic_spec.parent.parent / "prompts" / "title.j2"
    title.write_text("A title about {{ topic }}\n" + source + "\n", encoding="utf-8")
    result = run_cli(["validate", str(basic_spec)], env, timeout=60)
    assert result.returncode == 2, output(result)
    assert f"{title.resolve()}:2: template limit: {needle}" in output(result)
    assert_clean(output(result))


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(
    "var, needle",
    [
        ("topic=injected", "--var: var 'topic': the name is reserved by the template context"),
        ("bad name=1", "--var: var 'bad name': names must be identifiers"),
        ("audience=" + "x" * 70_000, "--var: the vars take 70,002 characters as JSON; at most 65,536"),
        ("audience", "--var 'audience': expected NAME=VALUE"),
        ("audiance=students", "--var: unknown variable 'audiance' (this pipeline's variables: audience)"),
    ],
)
def test_bad_var_exits_2_naming_the_var(
    basic_spec: Path, env: dict[str, str], tmp_path: Path, command: str, var: str, needle: str
) -> None:
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    result = run_cli([command, str(basic_spec), "--topic", "T", "--var", var, *extra], env, timeout=120)
    assert result.returncode == 2, output(result)
    assert needle in output(result)
    assert "x" * 100 not in output(result)
    assert_clean(output(result))


def test_good_var_still_works(basic_spec: Path, env: dict[str, str]) -> None:
    result = run_cli(["plan", str(basic_spec), "--topic", "T", "--var", 'audience={"who": ["devs"]}', "--json"], env, timeout=120)
    assert result.returncode == 0, output(result)


def test_run_refuses_a_runaway_template_before_any_call(
    basic_spec: Path, env: dict[str, str], tmp_path: Path
) -> None:
    title = basic_spec.parent.parent / "prompts" / "title.j2"
    title.write_text("{{ topic }} {{ 'x' * 300000000 }}\n", encoding="utf-8")
    result = run_cli(["run", str(basic_spec), "--topic", "T", "--out", str(tmp_path / "out")], env, timeout=120)
    assert result.returncode == 2, output(result)
    assert f"{title.resolve()}:1: template limit: a repeated value would be 300,000,000 long" in output(result)
    assert not (tmp_path / "out").exists()  # refused before a run folder was made
    assert_clean(output(result))


# ----------------------------------------------------------------------------- issue 20, finding 11

TOKEN = "ghp_token-in-git-config-7c1d"


def project_with_secrets(basic_spec: Path) -> Path:
    """The fixture project with a token in .git/config, a server log and another run's calls."""
    project = basic_spec.parent.parent
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text(f"[http]\n  extraheader = AUTHORIZATION: bearer {TOKEN}\n", encoding="utf-8")
    (project / ".copydesk" / "logs").mkdir(parents=True)
    (project / ".copydesk" / "logs" / "llama.log.md").write_text(f"key {TOKEN}\n", encoding="utf-8")
    (project / "outputs" / "run-1").mkdir(parents=True)
    (project / "outputs" / "run-1" / "calls.jsonl").write_text(f'{{"auth": "{TOKEN}"}}\n', encoding="utf-8")
    (project / "outputs" / "run-1" / "article.md").write_text(f"{TOKEN}\n", encoding="utf-8")
    return project


@pytest.mark.parametrize(
    "prompts_dir, prompt, include, needle",
    [
        ("..", ".git/config", None, "prompts_dir: may not be the project folder"),
        ("../.git", "config", None, "prompts_dir: may not be or lie in a dot-folder"),
        ("../.copydesk/logs", "llama.log.md", None, "prompts_dir: may not be or lie in a dot-folder"),
        ("../outputs", "run-1/calls.jsonl", None, "prompts_dir: may not be or lie in copydesk's output or state folder"),
        ("../prompts", ".git/config", None, "stages.title.prompt: template '.git/config' lies in a dot-folder"),
        ("../prompts", "notes.txt", None, "stages.title.prompt: template 'notes.txt' is not a template file"),
        ("../prompts", "title.j2", "'.git/config'", "title.j2:1: included template '.git/config' lies in a dot-folder"),
        ("../prompts", "title.j2", "'calls.jsonl'", "title.j2:1: included template 'calls.jsonl' is not a template file"),
        ("../prompts", "title.j2", "'generated/run-1/article.md'",
         "title.j2:1: included template 'generated/run-1/article.md' lies in copydesk's output or state folder"),
        ("../prompts", "generated/run-1/article.md", None,
         "stages.title.prompt: template 'generated/run-1/article.md' lies in copydesk's output or state folder"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_only_template_files_are_templates(
    basic_spec: Path, env: dict[str, str], fake_api, tmp_path: Path,
    prompts_dir: str, prompt: str, include: str | None, needle: str, command: str,
) -> None:
    """Issue 20, finding 11: no file of the project but a prompt template can become a prompt."""
    project = project_with_secrets(basic_spec)
    prompts = project / "prompts"
    # the same kinds of files inside prompts_dir (links out of it are refused as outside);
    # the output folder is set to one inside prompts_dir, so that its articles would be found
    (prompts / ".git").mkdir()
    (prompts / ".git" / "config").write_text(f"token = {TOKEN}\n", encoding="utf-8")
    (prompts / "calls.jsonl").write_text(f'{{"auth": "{TOKEN}"}}\n', encoding="utf-8")
    (prompts / "notes.txt").write_text(f"{TOKEN}\n", encoding="utf-8")
    (prompts / "generated" / "run-1").mkdir(parents=True)
    (prompts / "generated" / "run-1" / "article.md").write_text(f"{TOKEN}\n", encoding="utf-8")
    if include:
        (prompts / "title.j2").write_text("{% include " + include + " %} {{ topic }}\n", encoding="utf-8")
    text = basic_spec.read_text(encoding="utf-8")
    text = text.replace("prompts_dir: ../prompts", f"prompts_dir: {prompts_dir}").replace("prompt: title.j2", f"prompt: {prompt}")
    basic_spec.write_text(text, encoding="utf-8")
    env = {**env, "OPENAI_BASE_URL": fake_api.url, "COPYDESK_OUTPUT_DIR": str(prompts / "generated")}
    args = [command, str(basic_spec)] + (["--topic", "T", "--out", str(tmp_path / "out")] if command == "run" else [])

    result = run_cli(args, env, timeout=120)

    assert result.returncode == 2, output(result)
    assert needle in output(result)
    assert str(basic_spec) in output(result) or str(basic_spec.resolve()) in output(result)
    assert ("prompts_dir" if needle.startswith("prompts_dir") else "stages.title.prompt") in output(result)
    assert TOKEN not in output(result)
    assert fake_api.state.requests == []  # nothing reached the API
    assert not (tmp_path / "out").exists()
    assert_clean(output(result))


# ----------------------------------------------------------------------------- issue 20, finding 4

#: Through the real `copydesk validate`, each of these exits 2 within TIME_LIMIT seconds and
#: under MEMORY_LIMIT_MB of peak memory (before the fix the first ran for minutes past 830 MB).
TIME_LIMIT = 5.0
MEMORY_LIMIT_MB = 200
_DOUBLE = "{{% set ns = namespace(l={start}) %}}{{% for i in range(40) %}}{{% set ns.l = {step} %}}{{% endfor %}}{out}"
HOSTILE_TEMPLATES = [
    (_DOUBLE.format(start="[]", step="[ns.l, ns.l]", out="{{ ns.l }}"), "a list, tuple or mapping would be"),
    (_DOUBLE.format(start="{}", step="{'a': ns.l, 'b': ns.l}", out="{{ ns.l }}"), "a list, tuple or mapping would be"),
    (_DOUBLE.format(start="()", step="(ns.l, ns.l)", out="{{ {ns.l: 1} }}"), "a list, tuple or mapping would be"),
    (_DOUBLE.format(start="[]", step="dict(a=ns.l, b=ns.l)", out="{{ ns.l|string }}"), "a value would be"),
    (_DOUBLE.format(start="'x'", step="'x'.join([ns.l, ns.l])", out="{{ ns.l }}"), "would be"),
    (_DOUBLE.format(start="[]", step="[ns.l, ns.l]", out="{{ ns.l|join }}"), "would be"),
    (_DOUBLE.format(start="'x'", step="ns.l * 2", out="{{ ns.l }}"), "a repeated value would be"),
    (_DOUBLE.format(start="'x'", step="ns.l ~ ns.l", out="{{ ns.l }}"), "a ~ concatenation would be 524,288 long"),
    (_DOUBLE.format(start="'x'", step="'{0}{0}'.format(ns.l)", out="{{ ns.l }}"), "the formatted string would be"),
    (_DOUBLE.format(start="'x'", step="'%s%s'|format(ns.l, ns.l)", out="{{ ns.l }}"), "would be"),
    (_DOUBLE.format(start="[]", step="[ns.l, ns.l]", out="{{ ns.l|tojson }}"), "a list, tuple or mapping would be"),
    ("{{ range(10 ** 18)|list }}", "range() is limited to 10,000 items"),
    ("{{ 'x'|center(10 ** 12) }}", "a width for center"),
    ("{{ 'x'|indent(10 ** 12, true) }}", "the indented text would be"),
    ("{{ 'ab'|wordwrap(1, wrapstring='y' * 200000) }}", "the wrapped text would be"),
    ("{% set s = 'x' * 4000 %}{{ ('{0}' * 60000).format(s) }}", "the formatted string would be"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(100) }}", "longer than 2 s"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "templates call or include each other too deeply"),
    ("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}{% set ns.l = ns.l + [namespace(v='x' * 200000 ~ i)] %}"
     "{% endfor %}", "built more than 8,388,608"),
    ("{{ (1).to_bytes(10 ** 9, 'big') }}", "a to_bytes length"),
]


# Linux counts the RSS a process had before exec() in its max RSS, so a command started
# straight from this (large) pytest process would report pytest's own size. A small launcher
# process forks and execs the command, and reports the command's own peak.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(args: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 60) -> tuple[int, str, float, float]:
    """Exit code, output, wall seconds and peak memory (MB, the command's own max RSS) of one
    `copydesk` command."""
    exe = Path(sys.executable).with_name("copydesk")
    log, report = tmp_path / "command.log", tmp_path / "command.rusage"
    with log.open("w", encoding="utf-8") as out:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-I", "-c", _LAUNCHER, str(report), str(exe), *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        proc.wait()
        seconds = time.monotonic() - start
        killer.cancel()
    code, max_rss_kb = (int(value) for value in report.read_text(encoding="utf-8").split())
    return code, log.read_text(encoding="utf-8"), seconds, max_rss_kb / 1024


@pytest.mark.parametrize("source, needle", HOSTILE_TEMPLATES)
def test_hostile_templates_exit_2_quickly_in_little_memory(
    basic_spec: Path, env: dict[str, str], tmp_path: Path, source: str, needle: str
) -> None:
    """Issue 20, finding 4: rendering is bounded whatever the template does."""
    title = basic_spec.parent.parent / "prompts" / "title.j2"
    title.write_text("A title about {{ topic }}\n" + source + "\n", encoding="utf-8")

    code, text, seconds, peak_mb = run_measured(["validate", str(basic_spec)], env, tmp_path)

    assert code == 2, text
    assert f"{title.resolve()}:2: " in text and needle in text
    assert f"(rendering stages.title.prompt of {basic_spec.resolve()})" in text
    assert seconds < TIME_LIMIT, f"{seconds:.1f} s"
    assert peak_mb < MEMORY_LIMIT_MB, f"{peak_mb:.0f} MB"
    assert_clean(text)
