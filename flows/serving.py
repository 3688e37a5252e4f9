"""Serving deployments to a Prefect server, and the Prefect profile's API URL (`copydesk serve`)."""

from __future__ import annotations

from typing import Any

from prefect import serve as prefect_serve
from prefect.settings import PREFECT_API_URL


def serve(deployments: list[Any], *, limit: int | None) -> None:
    """Serve the deployments from this process until interrupted (Prefect's runner)."""
    prefect_serve(*deployments, limit=limit, print_starting_message=False)


def profile_api_url() -> str | None:
    """PREFECT_API_URL from the active Prefect profile, or None."""
    return PREFECT_API_URL.value() or None
