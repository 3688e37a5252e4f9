"""copydesk.rundir: the names, the CSV, the front matter, the statuses and the run manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from copydesk import rundir
from copydesk.article import Status as ArticleStatus
from copydesk.errors import InputError
from copydesk.rundir import RunFolderError, RunManifest, Status

# ------------------------------------------------------------------------------ run ids


@pytest.mark.parametrize("run_id", ["basic-20250101-000000-abcd", "a", "A.b_c-1", "x" * 100])
def test_good_run_ids(run_id: str) -> None:
    assert rundir.check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    ["abc\n", "abc\r\n", "\nabc", "ab c", "../x", "a..b", ".hidden", "-x", "x" * 101, "", "a/b", "é"],
)
def test_run_ids_must_match_as_a_whole(run_id: str) -> None:
    with pytest.raises(RunFolderError, match="--run-id") as info:
        rundir.check_run_id(run_id)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


@pytest.mark.parametrize(
    "run_id",
    ["copydesk.prom", "COPYDESK.PROM", "Copydesk.Prom", "copydesk.prom.lock", "copydesk.prom.corrupt-20250101T000000"],
)
def test_names_copydesk_writes_in_the_output_folder_are_reserved(run_id: str) -> None:
    with pytest.raises(RunFolderError, match="copydesk writes a file of that name"):
        rundir.check_run_id(run_id)


@pytest.mark.parametrize(
    "run_id",
    ["con", "CON", "Con.txt", "nul.txt", "prn", "aux.tar.gz", "com0", "COM9.md", "lpt1", "LPT0.x", "x.", "a.b."],
)
def test_names_windows_cannot_hold_are_refused(run_id: str) -> None:
    with pytest.raises(RunFolderError, match=r"--run-id .*(device name on Windows|ends in a dot)") as info:
        rundir.check_run_id(run_id)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("run_id", ["console", "com10", "lpt", "nully", "x.y", "con-1", "auxiliary.md"])
def test_names_that_only_look_like_devices_are_fine(run_id: str) -> None:
    assert rundir.check_run_id(run_id) == run_id


def test_the_windows_rule_is_the_slugs_one() -> None:
    """One rule in one place: copydesk.slugs.windows_name_problem, which the run ids call too
    (it also knows CONIN$/CONOUT$ and a trailing space, which the run-id pattern refuses first)."""
    from copydesk.slugs import make_slug, windows_name_problem

    for name in ("CONIN$", "conout$.log", "con .txt", "x ", "x.", "NUL"):
        assert windows_name_problem(name), name
    assert windows_name_problem("ok.md") is None
    assert make_slug("con") == "con-1" and make_slug("Nul") == "nul-1"
    with pytest.raises(RunFolderError, match=r"^run_id \(the form's field\) 'con'"):
        rundir.check_run_id("con", field="run_id (the form's field)")


def test_every_name_written_in_the_output_folder_is_reserved(tmp_path: Path) -> None:
    """What the metrics module writes next to the run folders: the file, its lock, a copy set aside."""
    from copydesk.metrics import CUMULATIVE_TEXTFILE, RunMetrics

    metrics = RunMetrics("basic")
    metrics.accumulate_textfile(tmp_path / CUMULATIVE_TEXTFILE)
    (tmp_path / CUMULATIVE_TEXTFILE).write_text("not prometheus {{{\n")
    metrics.accumulate_textfile(tmp_path / CUMULATIVE_TEXTFILE)  # sets the broken one aside
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 3, written
    for name in written:
        with pytest.raises(RunFolderError):
            rundir.check_run_id(name)


def test_the_runner_uses_the_same_check() -> None:
    from copydesk.runner import check_run_id

    with pytest.raises(InputError):
        check_run_id("abc\n")
    with pytest.raises(InputError):
        check_run_id("copydesk.prom")


# ------------------------------------------------------------------------------ statuses and paths


def test_one_status_enum() -> None:
    from copydesk import metrics

    assert ArticleStatus is Status
    assert rundir.STATUSES == ("published", "needs_review", "rejected", "incomplete")
    assert metrics.ARTICLE_STATUSES == rundir.STATUSES
    assert rundir.status_counts(["published", Status.NEEDS_REVIEW, "published"]) == {
        "published": 2, "needs_review": 1}
    with pytest.raises(ValueError):
        rundir.status_counts(["approved"])


def test_article_paths_by_status() -> None:
    assert rundir.article_relpath(Status.PUBLISHED, "a") == "published/a.md"
    for status in (Status.NEEDS_REVIEW, Status.REJECTED, Status.INCOMPLETE):
        assert rundir.article_relpath(status, "a") == "held/a.md"


@pytest.mark.parametrize(
    "relpath",
    ["../outside.md", "held/../../x.md", "/etc/passwd", "held/sub/x.md", "held/.x.md", "other/x.md", "held/x.txt",
     "held/", "published", "held\\x.md"],
)
def test_article_files_are_confined(tmp_path: Path, relpath: str) -> None:
    (tmp_path / "held").mkdir()
    with pytest.raises(RunFolderError, match="outside the run folder"):
        rundir.article_file(tmp_path, relpath)


def test_article_links_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.md").write_text("secret")
    run_dir = tmp_path / "run"
    (run_dir / "held").mkdir(parents=True)
    (run_dir / "held" / "link.md").symlink_to(outside / "x.md")
    (run_dir / "published").symlink_to(outside)
    with pytest.raises(RunFolderError, match="symbolic link"):
        rundir.article_file(run_dir, "held/link.md")
    with pytest.raises(RunFolderError, match="link outside the run folder"):
        rundir.article_file(run_dir, "published/x.md")
    assert rundir.article_file(run_dir, "held/fine.md") == run_dir / "held" / "fine.md"


# ------------------------------------------------------------------------------ the CSV


def _rows() -> list[dict]:
    base = {column: "" for column in rundir.CSV_COLUMNS}
    return [
        {**base, "run_id": "r", "topic": "=cmd()", "title": "标题, \"quoted\"", "slug": "a", "status": "published",
         "reasons": "", "word_count": 12, "grammar_issues": 2, "moderation_flagged": False, "total_tokens": 15,
         "est_cost_usd": 0.000123, "path": "published/a.md"},
        {**base, "run_id": "r", "topic": "two\nlines", "title": "", "slug": "b", "status": "needs_review",
         "reasons": "length: short; grammar: 2", "word_count": 0, "grammar_issues": None, "moderation_flagged": None,
         "total_tokens": 0, "est_cost_usd": None, "path": "held/b.md"},
    ]


@pytest.mark.parametrize("bom", [True, False])
def test_csv_round_trips_byte_for_byte(tmp_path: Path, bom: bool) -> None:
    path = rundir.write_csv(tmp_path, _rows(), bom=bom)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == bom and b"\r\n" in raw
    table = rundir.read_csv(tmp_path)
    assert table.columns == rundir.CSV_COLUMNS and table.bom == bom
    assert table.rows[0]["topic"] == "'=cmd()" and table.rows[0]["title"] == '标题, "quoted"'
    assert table.rows[0]["grammar_issues"] == "2" and table.rows[1]["grammar_issues"] == ""
    assert table.rows[1]["topic"] == "two\nlines"
    assert rundir.render_csv(table) == raw
    rundir.rewrite_csv(tmp_path, table)
    assert path.read_bytes() == raw


def test_csv_problems_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a run folder"):
        rundir.read_csv(tmp_path)
    (tmp_path / rundir.CSV_NAME).write_bytes(b"")
    with pytest.raises(RunFolderError, match="articles.csv: the file is empty"):
        rundir.read_csv(tmp_path)
    (tmp_path / rundir.CSV_NAME).write_bytes(b"slug\n\xff\xfe\n")
    with pytest.raises(RunFolderError, match="cannot read"):
        rundir.read_csv(tmp_path)


# ------------------------------------------------------------------------------ front matter


def test_front_matter_round_trip() -> None:
    front = {"title": "a: b # c", "topic": "---\nx", "tokens": {"total": 3}, "reasons": ["r"]}
    text = rundir.render_front_matter(front, "\n# Title\n")
    assert text.startswith("---\ntitle: ") and "\n---\n\n# Title\n" in text
    parsed, body = rundir.parse_front_matter(text, "x.md")
    assert parsed == front and body == "\n# Title\n"
    assert rundir.render_front_matter(parsed, body) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [("# no front matter\n", "no YAML front matter"), ("---\ntitle: x\n", "not closed"),
     ("---\n- a\n---\n", "not a mapping"), ("---\na: [\n---\n", "unreadable front matter")],
)
def test_front_matter_errors_name_the_file(text: str, message: str) -> None:
    with pytest.raises(RunFolderError, match=f"held/x.md: .*{message}"):
        rundir.parse_front_matter(text, "held/x.md")


# ------------------------------------------------------------------------------ the manifest


def _manifest(topics: list[str], pipeline: str = "basic", fingerprint: str = "f" * 64) -> RunManifest:
    return RunManifest(pipeline, fingerprint, topics)


def test_a_new_or_empty_folder_is_a_new_run(tmp_path: Path) -> None:
    assert rundir.check_resume(tmp_path / "missing", _manifest(["a"])) is None
    (tmp_path / "empty").mkdir()
    assert rundir.check_resume(tmp_path / "empty", _manifest(["a"])) is None
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / rundir.RUN_LOCK_NAME).write_text("pid 1")  # a crash right after taking the lock
    assert rundir.check_resume(tmp_path / "locked", _manifest(["a"])) is None


def test_resume_may_keep_or_add_topics(tmp_path: Path) -> None:
    rundir.write_manifest(tmp_path, _manifest(["a", "b", "a"]))
    assert rundir.check_resume(tmp_path, _manifest(["a", "b", "a"])) is not None
    assert rundir.check_resume(tmp_path, _manifest(["b", "a", "c", "a"])) is not None  # order may change


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (_manifest(["a", "b", "a"], pipeline="other"), "made by pipeline 'basic', not 'other'"),
        (_manifest(["a", "b", "a"], fingerprint="0" * 64), "the spec or a template .* changed"),
        (_manifest(["a", "b"]), "may add topics but not drop any; missing: 'a'"),
        (_manifest(["c"]), "missing: 'a', 'a', 'b'"),
    ],
)
def test_resume_of_another_run_is_refused(tmp_path: Path, new: RunManifest, message: str) -> None:
    run_dir = tmp_path / "run-1"
    rundir.write_manifest(run_dir, _manifest(["a", "b", "a"]))
    (run_dir / "articles.csv").write_text("kept")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(RunFolderError, match=message) as info:
        rundir.check_resume(run_dir, new)
    assert info.value.exit_code == 2
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_a_folder_without_a_manifest_is_not_written_into(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "articles.csv").write_text("from somewhere else")
    with pytest.raises(RunFolderError, match="has no manifest.json"):
        rundir.check_resume(tmp_path / "old", _manifest(["a"]))
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        rundir.check_resume(tmp_path / "file", _manifest(["a"]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    with pytest.raises(RunFolderError, match="unreadable run manifest"):
        rundir.check_resume(tmp_path / "broken", _manifest(["a"]))


def test_fingerprint_covers_the_spec_and_every_template(basic_spec: Path, tmp_path: Path) -> None:
    prompts = basic_spec.parent.parent / "prompts"
    names = ["title.j2", "outline.j2", "section.j2", "system.j2"]

    def current() -> str:
        return rundir.fingerprint(basic_spec, rundir.template_files(prompts, names))

    first = current()
    assert current() == first
    (prompts / "title.j2").write_text((prompts / "title.j2").read_text() + " ")
    second = current()
    assert second != first
    basic_spec.write_text(basic_spec.read_text() + "\n# a comment\n")
    assert current() != second
    # an included template is part of the fingerprint too
    (prompts / "part.j2").write_text("shared part")
    (prompts / "section.j2").write_text((prompts / "section.j2").read_text() + '{% include "part.j2" %}')
    assert "part.j2" in rundir.template_files(prompts, names)
    third = current()
    (prompts / "part.j2").write_text("shared part, changed")
    assert current() != third


def test_a_resume_keeps_the_first_runs_date_and_records_the_new_topics(tmp_path: Path) -> None:
    first = RunManifest("basic", "f" * 64, ["a"], created="2025-01-01T00:00:00+00:00")
    rundir.write_manifest(tmp_path, first)
    again = rundir.prepare_folder(tmp_path, _manifest(["a", "b"]))
    assert again.created == "2025-01-01T00:00:00+00:00" and again.topics == ["a", "b"]
    rundir.write_manifest(tmp_path, again)
    assert rundir.read_manifest(tmp_path) == again


def test_the_manifest_of_a_spec(basic_spec: Path) -> None:
    from copydesk.spec import load_spec

    spec = load_spec(basic_spec)
    manifest = RunManifest.for_spec(spec, spec.resolved_prompts_dir, ["x", "y"])
    assert manifest.pipeline == "basic" and manifest.topics == ["x", "y"]
    names = ["title.j2", "outline.j2", "section.j2", "system.j2"]
    assert manifest.fingerprint == rundir.fingerprint(basic_spec, rundir.template_files(spec.resolved_prompts_dir, names))


def test_write_json_gives_json_dumps_bytes_in_pieces_with_secrets_redacted(tmp_path: Path, monkeypatch) -> None:
    """Issue 25: the QC report of a 10,000-topic run is written as it is encoded (an indented
    json.dumps held ~47 KB per article at once); the bytes are those of json.dumps, and a known
    secret is redacted in every piece, also past the first write."""
    import json
    import tracemalloc

    secret = "sk-test-WRITEJSON-aaaaaaaaaaaaaaaa"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    data = {"run_id": "r", "articles": [
        {"topic": f"话题 {i}", "qc": {"checks": [{"check": "x", "found": [i, 1.5, None, True]}] * 5,
                                     "note": secret if i in (1, 4_999) else "ok"}} for i in range(5_000)]}
    path = tmp_path / "qc_report.json"
    tracemalloc.start()
    try:
        rundir.write_json(path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = json.dumps(data, ensure_ascii=False, indent=2, default=str).replace(secret, "[redacted]") + "\n"
    assert path.read_bytes() == expected.encode("utf-8")
    assert path.stat().st_size > 4_000_000 and secret not in path.read_text(encoding="utf-8")
    assert peak < 2_000_000, peak  # json.dumps: tens of MB for this document
