"""The command line's one door into the Prefect layer, `copydesk_flows`.

Layers, top to bottom: the command line (copydesk.cli, copydesk.serve_cli and this
module) -> copydesk_flows (Prefect flows, tasks, deployments) -> the core library
(every other copydesk module; it imports neither Prefect nor copydesk_flows).
The command line reaches Prefect only through the functions here, and each
imports its part of copydesk_flows on first use: importing Prefect takes about
1.5 s, which `validate`, `plan`, `review` and `--help` should not pay.
.importlinter states these rules and tests/test_layers.py enforces them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing this module stays cheap
    from copydesk.request import RunRequest
    from copydesk.settings import Settings


async def run_flow(request: RunRequest) -> dict[str, Any]:
    """`copydesk run`: the run as a `copydesk-run` flow run; returns its summary."""
    from copydesk_flows.pipeline import run_pipeline  # lazy: Prefect's import time

    return await run_pipeline(request)


def build_deployments(settings: Settings, *, review_timeout: int, editor_review_timeout: int) -> Any:
    """`copydesk serve`: the deployments to offer (a copydesk_flows.deployments.DeploymentPlan)."""
    from copydesk_flows.deployments import build_deployments as build  # lazy: Prefect's import time

    return build(settings, review_timeout=review_timeout, editor_review_timeout=editor_review_timeout)


def serve_deployments(deployments: list[Any], *, limit: int | None) -> None:
    """`copydesk serve`: serve them until interrupted."""
    from copydesk_flows.serving import serve  # lazy: Prefect's import time

    serve(deployments, limit=limit)


def profile_api_url() -> str | None:
    """PREFECT_API_URL from the active Prefect profile (`prefect config set PREFECT_API_URL=...`)."""
    from copydesk_flows.serving import profile_api_url as from_profile  # lazy: Prefect's import time

    return from_profile()
