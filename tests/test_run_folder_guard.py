"""The real `copydesk run` against an existing run folder: a run id may only resume a run of
the same pipeline (name and fingerprint of spec and templates) with the same topics or more;
anything else exits 2 before the folder or the API is touched. And model output that carries
HTML comes out inert in the exported Markdown."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
from conftest import run_cli
from fake_openai import FakeOpenAI, default_reply
from markdown_it import MarkdownIt


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(spec: Path, out: Path, run_id: str, topics: list[str], env: dict[str, str]):
    args = ["run", str(spec), "--out", str(out), "--run-id", run_id]
    for topic in topics:
        args += ["-t", topic]
    return run_cli(args, env)


def test_a_run_id_resumes_only_its_own_run(basic_spec, cli_env, fake_api, tmp_path):
    out = tmp_path / "out"
    first = _run(basic_spec, out, "guarded", ["alpha", "beta", "alpha"], cli_env)
    assert first.returncode == 0, first.stderr
    run_dir = out / "guarded"
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["pipeline"] == "basic" and manifest["topics"] == ["alpha", "beta", "alpha"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["fingerprint"])
    cumulative = (out / "copydesk.prom").read_bytes()
    snapshot = _snapshot(run_dir)
    calls = len(fake_api.state.requests)

    other = basic_spec.with_name("other.yaml")
    other.write_text(basic_spec.read_text(encoding="utf-8").replace("name: basic", "name: other"), encoding="utf-8")
    template = basic_spec.parent.parent / "prompts" / "title.j2"
    original_template = template.read_text(encoding="utf-8")

    refused = [
        (_run(other, out, "guarded", ["alpha", "beta", "alpha"], cli_env), "made by pipeline 'basic', not 'other'"),
        (_run(basic_spec, out, "guarded", ["alpha", "beta"], cli_env), "not drop any; missing: 'alpha'"),
        (_run(basic_spec, out, "guarded", ["gamma"], cli_env), "missing: 'alpha', 'alpha', 'beta'"),
    ]
    template.write_text(original_template + "\nBe brief.", encoding="utf-8")
    refused.append((_run(basic_spec, out, "guarded", ["alpha", "beta", "alpha"], cli_env),
                    "the spec or a template of pipeline 'basic' changed"))
    template.write_text(original_template, encoding="utf-8")
    for result, message in refused:
        assert result.returncode == 2, result.stderr + result.stdout
        assert message in result.stderr, result.stderr
    assert _snapshot(run_dir) == snapshot  # no CSV rewrite, nothing deleted, nothing moved
    assert (out / "copydesk.prom").read_bytes() == cumulative
    assert len(fake_api.state.requests) == calls and not (out / "other").exists()

    # the same pipeline with one more topic resumes: earlier articles kept, finished calls not paid again
    more = _run(basic_spec, out, "guarded", ["beta", "alpha", "alpha", "delta"], cli_env)
    assert more.returncode == 0, more.stderr
    frame = pd.read_csv(run_dir / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert sorted(frame["topic"]) == ["alpha", "alpha", "beta", "delta"]
    assert all((run_dir / path).is_file() for path in frame["path"])
    assert len(fake_api.state.requests) == calls + 6  # only delta's title, outline and 4 sections
    assert json.loads((run_dir / "manifest.json").read_text())["topics"] == ["beta", "alpha", "alpha", "delta"]


def test_reserved_and_malformed_run_ids_exit_2(basic_spec, cli_env, fake_api, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "copydesk.prom").write_text("# cumulative metrics\n")
    for run_id in ("copydesk.prom", "COPYDESK.prom", "copydesk.prom.lock", "abc\n", "../x"):
        result = _run(basic_spec, out, run_id, ["alpha"], cli_env)
        assert result.returncode == 2, (run_id, result.stderr)
        assert "--run-id" in result.stderr
    assert (out / "copydesk.prom").read_text() == "# cumulative metrics\n"
    assert sorted(p.name for p in out.iterdir()) == ["copydesk.prom"]
    assert fake_api.state.requests == []


def test_run_ids_windows_cannot_hold_exit_2(basic_spec, cli_env, fake_api, tmp_path):
    """Issue #20, finding 13: device names (any extension, any case) and a trailing dot or space
    are refused by the real command, before the output folder or the API is touched."""
    out = tmp_path / "out"
    for run_id, why in (("con", "device name"), ("nul.txt", "device name"), ("COM1", "device name"),
                        ("Lpt9.tar.gz", "device name"), ("x.", "ends in a dot or a space"),
                        ("x ", "use letters, digits")):
        result = _run(basic_spec, out, run_id, ["alpha"], cli_env)
        assert result.returncode == 2, (run_id, result.stderr)
        assert f"--run-id {run_id!r}" in result.stderr and why in result.stderr, result.stderr
    assert not out.exists()
    assert fake_api.state.requests == []


def test_a_folder_that_no_run_made_is_left_alone(basic_spec, cli_env, fake_api, tmp_path):
    out = tmp_path / "out"
    legacy = out / "reports"
    (legacy / "published").mkdir(parents=True)
    (legacy / "articles.csv").write_text("someone else's file\n")
    (legacy / "published" / "x.md").write_text("# kept\n")
    snapshot = _snapshot(legacy)
    result = _run(basic_spec, out, "reports", ["alpha"], cli_env)
    assert result.returncode == 2 and "has no manifest.json" in result.stderr, result.stderr
    assert _snapshot(legacy) == snapshot
    assert fake_api.state.requests == []


def _hostile_reply(body: dict) -> str:
    text = default_reply(body)
    prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
    if "Write the section" not in prompt:
        return text
    return (
        f"{text} <script>alert(document.cookie)</script> <img src=x onerror=alert(1)> "
        "[click me](javascript:alert(1)) ![p](data:image/png;base64,AAAA)\n\n"
        "```html\n<script>shown_as_code()</script>\n```"
    )


def test_model_html_is_inert_in_the_exported_files(basic_spec, cli_env, tmp_path):
    from test_sanitize import assert_inert, render_like_an_ssg

    with FakeOpenAI(reply=_hostile_reply) as api:
        result = run_cli(["run", str(basic_spec), "--out", str(tmp_path / "out"), "-t", "alpha", "--run-id", "xss"],
                         {**cli_env, "OPENAI_BASE_URL": api.url})
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "out" / "xss").rglob("*.md"))
    assert len(files) == 1
    body = files[0].read_text(encoding="utf-8").split("\n---\n", 1)[1]
    assert "&lt;script>alert(document.cookie)" in body  # escaped, still readable
    html = render_like_an_ssg(body)
    assert_inert(html)
    assert "&lt;script&gt;shown_as_code()&lt;/script&gt;" in html  # the fence still shows it as code
    assert MarkdownIt("commonmark").render(body).count("<pre><code") == 4
    shutil.rmtree(tmp_path / "out")
