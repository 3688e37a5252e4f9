"""Human review in the Prefect UI: a paused flow run waiting for an editor's decisions.

After export, when articles need review and the run was given a review timeout,
the flow run pauses with a form (Prefect's `wait_for_input`): one field per
`needs_review` article, keyed by its slug, with the choices

    hold      decide later (the article stays in held/; `copydesk review` can decide it)
    approve   move it to published/
    reject    mark it rejected

The editor opens the paused flow run in the UI, presses Resume, picks and
submits. The decisions go to `copydesk.review.apply_review` (files, CSV, front
matter; all or nothing), and the artifacts get new versions. Titles, topics and
reasons come from the model: the form shows them with HTML escaped.

Nobody answers within the timeout: the flow run resumes itself with every
article on hold and finishes Completed, so a scheduled run never hangs and never
fails for want of an editor. (Prefect's own pause timeout would instead fail the
run; it is set a little later than ours, as a backstop.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, aresume_flow_run
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_base_key
from pydantic import Field, create_model

from copydesk.review import PendingArticle, ReviewOutcome, apply_review, pending_reviews
from copydesk.sanitize import inert_markdown, inert_text

Decision = Literal["hold", "approve", "reject"]
PAUSE_KEY = "copydesk-review"
#: Prefect's pause timeout is ours plus this, so our own resume always comes first.
BACKSTOP_SECONDS = 120
#: How often the paused flow run asks the server whether it was resumed.
POLL_SECONDS = 2


def decision_form(pending: list[PendingArticle], *, run_dir: Path, pipeline: str) -> type[Any]:
    """A RunInput model with one hold/approve/reject field per article, keyed by slug."""
    fields: dict[str, Any] = {}
    for index, item in enumerate(pending):
        fields[f"article_{index}"] = (
            Decision,
            Field(
                "hold",
                alias=item.slug,
                title=inert_text(f"{(item.title or item.topic)[:150]} ({item.slug})"),
                description=inert_text(f"Topic: {item.topic}. Why it needs review: {item.reasons or 'not recorded'}. "
                                       f"File: {item.path}"),
            ),
        )
    model = create_model("ReviewDecision", __base__=RunInput, **fields)
    lines = [
        f"## Review: {pipeline}, {len(pending)} article(s) need an editor",
        "",
        "For each article choose **approve** (publish it), **reject**, or **hold** (decide later "
        "with `copydesk review`). The texts are in this run's Artifacts tab.",
        "",
        f"Run folder: `{run_dir}`",
    ]
    return model.with_initial_data(description=inert_markdown("\n".join(lines)))


def decisions_of(form: Any, pending: list[PendingArticle]) -> tuple[list[str], list[str]]:
    approve, reject = [], []
    for index, item in enumerate(pending):
        choice = getattr(form, f"article_{index}", "hold")
        if choice == "approve":
            approve.append(item.slug)
        elif choice == "reject":
            reject.append(item.slug)
    return approve, reject


async def _wait_for_decision(form: type[Any], timeout: float) -> Any:
    """The editor's answer, or the all-hold default once `timeout` seconds pass."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a review pause needs a flow run")
    logger = get_run_logger()
    flow_run_id = context.flow_run.id
    pause = asyncio.ensure_future(
        apause_flow_run(
            wait_for_input=form,
            timeout=int(timeout) + BACKSTOP_SECONDS,
            poll_interval=POLL_SECONDS,
            key=PAUSE_KEY,
        )
    )
    try:
        return await asyncio.wait_for(asyncio.shield(pause), timeout)
    except TimeoutError:
        pass
    logger.info("no review decision within %d s: the articles stay held", int(timeout))
    try:
        await aresume_flow_run(flow_run_id, run_input={})  # every field defaults to "hold"
    except Exception as exc:  # an editor resumed it in the meantime: their answer wins
        logger.info("the run was resumed meanwhile (%s): reading the editor's answer", exc)
    try:
        return await asyncio.wait_for(pause, POLL_SECONDS * 5 + 10)
    except (TimeoutError, FlowPauseTimeout):
        pause.cancel()
        return await form.aload(keyset_from_base_key(f"paused-{PAUSE_KEY}"), flow_run_id=flow_run_id)


async def review_run(run_dir: Path, *, timeout: float, pipeline: str) -> ReviewOutcome | None:
    """Pause for the editor's decisions on the run's needs_review articles and apply them."""
    logger = get_run_logger()
    pending = pending_reviews(run_dir)
    if not pending:
        return None
    logger.info(
        "%d article(s) need review: waiting up to %d s for an editor (Resume this flow run in the UI)",
        len(pending),
        int(timeout),
    )
    form = decision_form(pending, run_dir=run_dir, pipeline=pipeline)
    answer = await _wait_for_decision(form, timeout)
    approve, reject = decisions_of(answer, pending)
    outcome = apply_review(run_dir, approve=approve, reject=reject, reviewer="prefect-ui")
    logger.info(
        "review: approved %s; rejected %s; still held %s",
        ", ".join(outcome.approved) or "none",
        ", ".join(outcome.rejected) or "none",
        ", ".join(outcome.pending) or "none",
    )
    return outcome
