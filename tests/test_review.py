"""Human review of a run folder (copydesk.review), the review form and artifacts built
from a run folder (flows/review.py, flows/artifacts.py), and the guard that keeps a run's
tasks in its own process (flows/pipeline.py). No server: files only."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml
from typer.testing import CliRunner

from copydesk.article import Article, Section, Status
from copydesk.client import Usage
from copydesk.export import CSV_NAME, RunExporter
from copydesk.review import ReviewError, apply_review, pending_reviews

RUN_ID = "basic-20250101-000000-abcd"


def _article(index: int, topic: str, title: str, status: Status, reasons: list[str] | None = None) -> Article:
    article = Article(index=index, topic=topic, key=f"{topic}\x001", title=title)
    article.outline = ["Why it matters", "How it works"]
    article.sections = [
        Section("Why it matters", "Start small. Measure first.", "stop", True),
        Section("How it works", "Write the number down.", "stop", True),
    ]
    article.status = status
    article.reasons = list(reasons or [])
    article.generated = status != Status.INCOMPLETE
    article.usage_by_stage = {"title": Usage(10, 5, 15), "expansion": Usage(100, 50, 150)}
    article.models = ["gpt-4o-mini"]
    article.grammar_issues = 2
    article.moderation_flagged = status == Status.REJECTED
    article.qc = {"checks": [{"name": "length", "ran": True, "passed": status == Status.PUBLISHED,
                              "severity": "soft", "detail": "7 words, fewer than min_words 300"}]}
    return article


def make_run(root) -> tuple[os.PathLike, list[Article]]:
    """A run folder written by the real exporter: one article of each status, and a formula topic."""
    run_dir = root / RUN_ID
    exporter = RunExporter(run_dir, run_id=RUN_ID, language="en-US", pipeline="basic")
    articles = [
        _article(0, "Good topic", "A Good One", Status.PUBLISHED),
        _article(1, "=cmd()", "Formula Topic", Status.NEEDS_REVIEW, ["length: 7 words, fewer than min_words 300"]),
        _article(2, "测试主题", "Chinese Topic", Status.NEEDS_REVIEW, ["grammar: 2 issues"]),
        _article(3, "Nasty topic", "Flagged", Status.REJECTED, ["moderation: harassment"]),
        _article(4, "Cut short", "", Status.INCOMPLETE, ["stopped by the budget"]),
    ]
    for article in articles:
        article.slug = re.sub(r"[^a-z0-9]+", "-", (article.title or f"article {article.index}").lower()).strip("-")
        exporter.write_article(article)
    exporter.write_csv([exporter.row(a, 0.001) for a in articles])
    exporter.write_json("qc_report.json", {"run_id": RUN_ID, "articles": [
        {"topic": a.topic, "slug": a.slug, "status": a.status.value, "reasons": a.reasons, "qc": a.qc}
        for a in articles]})
    exporter.write_json("summary.json", {"run_id": RUN_ID, "pipeline": "basic", "run_dir": str(run_dir),
                                         "articles": 5, "by_status": {"published": 1, "needs_review": 2,
                                                                      "rejected": 1, "incomplete": 1},
                                         "budget_limit": 60000, "budget_spent": 825, "prompt_tokens": 550,
                                         "completion_tokens": 275, "est_cost_usd": 0.005})
    return run_dir, articles


def _csv(run_dir) -> list[dict[str, str]]:
    import csv

    with open(run_dir / CSV_NAME, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _front(path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])


def _snapshot(run_dir) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


# ------------------------------------------------------------------------------ copydesk.review


def test_pending_lists_only_needs_review(tmp_path):
    run_dir, _ = make_run(tmp_path)
    pending = pending_reviews(run_dir)
    assert [p.slug for p in pending] == ["formula-topic", "chinese-topic"]
    assert pending[0].path == "held/formula-topic.md" and "min_words" in pending[0].reasons


def test_approve_moves_to_published_and_updates_csv_front_matter_and_reports(tmp_path):
    run_dir, _ = make_run(tmp_path)
    before = _csv(run_dir)
    body_before = (run_dir / "held/formula-topic.md").read_text(encoding="utf-8").split("---\n", 2)[2]

    outcome = apply_review(run_dir, approve=["formula-topic"], reject=["chinese-topic"], reviewer="mei", note="ok")

    assert outcome.approved == ["formula-topic"] and outcome.rejected == ["chinese-topic"]
    assert outcome.pending == [] and outcome.unchanged == []
    published = run_dir / "published/formula-topic.md"
    assert published.is_file() and not (run_dir / "held/formula-topic.md").exists()
    front = _front(published)
    assert front["status"] == "published"
    assert front["review"]["decision"] == "approved" and front["review"]["by"] == "mei"
    assert front["review"]["note"] == "ok" and front["topic"] == "=cmd()"
    assert published.read_text(encoding="utf-8").split("---\n", 2)[2] == body_before  # text untouched
    rejected = run_dir / "held/chinese-topic.md"
    assert _front(rejected)["status"] == "rejected"

    raw = (run_dir / CSV_NAME).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    after = _csv(run_dir)
    assert [r["slug"] for r in after] == [r["slug"] for r in before]
    row = after[1]
    assert row["status"] == "published" and row["path"] == "published/formula-topic.md"
    assert row["topic"] == "'=cmd()"  # the formula stays neutralised
    assert row["reasons"].endswith("approved by mei") and "min_words" in row["reasons"]
    assert after[2]["status"] == "rejected" and after[2]["path"] == "held/chinese-topic.md"
    for untouched in (0, 3, 4):
        assert after[untouched] == before[untouched]

    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["by_status"] == {"published": 2, "rejected": 2, "incomplete": 1}
    report = {a["slug"]: a["status"] for a in json.loads((run_dir / "qc_report.json").read_text())["articles"]}
    assert report["formula-topic"] == "published" and report["chinese-topic"] == "rejected"
    log = [json.loads(line) for line in (run_dir / "reviews.jsonl").read_text().splitlines()]
    assert [(e["slug"], e["decision"]) for e in log] == [("formula-topic", "approved"), ("chinese-topic", "rejected")]


def test_same_decision_twice_is_unchanged(tmp_path):
    run_dir, _ = make_run(tmp_path)
    apply_review(run_dir, approve=["formula-topic"])
    snapshot = _snapshot(run_dir)
    outcome = apply_review(run_dir, approve=["formula-topic"])
    assert outcome.unchanged == ["formula-topic"] and outcome.changed == []
    assert _snapshot(run_dir) == snapshot


@pytest.mark.parametrize(
    ("approve", "reject", "message"),
    [
        (["formula-topic", "no-such-slug"], [], "no-such-slug"),
        (["formula-topic", "flagged"], [], "flagged is rejected"),  # moderation-rejected cannot be approved
        (["article-4"], [], "article-4 is incomplete"),
        (["chinese-topic"], ["chinese-topic"], "both approved and rejected"),
    ],
)
def test_bad_decisions_change_nothing(tmp_path, approve, reject, message):
    run_dir, _ = make_run(tmp_path)
    snapshot = _snapshot(run_dir)
    with pytest.raises(ReviewError, match=message):
        apply_review(run_dir, approve=approve, reject=reject)
    assert _snapshot(run_dir) == snapshot


def test_unknown_slug_lists_the_pending_ones(tmp_path):
    run_dir, _ = make_run(tmp_path)
    with pytest.raises(ReviewError) as info:
        apply_review(run_dir, reject=["nope"])
    assert "formula-topic" in str(info.value) and "chinese-topic" in str(info.value)


def test_a_csv_path_outside_the_run_folder_is_refused(tmp_path):
    run_dir, _ = make_run(tmp_path)
    (tmp_path / "outside.md").write_text("---\nstatus: needs_review\n---\n\n# x\n")
    text = (run_dir / CSV_NAME).read_text(encoding="utf-8-sig").replace("held/formula-topic.md", "../outside.md")
    (run_dir / CSV_NAME).write_text(text, encoding="utf-8-sig")
    with pytest.raises(ReviewError, match="outside the run folder"):
        apply_review(run_dir, approve=["formula-topic"])
    assert (tmp_path / "outside.md").read_text().startswith("---\nstatus: needs_review")


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ReviewError, match="not a run folder"):
        pending_reviews(tmp_path / "missing")


def test_review_command_lists_approves_and_fails_with_exit_2(tmp_path):
    from copydesk.serve_cli import standalone_app

    run_dir, _ = make_run(tmp_path)
    app = standalone_app()
    runner = CliRunner()
    listed = runner.invoke(app, ["review", str(run_dir)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "formula-topic" in listed.output and "chinese-topic" in listed.output and "a-good-one" not in listed.output
    done = runner.invoke(app, ["review", str(run_dir), "--approve", "chinese-topic", "--by", "li"])
    assert done.exit_code == 0, done.output
    assert "published chinese-topic" in done.output and "still waiting: formula-topic" in done.output
    assert _front(run_dir / "published/chinese-topic.md")["review"]["by"] == "li"
    bad = runner.invoke(app, ["review", str(run_dir), "--approve", "flagged"])
    assert bad.exit_code == 2 and "only needs_review" in bad.output


# ------------------------------------------------------------------------------ the review form (flows/review.py)


def test_review_form_has_one_choice_per_article_keyed_by_slug(tmp_path):
    from prefect.input.run_input import create_v2_schema

    from copydesk_flows.review import decision_form, decisions_of

    run_dir, _ = make_run(tmp_path)
    pending = pending_reviews(run_dir)
    form = decision_form(pending, run_dir=run_dir, pipeline="basic")
    schema = create_v2_schema(form.__name__, model_base=form)
    assert set(schema["properties"]) == {"formula-topic", "chinese-topic"}
    field = schema["properties"]["formula-topic"]
    assert field["enum"] == ["hold", "approve", "reject"] and field["default"] == "hold"
    assert field["title"] == "Formula Topic (formula-topic)" and "min_words" in field["description"]
    assert "basic" in form._description and str(run_dir) in form._description

    answer = form(**{"formula-topic": "approve", "chinese-topic": "reject"})
    assert decisions_of(answer, pending) == (["formula-topic"], ["chinese-topic"])
    assert decisions_of(form(), pending) == ([], [])  # the timeout's default: everything held
    with pytest.raises(ValueError):
        form(**{"formula-topic": "publish"})


# ------------------------------------------------------------------------------ artifacts (flows/artifacts.py)


def test_artifact_keys_are_lowercase_dashes():
    from copydesk_flows.artifacts import artifact_key

    assert artifact_key("tech-blog", "articles") == "tech-blog-articles"
    assert artifact_key("Zh_Blog", "Python 装饰器!") == "zh-blog-python"
    assert artifact_key("", "测试") == "copydesk"
    assert len(artifact_key("a" * 300)) <= 100


def test_artifacts_are_built_from_the_run_folder(tmp_path):
    from copydesk_flows.artifacts import build_artifacts, summary_markdown

    run_dir, _ = make_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    artifacts = build_artifacts(run_dir, summary)
    keys = [a.key for a in artifacts]
    assert len(keys) == len(set(keys)) == 2 + 5
    assert all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys)
    table, overview = artifacts[0], artifacts[1]
    assert table.type == "table" and table.key == "basic-articles"
    rows = _csv(run_dir)
    assert len(table.table) == len(rows)
    for cells, row in zip(table.table, rows):  # what an editor reads first, each a link to the article
        assert list(cells)[:3] == ["title", "status", "reasons"]
        link = f"(/artifacts/key/basic-{row['slug']})"
        assert cells["title"] == f"[{row['title'] or row['topic']}]{link}" and cells["status"] == f"[{row['status']}]{link}"
        assert cells["reasons"] == (f"[{row['reasons']}]{link}" if row["reasons"] else "")
        assert {k: v for k, v in cells.items() if k not in ("title", "status", "reasons")} == {
            k: v for k, v in row.items() if k not in ("title", "status", "reasons")}
    assert overview.key == "basic-run-summary"
    text = summary_markdown(summary)
    assert "825" in text and "60,000" in text and "1.4%" in text and "$0.0050" in text
    assert "| needs_review | 2 |" in text
    held = next(a for a in artifacts if a.key == "basic-formula-topic")
    assert held.markdown.startswith("**needs_review**") and "min_words" in held.markdown
    assert "| length | failed | soft |" in held.markdown
    assert "# Formula Topic" in held.markdown and "Start small." in held.markdown
    assert "run_id:" not in held.markdown  # the text, not the front matter

    apply_review(run_dir, approve=["formula-topic"], reviewer="mei")
    again = build_artifacts(run_dir, summary, slugs=["formula-topic"])
    assert [a.key for a in again] == ["basic-articles", "basic-run-summary", "basic-formula-topic"]
    assert again[2].markdown.startswith("**published**") and "approved by mei" in again[2].markdown


# ------------------------------------------------------------------------------ tasks stay in the run's process


def test_one_process_per_run_folder(tmp_path):
    from copydesk.errors import InputError
    from copydesk.orchestration import run_folder_lock

    with run_folder_lock(tmp_path / "run-1", "run-1"):
        with pytest.raises(InputError, match=rf"run run-1 is already running \(pid {os.getpid()} on "):
            with run_folder_lock(tmp_path / "run-1", "run-1"):
                pass
        with run_folder_lock(tmp_path / "run-2", "run-2"):  # other runs are not affected
            pass
    with run_folder_lock(tmp_path / "run-1", "run-1"):  # released at the end
        pass


# ------------------------------------------------------------------------------ all or nothing, confined


def _state(run_dir) -> dict:
    """What the CSV says and where the files are: the two must agree."""
    rows = {r["slug"]: (r["status"], r["path"]) for r in _csv(run_dir)}
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.md"))
    return {"rows": rows, "files": files}


def _agree(run_dir) -> None:
    state = _state(run_dir)
    assert sorted(path for _, path in state["rows"].values()) == state["files"]
    for slug, (status, path) in state["rows"].items():
        assert _front(run_dir / path)["status"] == status, slug


def test_a_move_failing_midway_is_finished_by_the_next_review(tmp_path, monkeypatch):
    import copydesk.review as review

    run_dir, _ = make_run(tmp_path)
    before = _state(run_dir)
    real_move, calls = review._move, []

    def failing_move(run_dir_, move):
        calls.append(move["slug"])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_move(run_dir_, move)

    monkeypatch.setattr(review, "_move", failing_move)
    with pytest.raises(review.ReviewInterrupted, match="No space left on device.*next `copydesk review"):
        apply_review(run_dir, approve=["formula-topic", "chinese-topic"], reviewer="mei")
    # cut short: the first file moved, the CSV not yet rewritten, the intent recorded
    assert (run_dir / "published/formula-topic.md").exists() and not (run_dir / "held/formula-topic.md").exists()
    assert _state(run_dir)["rows"] == before["rows"]
    assert (run_dir / ".review-intent.json").exists()

    monkeypatch.setattr(review, "_move", real_move)
    outcome = apply_review(run_dir, approve=["formula-topic", "chinese-topic"], reviewer="mei")  # the retry
    assert outcome.unchanged == ["formula-topic", "chinese-topic"] and outcome.pending == []
    assert not (run_dir / ".review-intent.json").exists()
    _agree(run_dir)
    assert _state(run_dir)["rows"]["formula-topic"] == ("published", "published/formula-topic.md")
    assert _state(run_dir)["rows"]["chinese-topic"] == ("published", "published/chinese-topic.md")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["by_status"] == {"published": 3, "rejected": 1, "incomplete": 1}
    log = [json.loads(line) for line in (run_dir / "reviews.jsonl").read_text().splitlines()]
    assert [e["slug"] for e in log] == ["formula-topic", "chinese-topic"]  # once each


def test_a_csv_write_failing_is_finished_by_listing_the_pending_articles(tmp_path, monkeypatch):
    import copydesk.review as review
    from copydesk import rundir

    run_dir, _ = make_run(tmp_path)
    real_write = rundir.atomic_write

    def failing_write(path, data, *args, **kwargs):
        if path.name == CSV_NAME:
            raise OSError(5, "Input/output error")
        real_write(path, data, *args, **kwargs)

    monkeypatch.setattr(review.rundir, "atomic_write", failing_write)
    with pytest.raises(review.ReviewInterrupted) as info:
        apply_review(run_dir, approve=["formula-topic"], reject=["chinese-topic"])
    assert info.value.exit_code == 1
    with pytest.raises(review.ReviewInterrupted):  # still failing: listing tries to finish it, and says so
        pending_reviews(run_dir)
    assert [r["status"] for r in _csv(run_dir)][1:3] == ["needs_review", "needs_review"]  # CSV as it was
    assert (run_dir / "published/formula-topic.md").exists()  # while the file already moved

    monkeypatch.setattr(review.rundir, "atomic_write", real_write)
    assert pending_reviews(run_dir) == []  # listing finishes the interrupted decision first
    _agree(run_dir)
    assert [r["status"] for r in _csv(run_dir)][1:3] == ["published", "rejected"]
    assert not (run_dir / ".review-intent.json").exists()


def test_the_flow_review_finishes_an_interrupted_decision(tmp_path, monkeypatch):
    """flows/review.py starts from pending_reviews: the same recovery."""
    import copydesk.review as review

    run_dir, _ = make_run(tmp_path)
    monkeypatch.setattr(review, "_carry_out_or_say_so", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed right after the intent was recorded
        apply_review(run_dir, approve=["chinese-topic"])
    monkeypatch.undo()
    assert [p.slug for p in pending_reviews(run_dir)] == ["formula-topic"]
    _agree(run_dir)


def test_an_intent_left_before_a_resume_is_dropped(tmp_path, monkeypatch):
    import copydesk.review as review

    run_dir, articles = make_run(tmp_path)
    monkeypatch.setattr(review, "_carry_out_or_say_so", lambda *a: None)
    apply_review(run_dir, approve=["chinese-topic"])
    monkeypatch.undo()
    assert (run_dir / ".review-intent.json").exists()
    # a resume exports everything afresh (a new CSV): the old decision no longer applies
    exporter = RunExporter(run_dir, run_id=RUN_ID, language="en-US", pipeline="basic")
    exporter.write_csv([exporter.row(a, 0.002) for a in articles])
    assert [p.slug for p in pending_reviews(run_dir)] == ["formula-topic", "chinese-topic"]
    assert not (run_dir / ".review-intent.json").exists()
    assert not (run_dir / "published/chinese-topic.md").exists()


@pytest.mark.parametrize(
    "path",
    ["../../outside.md", "/tmp/outside.md", "held/../../outside.md", "held/sub/formula-topic.md",
     "published/other-slug.md", "held/formula-topic.txt"],
)
def test_csv_paths_and_slugs_are_confined(tmp_path, path):
    run_dir, _ = make_run(tmp_path)
    text = (run_dir / CSV_NAME).read_text(encoding="utf-8-sig").replace("held/formula-topic.md", path)
    (run_dir / CSV_NAME).write_text(text, encoding="utf-8-sig")
    snapshot = _snapshot(run_dir)
    with pytest.raises(ReviewError, match="outside the run folder|not the file of slug"):
        apply_review(run_dir, approve=["formula-topic"])
    assert _snapshot(run_dir) == snapshot


def test_a_slug_with_a_path_in_it_is_refused(tmp_path):
    run_dir, _ = make_run(tmp_path)
    (tmp_path / "escape.md").write_text("---\nstatus: needs_review\n---\n\n# x\n")
    text = (run_dir / CSV_NAME).read_text(encoding="utf-8-sig").replace(
        "formula-topic,", "../../escape,").replace("held/formula-topic.md", "held/../../escape.md")
    (run_dir / CSV_NAME).write_text(text, encoding="utf-8-sig")
    with pytest.raises(ReviewError, match="outside the run folder"):
        apply_review(run_dir, approve=["../../escape"])
    assert (tmp_path / "escape.md").read_text().startswith("---\nstatus: needs_review")
    assert not (tmp_path / "published").exists()


def test_a_linked_article_file_is_not_read(tmp_path):
    run_dir, _ = make_run(tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_text("---\nstatus: needs_review\n---\n\nsecret text\n")
    (run_dir / "held/formula-topic.md").unlink()
    (run_dir / "held/formula-topic.md").symlink_to(secret)
    with pytest.raises(ReviewError, match="symbolic link"):
        apply_review(run_dir, approve=["formula-topic"])
    assert not (run_dir / "published/formula-topic.md").exists()


def test_a_failure_to_record_the_decision_changes_nothing(tmp_path, monkeypatch):
    import copydesk.review as review

    run_dir, _ = make_run(tmp_path)
    snapshot = _snapshot(run_dir)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(review.rundir, "write_json", full_disk)
    with pytest.raises(review.ReviewInterrupted, match="nothing was changed"):
        apply_review(run_dir, approve=["formula-topic"])
    assert _snapshot(run_dir) == snapshot and not (run_dir / ".review-intent.json").exists()


def test_the_review_command_reports_a_cut_short_decision_and_finishes_it(tmp_path, monkeypatch):
    import copydesk.review as review
    from copydesk.serve_cli import standalone_app

    run_dir, _ = make_run(tmp_path)
    monkeypatch.setattr(review, "_move", lambda *a: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    app = standalone_app()
    failed = CliRunner().invoke(app, ["review", str(run_dir), "--approve", "formula-topic"])
    assert failed.exit_code == 1 and "cut short" in failed.output and "Traceback" not in failed.output
    monkeypatch.undo()
    listed = CliRunner().invoke(app, ["review", str(run_dir)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "chinese-topic" in listed.output and "formula-topic" not in listed.output
    _agree(run_dir)


def test_review_keeps_a_csv_without_bom_byte_for_byte_elsewhere(tmp_path):
    run_dir, articles = make_run(tmp_path)
    exporter = RunExporter(run_dir, run_id=RUN_ID, language="en-US", pipeline="basic")
    exporter.write_csv([exporter.row(a, 0.001) for a in articles], bom=False)
    before = (run_dir / CSV_NAME).read_bytes().split(b"\r\n")
    apply_review(run_dir, approve=["chinese-topic"], reviewer="li")
    after = (run_dir / CSV_NAME).read_bytes().split(b"\r\n")
    assert not after[0].startswith(b"\xef\xbb\xbf")
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [3]  # only the decided article's line


def test_the_articles_table_links_stay_links_whatever_the_title():
    from copydesk_flows.artifacts import article_keys, table_rows

    rows = [{"run_id": "r", "topic": "T", "slug": "a", "title": "Use [x](javascript:alert(1)) <b>", "status": "rejected",
             "reasons": "moderation: flagged"},
            {"run_id": "r", "topic": "Failed topic", "slug": "articles", "title": "", "status": "failed", "reasons": ""}]
    keys = article_keys("basic", rows)
    assert keys == ["basic-a", "basic-articles-2"]  # never the table's own key
    first, second = table_rows(rows, keys)
    # the title's own brackets are escaped, its script link defused, its tag made text: one link, to the article
    assert first["title"] == "[Use \\[x\\](#) &lt;b>](/artifacts/key/basic-a)"
    assert list(first)[:3] == ["title", "status", "reasons"] and first["topic"] == "T"
    assert second["title"] == "[Failed topic](/artifacts/key/basic-articles-2)" and second["reasons"] == ""
