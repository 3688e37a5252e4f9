"""The `copydesk-run` flow: one flow run per batch, one task run per article.

Everything here is wiring. The work (calls, budget, QC, export) happens in
`copydesk.runner.PipelineRun`; tasks share its client, budget and limiter in
the flow's event loop, so the budget and the concurrency cap hold across the
whole batch. Resume does not rely on Prefect's result cache: the run's call
store does it for one `write()` per call (see copydesk.store).
"""

from __future__ import annotations

import asyncio

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from copydesk.article import Article
from copydesk.runner import PipelineRun, RunRequest


@task(name="article", cache_policy=NO_CACHE, task_run_name="article-{article.index}")
async def article_task(run: PipelineRun, article: Article) -> Article:
    """Write, review and export one article (never raises: failures make it incomplete)."""
    return await run.process(article)


@flow(name="copydesk-run", log_prints=False, validate_parameters=True)
async def run_pipeline(request: RunRequest) -> dict:
    """Generate, check and export one article per topic with a pipeline spec."""
    run = PipelineRun.prepare(request)
    await run.open()
    try:
        await asyncio.gather(*(article_task(run, article) for article in run.articles))
        summary = run.finish()
    finally:
        await run.close()
    if run.gateway is not None and run.gateway.fatal is not None:
        fatal = run.gateway.fatal
        fatal.summary = summary.to_dict()  # the CLI still prints what was exported
        raise fatal
    return summary.to_dict()
