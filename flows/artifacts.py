"""What a run leaves in the Prefect UI: artifacts built from the exported run folder.

    <pipeline>-articles        table     one row per topic: title, status and reasons first (each a
                                         link to the article's artifact), then the CSV's other columns
    <pipeline>-run-summary     markdown  tokens against the budget, estimated cost, counts by status
    <pipeline>-<slug>          markdown  one per article: its QC verdict, then its text
    <pipeline>-batch-<id>      markdown  batch mode: a batch's status and request counts, a new
                                         version at every change while the run waits on it

Keys are lower-case letters, digits and dashes (Prefect's rule), so the
Artifacts page groups each key's versions: the latest table of a pipeline, the
latest text of an article. Everything is read back from the run folder (CSV,
Markdown, qc_report.json; names and formats from copydesk.rundir), so what the
UI shows is what was exported, also after a review decision. Model output is
untrusted: every Markdown artifact and description passes through
`copydesk.sanitize.inert_markdown`, every table cell through `inert_text`. Secrets are
redacted (copydesk.redact): fully in everything but the article's own text, which loses
the known secrets only (an article may well show an `Authorization:` header).

The artifacts are created after the run has finished and closed its API
client, concurrently over one Prefect client (ARTIFACT_CONCURRENCY requests in
flight), so 100 articles cost a fraction of a second rather than 100 sequential
round trips. A failure to create them is logged and never fails the run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.artifacts import MarkdownArtifact, TableArtifact
from prefect.client.orchestration import PrefectClient, get_client

from copydesk import rundir
from copydesk.redact import redact, redact_known
from copydesk.sanitize import inert_markdown, inert_text

log = logging.getLogger("copydesk.flows")

ARTIFACT_CONCURRENCY = 8
MAX_KEY_LENGTH = 100
#: Longest article text copied into one artifact (the file itself is complete).
MAX_ARTICLE_CHARS = 60_000


def artifact_key(*parts: str) -> str:
    """Lower-case letters, digits and single dashes; never empty."""
    text = "-".join(str(p) for p in parts)
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    key = key[:MAX_KEY_LENGTH].rstrip("-")
    return key or "copydesk"


# ------------------------------------------------------------------------------ reading the run folder


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    try:
        return rundir.read_csv(run_dir).rows
    except rundir.RunFolderError:
        return []


def read_qc(run_dir: Path) -> dict[str, dict[str, Any]]:
    data = rundir.read_json(run_dir / rundir.QC_REPORT_NAME)
    if not isinstance(data, dict):
        return {}
    return {a.get("slug"): a for a in data.get("articles", []) if isinstance(a, dict)}


def _body(text: str) -> tuple[dict[str, Any], str]:
    """(the review record of the front matter, if any; the text after the front matter)."""
    header, body = rundir.split_front_matter(text)
    if header is None:
        return {}, text
    body = body.lstrip("\n")
    if "\nreview:" not in "\n" + header:
        return {}, body  # parsing YAML costs ~8 ms an article; only a reviewed one needs it
    try:
        return rundir.load_front_matter(header), body
    except ValueError:
        return {}, body


def _description(text: str) -> str:
    """An artifact's description (the UI renders it as Markdown): short and inert."""
    return inert_markdown(redact(text)[:500])


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------ the artifacts


def summary_markdown(summary: dict[str, Any]) -> str:
    limit = summary.get("budget_limit") or 0
    spent = summary.get("budget_spent") or 0
    share = f" ({spent / limit:.1%})" if limit else ""
    cost = summary.get("est_cost_usd")
    lines = [
        f"# {summary.get('pipeline', '')}: run `{summary.get('run_id', '')}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| tokens against the budget | **{spent:,}** of {limit:,}{share} |",
        f"| prompt / completion tokens | {summary.get('prompt_tokens', 0):,} / {summary.get('completion_tokens', 0):,} |",
        f"| cached prompt tokens | {summary.get('cached_prompt_tokens', 0):,} |",
        f"| mode | {summary.get('mode', 'realtime')} |",
        f"| estimated cost | {'unknown (no price for a model)' if cost is None else f'${cost:.4f}'} |",
        f"| articles | {summary.get('articles', 0)} |",
    ]
    for status in rundir.STATUSES:
        lines.append(f"| {status} | {summary.get('by_status', {}).get(status, 0)} |")
    lines += [
        f"| API calls (cached, retries, rate limited) | {summary.get('calls', 0)} "
        f"({summary.get('cached_calls', 0)}, {summary.get('retries', 0)}, {summary.get('rate_limited', 0)}) |",
        f"| seconds | {summary.get('seconds', 0)} |",
        f"| folder | `{summary.get('run_dir', '')}` |",
    ]
    batches = summary.get("batches") or {}
    if batches:
        lines += ["", "| batch | status | done / total | failed |", "|---|---|---|---|"]
        for batch_id, state in batches.items():
            counts = state.get("request_counts") or {}
            lines.append(f"| `{_cell(str(batch_id))}` | {_cell(str(state.get('status', '')))} | "
                         f"{counts.get('completed', 0)} / {counts.get('total', 0)} | {counts.get('failed', 0)} |")
    if summary.get("stopped_by_budget"):
        lines += ["", f"**Stopped by the budget:** {summary.get('budget_message') or ''}"]
    if summary.get("fatal_error"):
        lines += ["", f"**Stopped by an error:** {summary['fatal_error']}"]
    review = summary.get("review")
    if review:
        lines += [
            "",
            f"**Review:** approved {', '.join(review.get('approved', [])) or 'none'}; "
            f"rejected {', '.join(review.get('rejected', [])) or 'none'}; "
            f"still waiting {', '.join(review.get('pending', [])) or 'none'}",
        ]
    return inert_markdown(redact("\n".join(lines) + "\n"))


def article_markdown(row: dict[str, str], text: str, qc: dict[str, Any] | None = None) -> str:
    front, body = _body(text)
    status = row.get("status", "")
    lines = [
        f"**{status}** · topic: {_cell(row.get('topic', ''))} · {row.get('word_count', '?')} words · "
        f"{row.get('total_tokens', '?')} tokens · `{row.get('path', '')}`",
        "",
    ]
    if row.get("reasons"):
        lines += [f"**Reasons:** {redact(row['reasons'])}", ""]
    if row.get("description"):  # an extra stage's (stages.extras); the table artifact has every extra's column
        lines += [f"**Description:** {_cell(redact(row['description']))}", ""]
    checks = ((qc or {}).get("qc") or {}).get("checks") or []
    if checks:
        lines += ["| check | result | severity | detail |", "|---|---|---|---|"]
        for check in checks:
            result = "could not run" if not check.get("ran", True) else "passed" if check.get("passed") else "failed"
            lines.append(
                f"| {_cell(check.get('name', ''))} | {result} | {_cell(check.get('severity', ''))} | "
                f"{_cell(redact(str(check.get('detail', ''))))} |"
            )
        lines.append("")
    review = front.get("review")
    if isinstance(review, dict):
        by = f" by {review['by']}" if review.get("by") else ""
        lines += [f"**Review:** {review.get('decision', '')}{by} at {review.get('at', '')}", ""]
    if len(body) > MAX_ARTICLE_CHARS:
        body = body[:MAX_ARTICLE_CHARS] + f"\n\n… (cut; the whole article is in `{row.get('path', '')}`)\n"
    lines += ["---", "", body]
    return inert_markdown(redact_known("\n".join(lines)))


#: The table's first columns: what an editor reads first. Each links to the article's artifact.
LEADING_COLUMNS = ("title", "status", "reasons")


def article_keys(pipeline: str, rows: list[dict[str, str]]) -> list[str]:
    """Each row's article artifact key: `<pipeline>-<slug>`, made unique with the row's number."""
    reserved = {artifact_key(pipeline, "articles"), artifact_key(pipeline, "run-summary")}
    keys: list[str] = []
    for index, row in enumerate(rows, 1):
        key = artifact_key(pipeline, row.get("slug") or f"article-{index}")
        if key in reserved or key in keys:
            key = artifact_key(pipeline, row.get("slug") or f"article-{index}", str(index))
        keys.append(key)
    return keys


def _linked(text: str, key: str) -> str:
    """A table cell (Markdown in the UI) linking `text` to the artifact `key`'s page."""
    label = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"[{label}](/artifacts/key/{key})"


def table_rows(rows: list[dict[str, str]], keys: list[str]) -> list[dict[str, str]]:
    """The articles table: title, status and reasons first, each a link to the article's
    artifact (a failed article's title is its topic), then the other CSV columns as they are."""
    table = []
    for row, key in zip(rows, keys):
        cells = {name: inert_text(redact(value)) for name, value in row.items()}
        lead = {"title": cells.get("title") or cells.get("topic", ""), "status": cells.get("status", ""),
                "reasons": cells.get("reasons", "")}
        table.append({**{name: _linked(text, key) if text else "" for name, text in lead.items()},
                      **{name: text for name, text in cells.items() if name not in LEADING_COLUMNS}})
    return table


def build_artifacts(run_dir: Path, summary: dict[str, Any], slugs: Iterable[str] | None = None) -> list[Any]:
    """The Prefect artifact objects for a run folder (all articles, or only `slugs`)."""
    pipeline = summary.get("pipeline") or "copydesk"
    rows = read_rows(run_dir)
    keys = article_keys(pipeline, rows)
    qc = read_qc(run_dir)
    wanted = None if slugs is None else set(slugs)
    artifacts: list[Any] = [
        TableArtifact(
            key=artifact_key(pipeline, "articles"),
            table=table_rows(rows, keys)
            or [{"run_id": inert_text(str(summary.get("run_id"))), "note": f"no {rundir.CSV_NAME}"}],
            description=_description(f"{rundir.CSV_NAME} of run {summary.get('run_id')} ({len(rows)} rows); "
                                     "a title, status or reason opens its article"),
        ),
        MarkdownArtifact(
            key=artifact_key(pipeline, "run-summary"),
            markdown=summary_markdown(summary),
            description=_description(f"run {summary.get('run_id')}: tokens, cost, counts by status"),
        ),
    ]
    for index, (row, key) in enumerate(zip(rows, keys), 1):
        slug = row.get("slug") or f"article-{index}"
        if wanted is not None and slug not in wanted:
            continue
        try:
            text = rundir.article_file(run_dir, row["path"]).read_text(encoding="utf-8") if row.get("path") else ""
        except OSError:
            text = "(the article's file is missing)"
        except rundir.RunFolderError as exc:  # a hand-edited CSV: never read outside the run folder
            text = f"(not shown: {exc})"
        artifacts.append(
            MarkdownArtifact(
                key=key,
                markdown=article_markdown(row, text, qc.get(slug)),
                description=_description(f"{row.get('status', '')}: {row.get('title') or row.get('topic', '')}"),
            )
        )
    return artifacts


async def _create_all(artifacts: list[Any]) -> int:
    limit = asyncio.Semaphore(ARTIFACT_CONCURRENCY)
    failures = 0

    async with get_client() as client:

        async def create(artifact: Any) -> None:
            nonlocal failures
            async with limit:
                try:
                    await artifact.acreate(client=client)
                except Exception as exc:
                    failures += 1
                    log.warning("could not create artifact %s: %s", artifact.key, exc)

        await asyncio.gather(*(create(a) for a in artifacts))
    return failures


async def publish_article_artifact(pipeline: str, row: dict[str, Any], text: str, qc: dict[str, Any] | None,
                                   index: int, client: PrefectClient | None = None) -> None:
    """One article's Markdown artifact, made as soon as the article is exported, while the
    rest of the batch still waits on the API (so it costs the run no wall time). `client`: an
    open Prefect client to send it with (the flow run's); without one Prefect opens a client
    per artifact, which loads the CA bundle into a new SSL context each time (~35 ms of CPU)."""
    slug = row.get("slug") or f"article-{index}"
    key = artifact_key(pipeline, slug)
    if key in (artifact_key(pipeline, "articles"), artifact_key(pipeline, "run-summary")):
        key = artifact_key(pipeline, slug, str(index))
    row = {k: "" if v is None else str(v) for k, v in row.items()}
    try:
        await MarkdownArtifact(
            key=key,
            markdown=article_markdown(row, text, {"qc": qc} if qc else None),
            description=_description(f"{row.get('status', '')}: {row.get('title') or row.get('topic', '')}"),
        ).acreate(client=client)
    except Exception as exc:  # artifacts are a view; the run's files are the record
        log.warning("could not create the artifact of %s: %s", slug, exc)


async def publish_batch_artifact(pipeline: str, line: str, event: Any) -> None:
    """A batch's status and request counts (batch mode, copydesk.batch), while the run waits on it."""
    try:
        await MarkdownArtifact(
            key=artifact_key(pipeline, "batch", event.batch_id),
            markdown=inert_markdown(redact(
                f"| batch | stages | status | done / total | failed |\n|---|---|---|---|---|\n"
                f"| `{_cell(event.batch_id)}` | {_cell(event.stages)} | {_cell(event.status)} | "
                f"{event.completed} / {event.total} | {event.failed} |\n")),
            description=_description(line),
        ).acreate()
    except Exception as exc:  # artifacts are a view; the run's files are the record
        log.warning("could not create the artifact of batch %s: %s", event.batch_id, exc)


async def publish_run_artifacts(run_dir: Path, summary: dict[str, Any], *, articles: bool = True) -> None:
    """The table, the summary and (unless `articles` is False: they were made as the
    articles finished) one Markdown artifact per article, for the current flow run."""
    try:
        await _create_all(build_artifacts(Path(run_dir), summary, slugs=None if articles else ()))
    except Exception as exc:  # artifacts are a view; the run's files are the record
        log.warning("could not create the run's artifacts: %s", exc)


async def publish_review_artifacts(run_dir: Path, summary: dict[str, Any], outcome: Any) -> None:
    """New versions of the table, the summary and the decided articles."""
    try:
        await _create_all(build_artifacts(Path(run_dir), summary, slugs=outcome.changed))
    except Exception as exc:
        log.warning("could not update the run's artifacts after the review: %s", exc)
