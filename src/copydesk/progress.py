"""What a person at a terminal sees: live progress and the closing summary table.

Data in them (the run id) goes through `copydesk.console.safe`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from copydesk import events
from copydesk.console import safe
from copydesk.rundir import STATUSES


class LiveProgress:
    """Articles and calls done, tokens spent against the budget; listens to copydesk.events."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._articles: Any = None
        self._calls: Any = None
        self._unsubscribe = None

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        self._unsubscribe = events.subscribe(self._on_event)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        self.progress.stop()

    def _on_event(self, event: events.Event) -> None:
        if isinstance(event, events.RunStarted):
            self._articles = self.progress.add_task("articles", total=event.articles, detail="")
            # title + outline per article; sections are added as outlines arrive
            self._calls = self.progress.add_task(
                "calls", total=2 * event.articles, detail=f"tokens 0 / {event.budget:,}"
            )
        elif isinstance(event, events.SectionsPlanned) and self._calls is not None:
            task = self.progress.tasks[self._calls]
            self.progress.update(self._calls, total=(task.total or 0) + event.count)
        elif isinstance(event, events.CallFinished) and self._calls is not None:
            self.progress.update(
                self._calls, advance=1, detail=f"tokens {event.budget_spent:,} / {event.budget_limit:,}"
            )
        elif isinstance(event, events.ArticleFinished) and self._articles is not None:
            self.progress.update(self._articles, advance=1)
        elif isinstance(event, events.BatchUpdate):
            self.console.print(batch_line(event), highlight=False)


def batch_line(event: events.BatchUpdate) -> str:
    """One line per change of a batch (batch mode): its id, stages, status and request counts."""
    if event.status == "cancelling":
        return f"batch {safe(event.batch_id)}: cancelled (the run stopped)"
    return (f"batch {safe(event.batch_id)} ({safe(event.stages)}): {safe(event.status)}, "
            f"{event.completed}/{event.total} done, {event.failed} failed")


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"copydesk run {safe(summary['run_id'])}", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("", justify="right")
    by_status = summary.get("by_status", {})
    for status in STATUSES:
        count = by_status.get(status, 0)
        first = summary.get("first_incomplete_reason") if status == "incomplete" and count else None
        table.add_row(status, str(count) + (f" (first: {safe(_one_line(first, 160))})" if first else ""))
    table.add_row("prompt tokens", f"{summary['prompt_tokens']:,}")
    table.add_row("completion tokens", f"{summary['completion_tokens']:,}")
    table.add_row("total tokens", f"{summary['total_tokens']:,}")
    cached = summary.get("cached_prompt_tokens") or 0
    prompt = summary.get("prompt_tokens") or 0
    table.add_row("cached prompt tokens", f"{cached:,}" + (f" ({cached / prompt:.0%})" if prompt else ""))
    if summary.get("mode") == "batch":
        table.add_row("batches", str(len(summary.get("batches") or {})))
    table.add_row("budget spent", f"{summary['budget_spent']:,} / {summary['budget_limit']:,}")
    cost = summary.get("est_cost_usd")
    table.add_row("est. cost (USD)", "unknown model price" if cost is None else f"{cost:.4f}")
    table.add_row("calls (cached)", f"{summary['calls']} ({summary['cached_calls']})")
    table.add_row("retries (429s)", f"{summary['retries']} ({summary['rate_limited']})")
    table.add_row("seconds", f"{summary['seconds']:.1f}")
    for note in summary.get("notes") or []:
        table.add_row("note", safe(_one_line(note, 240)))
    return table


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
